"""Observability on real servers: Prometheus counts on /metrics moved by exactly the calls made on each transport,
client-side choices, fallbacks and breaker state; one JSON log line per call with its ids; one trace for one analysis
across four services on mixed transports; /readyz; probes kept out of OpenAPI and out of the call metrics."""
from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timezone

import pytest
from google.protobuf import wrappers_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from prometheus_client.parser import text_string_to_metric_families

from adapters.breaker import BreakerConfig
from adapters.connect import connect
from adapters.core import last_call
from adapters.flags import Flags
from fxplat.catalog import BuildContext, build_host
from transport.client_factory import ClientFactory
from transport.config import Endpoint
from fxplat.runner import start_services
from services.analysis_coordinator.models import AnalysisRequest
from services.backtesting.models import BacktestRequest
from services.common import errors as E
from services.common.market_types import TimeRange, Timeframe
from services.market_analysis.models import CandlesQuery
from transport import context, grpc_client, logs, ops, rest_client, tracing
from transport.grpc_server import GrpcMethod, service_handler
from transport.rest_app import create_app
from transport.server import ServiceHost

LOOPBACK = "127.0.0.1"
SERVICES = ("market_analysis", "causal_analysis", "backtesting", "analysis_coordinator")
MARCH = TimeRange(datetime(2025, 3, 3, tzinfo=timezone.utc), datetime(2025, 4, 1, tzinfo=timezone.utc))

Samples = dict[tuple[str, frozenset], float]


async def scrape(http) -> Samples:
    resp = await http.get("/metrics")
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/plain")
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(resp.text) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def moved(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Tracing on for one test, every finished span kept in memory."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.use_provider(provider)
    yield exporter
    tracing.use_provider(None)


@pytest.fixture
def call_lines():
    """The JSON lines the `fxplat.calls` and `fxplat.errors` loggers write during one test, parsed."""
    stream = io.StringIO()
    handler = logs.handler("json", stream)
    loggers = [logging.getLogger(name) for name in ("fxplat.calls", "fxplat.errors")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    for logger, level in zip(loggers, levels):
        logger.removeHandler(handler)
        logger.setLevel(level)


def market_adapter(host, factory, flags, *, force=None, grpc_target=None, **kw):
    return connect("market_analysis", Endpoint(host.rest_url, grpc_target or host.grpc_target), factory=factory,
                   flags=flags, force=force, **kw)


async def test_metrics_move_by_exactly_the_calls_made_on_each_transport(market_host, factory, platform_flags):
    http = factory.http(market_host.rest_url)
    over = {t: market_adapter(market_host, factory, platform_flags, force=t, caller="obs") for t in ("grpc", "rest")}
    before = await scrape(http)
    for _ in range(3):
        await over["grpc"].list_symbols()
    for _ in range(2):
        await over["rest"].list_symbols()
    with pytest.raises(E.NotFound):
        await over["rest"].get_candles(CandlesQuery("NOSUCH"))
    after = await scrape(http)

    served = dict(service="market_analysis", method="ListSymbols", code="OK")
    assert moved(before, after, "fxplat_server_requests_total", transport="grpc", **served) == 3
    assert moved(before, after, "fxplat_server_requests_total", transport="rest", **served) == 2
    assert moved(before, after, "fxplat_server_requests_total", service="market_analysis", method="GetCandles",
                 transport="rest", code="NOT_FOUND") == 1
    assert moved(before, after, "fxplat_server_request_duration_seconds_count", service="market_analysis",
                 method="ListSymbols", transport="grpc") == 3
    assert value(after, "fxplat_server_in_flight_requests", service="market_analysis", transport="grpc") == 0

    called = dict(service="market_analysis", method="ListSymbols", code="OK", fallback="false")
    assert moved(before, after, "fxplat_client_calls_total", transport="grpc", **called) == 3
    assert moved(before, after, "fxplat_client_calls_total", transport="rest", **called) == 2
    assert moved(before, after, "fxplat_client_transport_choices_total", service="market_analysis",
                 method="ListSymbols", transport="grpc") == 3
    assert moved(before, after, "fxplat_client_call_duration_seconds_count", service="market_analysis",
                 method="ListSymbols", transport="rest") == 2
    # Scrapes and probes are not calls: no series names them.
    await http.get("/healthz")
    assert not [key for key in await scrape(http) if dict(key[1]).get("method") in ("metrics", "healthz", "/metrics")]


async def test_fallback_and_breaker_state_are_recorded(market_host, factory, platform_flags):
    """gRPC refused (nothing listens on the target): the call falls back to REST and the breaker opens."""
    target = f"{LOOPBACK}:{closed_port()}"
    adapter = market_adapter(market_host, factory, platform_flags, grpc_target=target, caller="obs-breaker",
                             breaker=BreakerConfig(min_calls=1))
    http = factory.http(market_host.rest_url)
    breaker = dict(service="market_analysis", caller="obs-breaker", target=target)
    before = await scrape(http)
    assert value(before, "fxplat_client_breaker_state", **breaker) == 0  # a new breaker is closed
    await adapter.list_symbols()
    assert last_call.get().fallback_reason == "unavailable"
    after = await scrape(http)

    assert value(after, "fxplat_client_breaker_state", **breaker) == 2
    assert moved(before, after, "fxplat_client_fallbacks_total", service="market_analysis", method="ListSymbols",
                 reason="unavailable") == 1
    assert moved(before, after, "fxplat_client_transport_choices_total", service="market_analysis",
                 method="ListSymbols", transport="grpc") == 1
    assert moved(before, after, "fxplat_client_calls_total", service="market_analysis", method="ListSymbols",
                 transport="rest", code="OK", fallback="true") == 1


async def test_one_json_line_per_call_with_request_and_trace_ids(market_host, factory, platform_flags, call_lines,
                                                                 spans):
    token = context.request_id.set("obs-request-1")  # clients forward the current request id
    try:
        for transport in ("grpc", "rest"):
            await market_adapter(market_host, factory, platform_flags, force=transport).list_symbols()
    finally:
        context.request_id.reset(token)

    lines = [line for line in call_lines() if line["logger"] == "fxplat.calls"]
    assert [(line["transport"], line["service"], line["method"], line["code"]) for line in lines] == [
        ("grpc", "market_analysis", "ListSymbols", "OK"), ("rest", "market_analysis", "ListSymbols", "OK")]
    server_spans = {s.attributes["fxplat.transport"]: s
                    for s in spans.get_finished_spans() if s.kind is SpanKind.SERVER}
    for line in lines:
        assert line["level"] == "info" and line["request_id"] == "obs-request-1"
        assert isinstance(line["duration_ms"], float) and line["duration_ms"] > 0
        assert line["trace_id"] == f"{server_spans[line['transport']].context.trace_id:032x}"


async def test_busy_methods_log_a_sample_of_their_successes_and_count_the_rest(market_host, factory, platform_flags,
                                                                                  call_lines):
    """Past FXPLAT_CALL_LOG_RATE successful calls per second of a method, the rest are counted, not logged; the
    method's next line says how many went unlogged, so lines plus `unlogged` account for every call. Errors are always
    logged."""
    adapter = market_adapter(market_host, factory, platform_flags, force="grpc")
    logs.sample_calls(5)
    try:
        for i in range(40):
            await adapter.list_symbols()
            if i % 10 == 0:
                with pytest.raises(E.NotFound):
                    await adapter.get_candles(CandlesQuery("NOPE", Timeframe.H1, limit=1))
        await asyncio.sleep(1.05)  # a new second: the next success is logged, with what went unlogged before it
        await adapter.list_symbols()
    finally:
        logs.sample_calls(0)
    lines = [line for line in call_lines() if line["logger"] == "fxplat.calls"]
    ok = [line for line in lines if line["method"] == "ListSymbols"]
    errors = [line for line in lines if line["method"] == "GetCandles"]
    assert [line["code"] for line in errors] == ["NOT_FOUND"] * 4 and not any("unlogged" in line for line in errors)
    assert len(ok) + sum(line.get("unlogged", 0) for line in ok) == 41  # every success, logged or counted
    assert 6 <= len(ok) <= 16  # 5 a second (the burst may straddle a second), and the one after the pause
    assert ok[-1]["unlogged"] > 0 and ok[-1]["msg"].endswith(f"(+{ok[-1]['unlogged']} unlogged)")


async def test_writes_are_logged_every_one_whatever_their_rate(backtesting_host, factory, platform_flags, call_lines):
    """A write's line is its audit record: RunBacktest is never sampled, however many succeed in a second."""
    adapter = connect("backtesting", Endpoint(backtesting_host.rest_url, backtesting_host.grpc_target),
                      factory=factory, flags=platform_flags, force="grpc")
    request = BacktestRequest("EURUSD", "sma_cross", {"fast": 5, "slow": 20},
                              range=TimeRange(datetime(2025, 3, 1, tzinfo=timezone.utc),
                                              datetime(2025, 3, 8, tzinfo=timezone.utc)))
    logs.sample_calls(1)
    try:
        for _ in range(6):
            await adapter.run_backtest(request)
    finally:
        logs.sample_calls(0)
    lines = [line for line in call_lines() if line["method"] == "RunBacktest"]
    assert [line["code"] for line in lines] == ["OK"] * 6 and not any("unlogged" in line for line in lines)


async def test_call_lines_without_tracing_have_an_empty_trace_id(market_host, factory, platform_flags, call_lines):
    await market_adapter(market_host, factory, platform_flags, force="grpc").list_symbols()
    (line,) = call_lines()
    assert line["trace_id"] == "" and len(line["request_id"]) == 32  # the server made one up


async def test_unexpected_errors_are_logged_with_the_request_id_on_both_transports(tokens, call_lines):
    full_name = "forex.obsboom.v1.BoomService"  # a generic handler: no .proto needed

    async def boom(_=None):
        raise ZeroDivisionError("a bug")

    async def rest_boom():
        await boom()

    app = create_app("obsboom", "boom", "raises")
    app.add_api_route("/v1/boom", rest_boom, methods=["POST"], name="Boom")
    host = await ServiceHost("obsboom", LOOPBACK, app,
                             service_handler(full_name, [GrpcMethod("Boom", wrappers_pb2.StringValue, boom)]),
                             full_name).start()
    # A factory of this test's own: the session's may hold a channel to this port from an earlier test's server,
    # still in reconnect backoff, which fails the call fast (UNAVAILABLE) instead of reaching this server.
    factory = ClientFactory(token_source=tokens)
    stub = factory.channel(host.grpc_target).unary_unary(
        f"/{full_name}/Boom", request_serializer=wrappers_pb2.StringValue.SerializeToString,
        response_deserializer=wrappers_pb2.StringValue.FromString)
    token = context.request_id.set("obs-boom")
    try:
        with pytest.raises(E.Internal):
            await grpc_client.unary(stub, wrappers_pb2.StringValue())
        with pytest.raises(E.Internal):
            await rest_client.call(factory.http(host.rest_url), "POST", "/v1/boom")
    finally:
        context.request_id.reset(token)
        await factory.close()
        await host.stop(grace=0)

    lines = call_lines()
    errors = [line for line in lines if line["logger"] == "fxplat.errors"]
    assert len(errors) == 2 and all(e["level"] == "error" and e["request_id"] == "obs-boom" and
                                    "ZeroDivisionError: a bug" in e["exc"] for e in errors)
    calls = [(line["transport"], line["code"], line["request_id"])
             for line in lines if line["logger"] == "fxplat.calls"]
    assert calls == [("grpc", "INTERNAL", "obs-boom"), ("rest", "INTERNAL", "obs-boom")]


MIXED = """kill_switch: false
services:
  market_analysis: {grpc: 100}
  causal_analysis: {grpc: 0}
  backtesting: {grpc: 100}
  analysis_coordinator: {grpc: 0}
"""


async def test_one_analysis_is_one_trace_across_four_services(data_dir, factory, auth, tmp_path, spans):
    """The coordinator over REST fans out (asyncio.gather) to market analysis over gRPC, causal analysis over REST
    and backtesting over gRPC, and those call market analysis over gRPC: every span carries one trace id."""
    path = tmp_path / "flags.yaml"
    path.write_text(MIXED)
    flags = Flags(path, unleash_url="")
    hosts = await start_services(list(SERVICES), BuildContext(data_dir, factory, flags, auth=auth), host=LOOPBACK,
                                 ports={name: (0, 0) for name in SERVICES})
    try:
        coordinator = hosts[-1]
        adapter = connect("analysis_coordinator", Endpoint(coordinator.rest_url, coordinator.grpc_target),
                          factory=factory, flags=flags)
        spans.clear()
        analysis = await adapter.run_analysis(AnalysisRequest(("EURUSD", "GBPUSD"), Timeframe.H1, MARCH))
    finally:
        for svc in reversed(hosts):
            await svc.stop(grace=0)
        flags.close()
    assert analysis.failed_calls == 0 and len(analysis.calls) == 6

    finished = spans.get_finished_spans()
    assert len({s.context.trace_id for s in finished}) == 1
    servers = [s for s in finished if s.kind is SpanKind.SERVER]
    assert {(s.attributes["fxplat.service"], s.attributes["fxplat.transport"]) for s in servers} == {
        ("analysis_coordinator", "rest"), ("market_analysis", "grpc"), ("causal_analysis", "rest"),
        ("backtesting", "grpc")}
    assert all(s.attributes["fxplat.code"] == "OK" for s in finished)
    # One tree: the test's own call is the only root, every other span's parent is in the trace.
    ids = {s.context.span_id for s in finished}
    (root,) = [s for s in finished if s.parent is None]
    assert root.kind is SpanKind.CLIENT and all(s.parent.span_id in ids for s in finished if s is not root)
    # The fan-out ran in tasks that inherited the coordinator's span: the symbol check and each component call.
    (coordinating,) = [s for s in servers if s.attributes["fxplat.service"] == "analysis_coordinator"]
    assert coordinating.name == "analysis_coordinator/RunAnalysis"
    children = [s for s in finished if s.parent is not None and s.parent.span_id == coordinating.context.span_id]
    assert len(children) == 1 + len(analysis.calls) and all(s.kind is SpanKind.CLIENT for s in children)


async def test_readyz_reports_ready_services_and_their_checks(market_host, backtesting_host, coordinator_host, factory):
    for host, checks in ((market_host, ["flags"]), (backtesting_host, ["flags", "storage"]),
                         (coordinator_host, ["flags", "storage"])):
        resp = await factory.http(host.rest_url).get("/readyz")
        assert resp.status_code == 200 and resp.json() == {"status": "ready", "checks": checks}
        assert not ops.PATHS & set(host.app.openapi()["paths"])  # probes are not part of the REST contract


async def test_readyz_names_unusable_storage_and_shutdown(tmp_path, factory, platform_flags, auth, market_host,
                                                          monkeypatch):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    not_a_directory = tmp_path / "data"
    not_a_directory.write_text("a file where the data directory should be")
    ctx = BuildContext(not_a_directory, factory, platform_flags, auth=auth,
                       endpoints={"market_analysis": Endpoint(market_host.rest_url, market_host.grpc_target)})
    svc = await (await build_host("backtesting", ctx, LOOPBACK, 0, 0)).start()
    try:
        http = factory.http(svc.rest_url)
        resp = await http.get("/readyz")
        assert resp.status_code == 503 and resp.headers["content-type"] == "application/problem+json"
        problem = resp.json()
        assert (problem["code"], problem["reason"], list(problem["metadata"])) == ("UNAVAILABLE", "NOT_READY",
                                                                                  ["storage"])
        assert "unable to open database file" in problem["metadata"]["storage"]
        assert (await http.get("/healthz")).status_code == 200  # alive, just not ready

        await svc.begin_shutdown()
        resp = await http.get("/readyz")
        assert resp.status_code == 503 and list(resp.json()["metadata"]) == ["shutdown"]
        health = health_pb2_grpc.HealthStub(factory.channel(svc.grpc_target))
        for name in ("", "forex.backtesting.v1.BacktestingService"):
            reply = await health.Check(health_pb2.HealthCheckRequest(service=name))
            assert reply.status == health_pb2.HealthCheckResponse.NOT_SERVING
    finally:
        await svc.stop(grace=0)


def test_tracing_and_log_settings_reject_unknown_values():
    with pytest.raises(ValueError, match="FXPLAT_OTEL_EXPORTER"):
        tracing.configure("zipkin")
    with pytest.raises(ValueError, match="log format"):
        logs.handler("xml")
    assert not tracing.enabled()


@pytest.mark.parametrize("value, problem", [("lots", "must be a number, not 'lots'"),
                                            ("-1", "must be between 0 and 1e+06, not '-1'")])
def test_up_refuses_a_bad_call_log_rate_clearly(tmp_path, value, problem):
    env = {**os.environ, "FXPLAT_CALL_LOG_RATE": value}
    done = subprocess.run([sys.executable, "-m", "fxplat", "up", "--service", "market_analysis", "--data-dir",
                           str(tmp_path)], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert f"FXPLAT_CALL_LOG_RATE {problem}" in done.stderr and "Traceback" not in done.stderr


def test_console_log_lines_name_the_call_ids():
    stream = io.StringIO()
    record = logging.LogRecord("fxplat.calls", logging.INFO, __file__, 1, "grpc m/ListSymbols OK", (), None)
    record.request_id, record.trace_id = "r1", "t1"
    logs.handler("console", stream).handle(record)
    assert stream.getvalue().rstrip().endswith("fxplat.calls: grpc m/ListSymbols OK  [request_id=r1 trace_id=t1]")



def test_bound_metric_updates_expose_exactly_what_the_public_api_does(tmp_path, monkeypatch):
    """transport.metrics.updater writes to prometheus_client's value objects directly (for speed): the same updates
    through it and through inc()/observe() must give the same exposition, in memory and in multiprocess mode."""
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess, values

    from transport.metrics import _BUCKETS, updater

    amounts = [0.0, 0.0005, 0.00051, 0.003, 0.01, 0.7, 2.5, 11.0, 1e9]  # on, between and beyond the bounds

    def exposition(registry: CollectorRegistry, fast: bool) -> str:
        c = Counter("t_calls", "c", ["k"], registry=registry).labels("a")
        g = Gauge("t_in_flight", "g", ["k"], registry=registry, multiprocess_mode="livesum").labels("a")
        h = Histogram("t_seconds", "h", ["k"], registry=registry, buckets=_BUCKETS).labels("a")
        for x in amounts:
            if fast:
                updater(c)(1), updater(g)(1), updater(g)(-1), updater(g)(1), updater(h)(x)
            else:
                c.inc(), g.inc(), g.dec(), g.inc(), h.observe(x)
        return "\n".join(line for line in generate_latest(registry).decode().splitlines() if "_created" not in line)

    public, fast = exposition(CollectorRegistry(), False), exposition(CollectorRegistry(), True)
    assert public == fast
    assert 't_seconds_bucket{k="a",le="0.0005"} 2.0' in fast and 't_seconds_count{k="a"} 9.0' in fast
    assert 't_in_flight{k="a"} 9.0' in fast

    # multiprocess mode: the values live in mmap files; both ways must land in them alike
    texts = []
    for fast_mode in (False, True):
        path = tmp_path / str(fast_mode)
        path.mkdir()
        monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(path))
        monkeypatch.setattr(values, "ValueClass", values.get_value_class())
        exposition(CollectorRegistry(), fast_mode)  # written to the files of this process
        merged = CollectorRegistry()
        multiprocess.MultiProcessCollector(merged, str(path))
        texts.append(generate_latest(merged).decode())
    assert texts[0] == texts[1] and 't_seconds_count{k="a"} 9.0' in texts[1]
