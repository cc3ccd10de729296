"""Rollout state in the platform's database, so every controller and every replica sees the same: the rollouts, the
timeline of what happened to each (steps, checks, halts, rollbacks, a person's actions), the audit log of flag changes
and the lease that lets one controller at a time drive a service.

SQLite `rollout.sqlite` in the data directory by default, or the database DATABASE_URL names (PostgreSQL), through
services.common.storage like the other stores. Every state change is a compare-and-swap on the row's version: a
controller that decided on stale state (a person paused meanwhile) writes nothing.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy import JSON, Column, Double, Index, Integer, MetaData, String, Table, insert, select, update

from rollout.model import ACTIVE, Rollout, Thresholds
from services.common import storage
from services.common.storage import Database, UtcDateTime

metadata = MetaData()
rollouts = Table(
    "rollouts", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("service", String(64), nullable=False),
    Column("method", String(64), nullable=False),
    Column("steps", JSON, nullable=False),
    Column("interval_s", Double, nullable=False),
    Column("max_failed_checks", Integer, nullable=False),
    Column("thresholds", JSON, nullable=False),
    Column("flag_target", String(1024), nullable=False),
    Column("state", String(16), nullable=False),
    Column("step_index", Integer, nullable=False),
    Column("step_started_at", UtcDateTime),
    Column("failed_checks", Integer, nullable=False),
    Column("baseline", JSON, nullable=False),
    Column("created_by", String(128), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("version", Integer, nullable=False),
    Index("ix_rollouts_service", "service"),
)
events = Table(
    "rollout_events", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("rollout_id", Integer, nullable=False),
    Column("at", UtcDateTime, nullable=False),
    Column("kind", String(32), nullable=False),  # started step analysis halted rolled_back promoted paused ...
    Column("percent", Integer, nullable=False),
    Column("message", String(2000), nullable=False),
    Column("checks", JSON, nullable=False),  # [{name, passed, value, limit, detail}] for analysis events
    Column("actor", String(128), nullable=False),
    Index("ix_rollout_events_rollout", "rollout_id"),
)
flag_audit = Table(
    "flag_audit", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", UtcDateTime, nullable=False),
    Column("actor", String(128), nullable=False),  # a person (user name) or "rollout-controller:<host:pid>"
    Column("target", String(1024), nullable=False),  # file:/path or unleash:<url>
    Column("flag", String(256), nullable=False),  # e.g. backtesting.grpc, market_analysis.methods.GetCandles.grpc
    Column("old", String(64), nullable=False),
    Column("new", String(64), nullable=False),
    Column("why", String(2000), nullable=False),
    Column("rollout_id", Integer),
    Index("ix_flag_audit_at", "at"),
)
leases = Table(
    "rollout_leases", metadata,
    Column("name", String(128), primary_key=True),
    Column("holder", String(256), nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
)


def database_url(data_dir: Path | None) -> str:
    return storage.database_url(None, data_dir, "rollout.sqlite")


def now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class Event:
    rollout_id: int
    at: datetime
    kind: str
    percent: int
    message: str
    checks: list[dict[str, Any]]
    actor: str


@dataclass(frozen=True)
class AuditEntry:
    at: datetime
    actor: str
    target: str
    flag: str
    old: str
    new: str
    why: str
    rollout_id: int | None


class Conflict(RuntimeError):
    """The rollout changed since it was read (another controller or a person acted first)."""


class RolloutStore:
    def __init__(self, url: str) -> None:
        self._db = Database(url, metadata)

    @classmethod
    def for_data_dir(cls, data_dir: Path | None) -> RolloutStore:
        return cls(database_url(data_dir))

    async def close(self) -> None:
        await self._db.close()

    # --- rollouts ---------------------------------------------------------------------------------------------------

    async def create(self, r: Rollout) -> Rollout:
        at = now()
        async with (await self._db.ready()).begin() as conn:
            result = await conn.execute(insert(rollouts).values(
                service=r.service, method=r.method, steps=r.steps, interval_s=r.interval_s,
                max_failed_checks=r.max_failed_checks, thresholds=r.thresholds.to_json(), flag_target=r.flag_target,
                state=r.state, step_index=r.step_index, step_started_at=r.step_started_at,
                failed_checks=r.failed_checks, baseline=r.baseline, created_by=r.created_by, created_at=at,
                updated_at=at, version=0))
            rid = result.inserted_primary_key[0]
        return await self.get(rid)

    async def get(self, rollout_id: int) -> Rollout:
        async with (await self._db.ready()).connect() as conn:
            row = (await conn.execute(select(rollouts).where(rollouts.c.id == rollout_id))).one()
        return _rollout(row)

    async def latest(self, service: str | None = None) -> list[Rollout]:
        """The newest rollout of each service (or of `service`)."""
        async with (await self._db.ready()).connect() as conn:
            query = select(rollouts).order_by(rollouts.c.id.desc())
            if service:
                query = query.where(rollouts.c.service == service)
            rows = (await conn.execute(query)).all()
        seen: dict[str, Rollout] = {}
        for row in rows:
            seen.setdefault(row.service, _rollout(row))
        return list(seen.values())

    async def active(self, service: str | None = None) -> list[Rollout]:
        async with (await self._db.ready()).connect() as conn:
            query = select(rollouts).where(rollouts.c.state.in_(ACTIVE)).order_by(rollouts.c.id)
            if service:
                query = query.where(rollouts.c.service == service)
            return [_rollout(row) for row in (await conn.execute(query)).all()]

    async def save(self, r: Rollout, timeline: list[Event] = ()) -> Rollout:
        """Write `r`'s state, and the `timeline` events that explain it in the same transaction, if nobody wrote
        since it was read; raises Conflict otherwise (and writes nothing)."""
        async with (await self._db.ready()).begin() as conn:
            result = await conn.execute(
                update(rollouts).where(rollouts.c.id == r.id, rollouts.c.version == r.version).values(
                    state=r.state, step_index=r.step_index, step_started_at=r.step_started_at,
                    failed_checks=r.failed_checks, baseline=r.baseline, updated_at=now(), version=r.version + 1))
            if result.rowcount != 1:
                await conn.rollback()
                raise Conflict(f"rollout {r.id} of {r.target} changed meanwhile")
            for e in timeline:
                await conn.execute(insert(events).values(_event_row(e)))
        return await self.get(r.id)

    # --- timeline ---------------------------------------------------------------------------------------------------

    async def event(self, r: Rollout, kind: str, message: str, *, actor: str,
                    checks: list[dict[str, Any]] | None = None, at: datetime | None = None) -> None:
        """Record an event of `r` at its current share (`at`: when, default now)."""
        e = new_event(r, kind, message, actor=actor, checks=checks)
        async with (await self._db.ready()).begin() as conn:
            await conn.execute(insert(events).values(_event_row(e) | ({"at": at} if at else {})))

    async def events(self, rollout_ids: list[int] | None = None, since: datetime | None = None) -> list[Event]:
        conditions = []
        if rollout_ids is not None:
            conditions.append(events.c.rollout_id.in_(rollout_ids))
        if since is not None:
            conditions.append(events.c.at >= since)
        async with (await self._db.ready()).connect() as conn:
            rows = (await conn.execute(select(events).where(*conditions).order_by(events.c.id))).all()
        return [Event(r.rollout_id, r.at, r.kind, r.percent, r.message, r.checks, r.actor) for r in rows]

    async def rollouts_of(self, service: str | None = None) -> list[Rollout]:
        async with (await self._db.ready()).connect() as conn:
            query = select(rollouts).order_by(rollouts.c.id)
            if service:
                query = query.where(rollouts.c.service == service)
            return [_rollout(row) for row in (await conn.execute(query)).all()]

    # --- flag audit -------------------------------------------------------------------------------------------------

    async def audit(self, entries: list[AuditEntry]) -> None:
        if not entries:
            return
        async with (await self._db.ready()).begin() as conn:
            await conn.execute(insert(flag_audit), [
                {"at": e.at, "actor": e.actor, "target": e.target, "flag": e.flag, "old": e.old, "new": e.new,
                 "why": e.why[:2000], "rollout_id": e.rollout_id} for e in entries])

    async def audit_log(self, *, flag_prefix: str | None = None, since: datetime | None = None,
                        limit: int | None = None) -> list[AuditEntry]:
        conditions = []
        if flag_prefix:
            conditions.append(flag_audit.c.flag.startswith(flag_prefix, autoescape=True))
        if since is not None:
            conditions.append(flag_audit.c.at >= since)
        query = select(flag_audit).where(*conditions).order_by(flag_audit.c.id.desc())
        if limit:
            query = query.limit(limit)
        async with (await self._db.ready()).connect() as conn:
            rows = (await conn.execute(query)).all()
        return [AuditEntry(r.at, r.actor, r.target, r.flag, r.old, r.new, r.why, r.rollout_id) for r in reversed(rows)]

    # --- leases: one controller drives a service at a time --------------------------------------------------------

    async def acquire(self, name: str, holder: str, ttl_s: float) -> bool:
        """Take or renew the lease `name` for `ttl_s` seconds; False while another holder's lease runs."""
        at = now()
        expires = at + timedelta(seconds=ttl_s)
        engine = await self._db.ready()
        async with engine.begin() as conn:
            result = await conn.execute(update(leases).where(
                leases.c.name == name, (leases.c.holder == holder) | (leases.c.expires_at < at)).values(
                holder=holder, expires_at=expires))
            if result.rowcount == 1:
                return True
        try:
            async with engine.begin() as conn:
                await conn.execute(insert(leases).values(name=name, holder=holder, expires_at=expires))
            return True
        except IntegrityError:  # the row exists and its lease runs: another controller holds it
            return False

    async def release(self, name: str, holder: str) -> None:
        async with (await self._db.ready()).begin() as conn:
            await conn.execute(update(leases).where(leases.c.name == name, leases.c.holder == holder).values(
                expires_at=now() - timedelta(seconds=1)))

    async def lease_holder(self, name: str) -> tuple[str, datetime] | None:
        async with (await self._db.ready()).connect() as conn:
            row = (await conn.execute(select(leases).where(leases.c.name == name))).one_or_none()
        return (row.holder, row.expires_at) if row is not None and row.expires_at > now() else None


def new_event(r: Rollout, kind: str, message: str, *, actor: str,
              checks: list[dict[str, Any]] | None = None) -> Event:
    """An event of `r` at its current share."""
    return Event(r.id, now(), kind, r.percent, message[:2000], checks or [], actor)


def _event_row(e: Event) -> dict[str, Any]:
    return {"rollout_id": e.rollout_id, "at": e.at, "kind": e.kind, "percent": e.percent, "message": e.message,
            "checks": e.checks, "actor": e.actor}


def _rollout(row: Any) -> Rollout:
    return Rollout(
        id=row.id, service=row.service, method=row.method, steps=list(row.steps), interval_s=row.interval_s,
        max_failed_checks=row.max_failed_checks, thresholds=Thresholds.from_json(row.thresholds),
        flag_target=row.flag_target, state=row.state, step_index=row.step_index, step_started_at=row.step_started_at,
        failed_checks=row.failed_checks, baseline=dict(row.baseline), created_by=row.created_by,
        created_at=row.created_at, updated_at=row.updated_at, version=row.version)
