"""The canary record: every shadow comparison stored durably (SQLite `canary.sqlite` in the data directory, or
$DATABASE_URL), and the report that turns them into a rollout verdict per service and method.

Verdict thresholds (also in docs/canary.md), checked in this order:
- hold      fewer than MIN_SAMPLES comparisons: not enough evidence either way;
- roll back mismatch rate above ROLLBACK_MISMATCH_RATE, or gRPC's error rate above REST's by more than
            ROLLBACK_ERROR_MARGIN;
- promote   mismatch rate at most PROMOTE_MISMATCH_RATE, gRPC's error rate at most REST's + PROMOTE_ERROR_MARGIN, and
            gRPC's p99 latency at most LATENCY_SLACK x REST's;
- hold      anything in between, with the reason.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
from sqlalchemy import JSON, Boolean, Column, Double, Index, Integer, MetaData, String, Table, insert, select

from adapters.shadow import Comparison, Difference
from services.common import storage
from services.common.storage import Database, UtcDateTime

MIN_SAMPLES = 50
ROLLBACK_MISMATCH_RATE = 0.01
ROLLBACK_ERROR_MARGIN = 0.01
PROMOTE_MISMATCH_RATE = 0.001
PROMOTE_ERROR_MARGIN = 0.001
LATENCY_SLACK = 1.10
WORST_SHOWN = 5

metadata = MetaData()
comparisons = Table(
    "canary_comparisons", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", UtcDateTime, nullable=False),
    Column("service", String(64), nullable=False),
    Column("method", String(64), nullable=False),
    Column("primary_transport", String(8), nullable=False),
    Column("primary_code", String(32), nullable=False),
    Column("primary_latency_s", Double, nullable=False),
    Column("shadow_transport", String(8), nullable=False),
    Column("shadow_code", String(32), nullable=False),
    Column("shadow_latency_s", Double, nullable=False),
    Column("match", Boolean, nullable=False),
    Column("diffs", JSON, nullable=False),  # [[path, primary value, shadow value], ...]
    Index("ix_canary_at", "at"),
)


def database_url(data_dir: Path | None) -> str:
    return storage.database_url(None, data_dir, "canary.sqlite")


class CanaryStore:
    def __init__(self, url: str) -> None:
        self._db = Database(url, metadata)

    async def close(self) -> None:
        await self._db.close()

    async def record(self, c: Comparison) -> None:
        async with (await self._db.ready()).begin() as conn:
            await conn.execute(insert(comparisons).values(
                at=c.at, service=c.service, method=c.method, primary_transport=c.primary_transport,
                primary_code=c.primary_code, primary_latency_s=c.primary_latency_s,
                shadow_transport=c.shadow_transport, shadow_code=c.shadow_code, shadow_latency_s=c.shadow_latency_s,
                match=c.match, diffs=[[d.path, d.primary, d.shadow] for d in c.diffs]))

    async def comparisons(self, *, since: datetime | None = None, service: str | None = None) -> list[Comparison]:
        t = comparisons.c
        conditions = [t.at >= since] if since is not None else []
        if service:
            conditions.append(t.service == service)
        async with (await self._db.ready()).connect() as conn:
            rows = (await conn.execute(select(comparisons).where(*conditions).order_by(t.id))).all()
        return [Comparison(r.at, r.service, r.method, r.primary_transport, r.primary_code, r.primary_latency_s,
                           r.shadow_transport, r.shadow_code, r.shadow_latency_s,
                           tuple(Difference(*d) for d in r.diffs)) for r in rows]


@dataclass
class MethodReport:
    service: str
    method: str
    samples: int
    mismatches: int
    error_rate: dict[str, float]  # by transport
    p50_ms: dict[str, float]
    p99_ms: dict[str, float]
    verdict: str  # promote | hold | roll back
    reason: str
    worst: list[Comparison] = field(default_factory=list)

    @property
    def mismatch_rate(self) -> float:
        return self.mismatches / self.samples if self.samples else 0.0


def report(items: list[Comparison]) -> list[MethodReport]:
    groups: dict[tuple[str, str], list[Comparison]] = defaultdict(list)
    for c in items:
        groups[(c.service, c.method)].append(c)
    return [_method_report(service, method, group) for (service, method), group in sorted(groups.items())]


def _method_report(service: str, method: str, group: list[Comparison]) -> MethodReport:
    latency: dict[str, list[float]] = defaultdict(list)
    errors: dict[str, int] = defaultdict(int)
    for c in group:
        for transport, code, seconds in ((c.primary_transport, c.primary_code, c.primary_latency_s),
                                         (c.shadow_transport, c.shadow_code, c.shadow_latency_s)):
            latency[transport].append(seconds)
            errors[transport] += code != "OK"
    mismatched = [c for c in group if not c.match]
    out = MethodReport(
        service, method, len(group), len(mismatched),
        error_rate={t: errors[t] / len(v) for t, v in latency.items()},
        p50_ms={t: float(np.percentile(v, 50)) * 1000 for t, v in latency.items()},
        p99_ms={t: float(np.percentile(v, 99)) * 1000 for t, v in latency.items()},
        verdict="hold", reason="",
        worst=sorted(mismatched, key=lambda c: (len(c.diffs), c.at), reverse=True)[:WORST_SHOWN])
    out.verdict, out.reason = _verdict(out)
    return out


def _verdict(r: MethodReport) -> tuple[str, str]:
    if r.samples < MIN_SAMPLES:
        return "hold", f"{r.samples} samples; at least {MIN_SAMPLES} needed"
    grpc_err, rest_err = r.error_rate.get("grpc", 0.0), r.error_rate.get("rest", 0.0)
    if r.mismatch_rate > ROLLBACK_MISMATCH_RATE:
        return "roll back", f"mismatch rate {r.mismatch_rate:.2%} > {ROLLBACK_MISMATCH_RATE:.0%}"
    if grpc_err > rest_err + ROLLBACK_ERROR_MARGIN:
        return "roll back", f"gRPC error rate {grpc_err:.2%} vs REST {rest_err:.2%}"
    if r.mismatch_rate > PROMOTE_MISMATCH_RATE:
        return "hold", f"mismatch rate {r.mismatch_rate:.2%} above {PROMOTE_MISMATCH_RATE:.1%}"
    if grpc_err > rest_err + PROMOTE_ERROR_MARGIN:
        return "hold", f"gRPC error rate {grpc_err:.2%} vs REST {rest_err:.2%}"
    grpc_p99, rest_p99 = r.p99_ms.get("grpc"), r.p99_ms.get("rest")
    if grpc_p99 is not None and rest_p99 is not None and grpc_p99 > LATENCY_SLACK * rest_p99:
        return "hold", f"gRPC p99 {grpc_p99:.1f} ms vs REST {rest_p99:.1f} ms"
    return "promote", "answers match, errors and latency no worse than REST"
