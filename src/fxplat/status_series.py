"""The status page's time series: per service and minute over the last hour, calls per transport, transport errors,
fallbacks, and p50/p99 latency per transport; and the rollouts' timeline.

Two sources, as for the rollout controller: with PROMETHEUS_URL, Prometheus' range queries over the whole fleet
(every process it scrapes, server side); without it, the calls this process's adapters made (adapters.core's recent
buffer, client side)."""
from __future__ import annotations

import time
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np

from adapters.core import RECENT_CALLS
from adapters.flag_schema import SERVICES
from rollout.evidence import TRANSPORT_ERROR_CODES, TRANSPORTS
from rollout.prom import Prometheus
from rollout.store import RolloutStore

WINDOW_S = 3600
STEP_S = 60


def _empty(minutes: list[float]) -> dict[str, Any]:
    blank = [0.0] * len(minutes)
    return {"t": minutes, "calls": {t: list(blank) for t in TRANSPORTS}, "errors": {t: list(blank) for t in TRANSPORTS},
            "fallbacks": list(blank), "p50_ms": {t: [None] * len(minutes) for t in TRANSPORTS},
            "p99_ms": {t: [None] * len(minutes) for t in TRANSPORTS}}


def _minutes(now: float) -> list[float]:
    end = now - now % STEP_S
    return [end - STEP_S * i for i in range(WINDOW_S // STEP_S - 1, -1, -1)]


def local_series(now: float | None = None) -> dict[str, dict[str, Any]]:
    now = now or time.time()
    minutes = _minutes(now)
    first = minutes[0]
    out = {name: _empty(minutes) for name in SERVICES}
    latency: dict[tuple[str, str, int], list[float]] = defaultdict(list)
    for r in list(RECENT_CALLS):
        if r.at < first or r.service not in out or r.transport not in TRANSPORTS:
            continue
        i = min(int((r.at - first) // STEP_S), len(minutes) - 1)
        s = out[r.service]
        s["calls"][r.transport][i] += 1
        s["errors"][r.transport][i] += r.code in TRANSPORT_ERROR_CODES
        s["fallbacks"][i] += bool(r.fallback_reason)
        if r.code == "OK":
            latency[(r.service, r.transport, i)].append(r.latency_s * 1000)
    for (service, transport, i), values in latency.items():
        out[service]["p50_ms"][transport][i] = round(float(np.percentile(values, 50)), 2)
        out[service]["p99_ms"][transport][i] = round(float(np.percentile(values, 99)), 2)
    return out


async def prometheus_series(prom: Prometheus, now: float | None = None) -> dict[str, dict[str, Any]]:
    now = now or time.time()
    minutes = _minutes(now)
    # A point at t holds increase(...[1m]) over the minute *ending* at t, while bucket i is the minute starting at
    # minutes[i]: ask for the ends (the last one lies ahead of now, so the minute under way shows what it has so far).
    start, end = (datetime.fromtimestamp(t + STEP_S, timezone.utc) for t in (minutes[0], minutes[-1]))
    out = {name: _empty(minutes) for name in SERVICES}
    index = {t: i for i, t in enumerate(minutes)}
    codes = "|".join(TRANSPORT_ERROR_CODES)

    async def fill(expr: str, put) -> None:
        for labels, values in await prom.query_range(expr, start, end, STEP_S):
            s = out.get(labels.get("service", ""))
            if s is None:
                continue
            for t, v in values:
                if (i := index.get(t - STEP_S)) is not None and v == v:  # NaN (no calls) stays empty
                    put(s, labels, i, v)

    def at(key: str, digits: int = 1):
        def put(s, labels, i, v):
            s[key][labels.get("transport", "")][i] = round(v, digits)
        return put

    await fill("sum by (service, transport) (increase(fxplat_server_requests_total[1m]))", at("calls"))
    await fill(f'sum by (service, transport) (increase(fxplat_server_requests_total{{code=~"{codes}"}}[1m]))',
               at("errors"))
    await fill("sum by (service) (increase(fxplat_client_fallbacks_total[1m]))",
               lambda s, labels, i, v: s["fallbacks"].__setitem__(i, round(v, 1)))
    for q, key in ((0.5, "p50_ms"), (0.99, "p99_ms")):
        await fill(f"histogram_quantile({q}, sum by (service, transport, le) "
                   "(rate(fxplat_server_request_duration_seconds_bucket[1m]))) * 1000", at(key, 2))
    return out


async def timeline(store: RolloutStore) -> list[dict[str, Any]]:
    """The last hour's rollout events (and the rollouts they belong to), oldest first."""
    since = datetime.now(timezone.utc) - timedelta(seconds=WINDOW_S)
    events = await store.events(since=since)
    targets = {r.id: r.target for r in await store.rollouts_of()} if events else {}
    return [{"at": e.at.timestamp(), "rollout": e.rollout_id, "target": targets.get(e.rollout_id, ""),
             "service": targets.get(e.rollout_id, "").split(".")[0], "kind": e.kind, "percent": e.percent,
             "message": e.message, "failed": [c["name"] for c in e.checks if c.get("passed") is False]}
            for e in events]
