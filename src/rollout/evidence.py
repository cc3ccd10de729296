"""The numbers a rollout's checks need for one step's window, from one of two sources behind one interface:

- PrometheusSource (PROMETHEUS_URL set): PromQL over the whole fleet, as Flagger does;
- LocalSource (a laptop): the services' own /metrics, scraped at the step's start and at the check, and the canary
  store (the shadow comparisons in the platform's database).

A source hands out a `baseline` at a step's start (stored with the rollout, so a restarted controller measures the same
window) and later the `evidence` since it. Metric names come from transport/metrics.py; the breaker and fallback
names are read in `resilience_series` only, the one place to adapt if they change.
"""
from __future__ import annotations

import asyncio
import os
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

import httpx
from prometheus_client.parser import text_string_to_metric_families

from adapters import canary
from adapters.canary import CanaryStore
from rollout import prom
from rollout.prom import Prometheus
from transport import config

# Codes that say the transport or the server failed. Domain answers (NOT_FOUND, INVALID_ARGUMENT, ALREADY_EXISTS,
# FAILED_PRECONDITION, PERMISSION_DENIED, UNAUTHENTICATED, RESOURCE_EXHAUSTED, ...) are the service's answer on
# either transport and do not count against gRPC.
TRANSPORT_ERROR_CODES = ("UNKNOWN", "INTERNAL", "UNAVAILABLE", "DEADLINE_EXCEEDED", "UNIMPLEMENTED", "DATA_LOSS")
TRANSPORTS = ("grpc", "rest")


def resilience_series() -> dict[str, str]:
    """The metric names behind the resilience check (transport/metrics.py): fallbacks to REST (a counter labelled
    service, method, reason), the gRPC attempts they are a share of, and the breaker state gauge (2 = open)."""
    return {"fallbacks": "fxplat_client_fallbacks_total", "grpc_attempts": "fxplat_client_transport_choices_total",
            "breaker_state": "fxplat_client_breaker_state", "breaker_open_value": "2"}


@dataclass
class Evidence:
    window_s: float
    calls: dict[str, float] = field(default_factory=dict)  # served, by transport (server side)
    errors: dict[str, float] = field(default_factory=dict)  # transport errors among them
    p99_ms: dict[str, float | None] = field(default_factory=dict)
    fallbacks: float = 0.0
    grpc_attempts: float = 0.0
    breakers_open: int = 0
    shadow_samples: int = 0
    shadow_mismatches: int = 0
    source: str = ""

    def error_rate(self, transport: str) -> float:
        calls = self.calls.get(transport, 0.0)
        return self.errors.get(transport, 0.0) / calls if calls else 0.0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class MetricSource(Protocol):
    name: str

    async def baseline(self, service: str, method: str) -> dict[str, Any]: ...

    async def evidence(self, service: str, method: str, since: datetime, baseline: dict[str, Any]) -> Evidence: ...

    async def close(self) -> None: ...


def _method_selector(service: str, method: str) -> str:
    return f'service="{service}"' + (f',method="{method}"' if method else "")


class PrometheusSource:
    def __init__(self, url: str, *, min_window_s: float = 5.0) -> None:
        self.prom = Prometheus(url)
        self.name = f"prometheus {url}"
        self._min_window_s = min_window_s  # a range must hold a few scrapes for increase() to see anything

    async def close(self) -> None:
        await self.prom.close()

    async def baseline(self, service: str, method: str) -> dict[str, Any]:
        return {"at": time.time()}

    async def evidence(self, service: str, method: str, since: datetime, baseline: dict[str, Any]) -> Evidence:
        window = max(self._min_window_s, time.time() - since.timestamp())
        w, sel = f"{window:.0f}s", _method_selector(service, method)
        names = resilience_series()
        codes = "|".join(TRANSPORT_ERROR_CODES)
        calls, errors, p99, fallbacks, attempts, breakers, shadow = await asyncio.gather(
            self.prom.query(f"sum by (transport) (increase(fxplat_server_requests_total{{{sel}}}[{w}]))"),
            self.prom.query(f'sum by (transport) (increase(fxplat_server_requests_total{{{sel},code=~"{codes}"}}[{w}]))'),
            self.prom.query("histogram_quantile(0.99, sum by (transport, le) "
                            f"(increase(fxplat_server_request_duration_seconds_bucket{{{sel}}}[{w}])))"),
            self.prom.query(f"sum(increase({names['fallbacks']}{{{sel}}}[{w}]))"),
            self.prom.query(f'sum(increase({names["grpc_attempts"]}{{{sel},transport="grpc"}}[{w}]))'),
            self.prom.query(f"count(max_over_time({names['breaker_state']}{{service=\"{service}\"}}[{w}]) "
                            f">= {names['breaker_open_value']})"),
            self.prom.query(f"sum by (result) (increase(fxplat_shadow_comparisons_total{{{sel}}}[{w}]))"))
        by_result = {labels.get("result"): value for labels, value in shadow}
        return Evidence(
            window_s=window,
            calls={labels.get("transport", ""): value for labels, value in calls},
            errors={labels.get("transport", ""): value for labels, value in errors},
            p99_ms={labels.get("transport", ""): value * 1000 for labels, value in p99},
            fallbacks=_first(fallbacks), grpc_attempts=_first(attempts), breakers_open=int(_first(breakers)),
            shadow_samples=round(sum(by_result.values())), shadow_mismatches=round(by_result.get("mismatch", 0.0)),
            source=self.name)


def _first(vector: list[tuple[dict[str, str], float]]) -> float:
    return vector[0][1] if vector else 0.0


class LocalSource:
    """`metrics_urls`: the /metrics of every process that serves or calls the service (services in one process
    share one registry, so the same process is counted once)."""

    def __init__(self, metrics_urls: list[str], canary: CanaryStore, *, timeout: float = 3.0) -> None:
        self.urls = list(dict.fromkeys(metrics_urls))
        self.canary = canary
        self.name = "local /metrics + canary store"
        self._timeout = timeout

    async def close(self) -> None:
        await self.canary.close()

    async def baseline(self, service: str, method: str) -> dict[str, Any]:
        counters, _ = await self._scrape(service, method)
        return {"at": time.time(), "counters": counters}

    async def evidence(self, service: str, method: str, since: datetime, baseline: dict[str, Any]) -> Evidence:
        counters, breakers_open = await self._scrape(service, method)
        before = baseline.get("counters", {})
        # A counter below its baseline belongs to a restarted process: count it from zero, as rate() would.
        delta = {k: (v - before.get(k, 0.0)) if v >= before.get(k, 0.0) else v for k, v in counters.items()}
        calls: dict[str, float] = defaultdict(float)
        errors: dict[str, float] = defaultdict(float)
        buckets: dict[str, list[tuple[float, float]]] = defaultdict(list)
        for key, value in delta.items():
            kind, *rest = key.split("|")
            if kind == "req":
                transport, code = rest
                calls[transport] += value
                if code in TRANSPORT_ERROR_CODES:
                    errors[transport] += value
            elif kind == "lat":
                buckets[rest[0]].append((float(rest[1]), value))
        found = await self.canary.comparisons(since=since, service=service)
        shadows = [c for c in found if not method or c.method == method]
        return Evidence(
            window_s=time.time() - since.timestamp(), calls=dict(calls), errors=dict(errors),
            p99_ms={t: _quantile(0.99, sorted(b)) for t, b in buckets.items()},
            fallbacks=delta.get("fallbacks", 0.0), grpc_attempts=delta.get("grpc_attempts", 0.0),
            breakers_open=breakers_open, shadow_samples=len(shadows),
            shadow_mismatches=sum(not c.match for c in shadows), source=self.name)

    async def _scrape(self, service: str, method: str) -> tuple[dict[str, float], int]:
        async with httpx.AsyncClient(timeout=self._timeout) as http:
            texts = await asyncio.gather(*(_get(http, url) for url in self.urls))
        counters: dict[str, float] = defaultdict(float)
        breakers_open, seen = 0, set()
        names = resilience_series()
        for text in texts:
            families = list(text_string_to_metric_families(text))
            process = next((s.value for f in families if f.name == "process_start_time_seconds" for s in f.samples),
                           None)
            if process is not None:
                if process in seen:
                    continue  # another port of a process already read
                seen.add(process)
            for family in families:
                for s in family.samples:
                    labels = s.labels
                    if labels.get("service") != service or (method and labels.get("method", method) != method):
                        continue
                    if s.name == "fxplat_server_requests_total":
                        counters[f"req|{labels['transport']}|{labels['code']}"] += s.value
                    elif s.name == "fxplat_server_request_duration_seconds_bucket":
                        counters[f"lat|{labels['transport']}|{labels['le']}"] += s.value
                    elif s.name == names["fallbacks"]:
                        counters["fallbacks"] += s.value
                    elif s.name == names["grpc_attempts"] and labels.get("transport") == "grpc":
                        counters["grpc_attempts"] += s.value
                    elif s.name == names["breaker_state"] and s.value >= float(names["breaker_open_value"]):
                        breakers_open += 1
        return dict(counters), breakers_open


async def _get(http: httpx.AsyncClient, url: str) -> str:
    try:
        response = await http.get(url)
        response.raise_for_status()
        return response.text
    except httpx.ConnectError:
        return ""  # nothing listens there (a service not started on this box): no calls to count
    except httpx.HTTPError as exc:
        raise RuntimeError(f"cannot read {url}: {type(exc).__name__}: {exc}") from None


METRICS_URLS_ENV = "FXPLAT_METRICS_URLS"


def source_from_env(data_dir: Path | None) -> MetricSource:
    """PROMETHEUS_URL set: Prometheus. Else every service's /metrics (where transport.config says it is, plus any
    comma-separated URLs in FXPLAT_METRICS_URLS, e.g. a caller's) and the canary store of `data_dir`/DATABASE_URL."""
    url = prom.url_from_env()
    if url:
        return PrometheusSource(url)
    urls = [f"{root}/metrics" for s in config.SERVICES for root in config.endpoint(s).rest_urls]
    urls += [u.strip() for u in os.environ.get(METRICS_URLS_ENV, "").split(",") if u.strip()]
    return LocalSource(urls, CanaryStore(canary.database_url(data_dir)))


def _quantile(q: float, buckets: list[tuple[float, float]]) -> float | None:
    """Prometheus' histogram_quantile over cumulative (le, count) buckets, in ms; None without observations."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    total = buckets[-1][1]
    rank = q * total
    lower_le, lower_count = 0.0, 0.0
    for le, count in buckets:
        if count >= rank:
            if le == float("inf"):
                return lower_le * 1000
            width = count - lower_count
            fraction = (rank - lower_count) / width if width > 0 else 1.0
            return (lower_le + (le - lower_le) * fraction) * 1000
        lower_le, lower_count = le, count
    return lower_le * 1000


def utc_from_unix(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, timezone.utc)
