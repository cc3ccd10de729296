"""Prometheus metrics of servers and clients, defined once. Every service in a process shares the default registry,
so each metric carries a `service` label.

Several worker processes of one service (fxplat up --workers N) share its port, so a scrape reaches one of them at
random: with PROMETHEUS_MULTIPROC_DIR set (the supervisor sets it then), prometheus_client's multiprocess mode keeps
each process's values in a file there and every worker's /metrics answers with the sum over all of them, so counters
never jump back when the next scrape lands elsewhere. (A per-worker label alone would not do: each scrape would show
one worker's series only.) `per_process` reads one worker's own counts back from its file."""
from __future__ import annotations

import glob
import os
from bisect import bisect_left
from collections.abc import Callable

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, multiprocess

_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

SERVER_REQUESTS = Counter("fxplat_server_requests_total", "Calls served, by transport and result code.",
                          ["service", "method", "transport", "code"])
SERVER_LATENCY = Histogram("fxplat_server_request_duration_seconds", "Time to serve a call.",
                           ["service", "method", "transport"], buckets=_BUCKETS)
SERVER_IN_FLIGHT = Gauge("fxplat_server_in_flight_requests", "Calls being served now.", ["service", "transport"],
                         multiprocess_mode="livesum")

CLIENT_CALLS = Counter("fxplat_client_calls_total", "Calls made through an adapter, by the transport that served them.",
                       ["service", "method", "transport", "code", "fallback"])
CLIENT_CHOICES = Counter("fxplat_client_transport_choices_total",
                         "Transport an adapter chose per call (flags, or a forced transport), before any fallback.",
                         ["service", "method", "transport"])
CLIENT_LATENCY = Histogram("fxplat_client_call_duration_seconds", "Adapter call latency, fallback and retries included.",
                           ["service", "method", "transport"], buckets=_BUCKETS)
CLIENT_FALLBACKS = Counter("fxplat_client_fallbacks_total", "gRPC calls served over REST instead, by reason.",
                           ["service", "method", "reason"])
CLIENT_RETRIES = Counter("fxplat_client_retries_total", "Retried attempts.", ["service", "method", "transport"])
BREAKER_STATE = Gauge("fxplat_client_breaker_state", "gRPC circuit breaker of a caller's adapter: 0 closed, "
                      "1 half-open, 2 open.", ["service", "caller", "target"],
                      multiprocess_mode="liveall")  # one breaker per worker process: each shown with its pid
SHADOW_COMPARISONS = Counter("fxplat_shadow_comparisons_total", "Shadowed read calls compared across transports, by "
                             "result (match or mismatch).", ["service", "method", "result"])
SHADOW_DROPPED = Counter("fxplat_shadow_dropped_total", "Read calls sampled for shadowing but not compared: the shadow "
                         "worker was busy or lost the call.", ["service", "method", "reason"])
# The breaker's window, as Prometheus sees it (resilience: adapters/breaker.py): each finished gRPC phase by outcome
# and speed, and each time the breaker opened, by the rate that opened it.
BREAKER_CALLS = Counter("fxplat_client_breaker_calls_total", "gRPC phases a caller's breaker recorded as failed or slow "
                        "(slow: at least the method's slow-call threshold); the others are in "
                        "fxplat_client_calls_total.", ["service", "caller", "target", "result", "speed"])
BREAKER_TRIPS = Counter("fxplat_client_breaker_trips_total", "Times a caller's breaker opened, by the rate that "
                        "opened it (failure_rate or slow_call_rate; half-open trials included).",
                        ["service", "caller", "target", "rate"])


def updater(child) -> Callable[[float], None]:
    """The update of one metric child (Counter/Gauge: add the amount, Histogram: observe it), bound once, for the
    paths that update series on every call (adapters, both servers).

    prometheus_client's public `inc()` / `observe()` check on every call that the child has its labels and walk the
    buckets in Python: 4 to 7 Python calls per update, where this makes one (a counter) or two (a histogram); with 3 to
    4 updates per call that was ~2 % of a small adapter call. It writes to the child's value objects (`_value`, `_sum`,
    `_buckets`), so it relies on prometheus_client's child layout (pinned < 1); tests/test_observability.py checks that
    the exposition matches the public API's, so a release that changes the layout fails there, not in production."""
    if isinstance(child, Histogram):
        bounds, total = tuple(child._upper_bounds), child._sum.inc
        buckets = tuple(bucket.inc for bucket in child._buckets)

        def observe(seconds: float) -> None:
            total(seconds)
            buckets[bisect_left(bounds, seconds)](1)  # the first bucket whose bound >= seconds (the last is +Inf)

        return observe
    return child._value.inc


def registry() -> CollectorRegistry:
    """What /metrics exposes: this process's registry, or the sum over every worker process in multiprocess mode."""
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not path:
        return REGISTRY
    merged = CollectorRegistry()
    multiprocess.MultiProcessCollector(merged, path)
    return merged


def per_process(path: str, pid: int, name: str = "fxplat_server_requests_total") -> float:
    """In multiprocess mode: the sum of counter `name` over all its labels, as worker `pid` alone counted it."""
    files = glob.glob(os.path.join(path, f"counter_{pid}.db"))
    return sum(sample.value for family in multiprocess.MultiProcessCollector.merge(files, accumulate=False)
               for sample in family.samples if sample.name == name)
