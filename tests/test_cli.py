"""`fxplat call` and `fxplat status` as a user runs them, against a real service on loopback."""
from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from pathlib import Path

import pytest

from fxplat import bench

FXPLAT = [str(Path(sys.executable).with_name("fxplat"))]


async def run(*args: str, env: dict[str, str], timeout: float = 60) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(*FXPLAT, *args, env={**os.environ, **env},
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    return proc.returncode, out.decode(), err.decode()


@pytest.fixture
def env(market_host, tmp_path, tokens):
    flags = tmp_path / "flags.yaml"
    flags.write_text("services:\n  market_analysis: {grpc: 100}\n")
    return {"FXPLAT_MARKET_ANALYSIS_REST_URL": market_host.rest_url,
            "FXPLAT_MARKET_ANALYSIS_GRPC_TARGET": market_host.grpc_target, "FXPLAT_FLAGS": str(flags),
            "FXPLAT_TOKEN": tokens()}


@pytest.mark.parametrize("transport", ["auto", "grpc", "rest"])
async def test_call_get_candles_with_each_transport(env, transport):
    code, out, err = await run("call", "market_analysis", "GetCandles", "--transport", transport,
                               "--data", '{"symbol": "EURUSD", "timeframe": "TIMEFRAME_H1", "limit": 5}', env=env)
    assert code == 0, err
    body = json.loads(out)
    assert len(body["candles"]["close"]) == 5 and body["next_page_token"]
    assert f"served by {'grpc' if transport == 'auto' else transport}" in err


@pytest.mark.parametrize("args, message", [
    (["call", "nowhere", "GetCandles"], "unknown service"),
    (["call", "market_analysis", "GetCandle"], "has no method"),
    (["call", "market_analysis", "GetCandles", "--data", "{oops"], "not a valid GetCandlesRequest"),
    (["call", "market_analysis", "GetCandles", "--data", '{"symbol": "NOPE"}'], "NOT_FOUND"),
    (["call", "market_analysis", "GetCandles", "--transport", "smoke"], "--transport must be"),
])
async def test_call_errors_are_clear(env, args, message):
    code, out, err = await run(*args, env=env)
    assert code != 0 and message in err and "Traceback" not in err and out == ""


async def test_status_json(env):
    code, out, err = await run("status", "--json", env=env)
    assert code == 0, err
    report = json.loads(out)
    market = report["services"]["market_analysis"]
    assert market["rest"] == "up" and market["grpc"] == "up" and market["grpc_percent"] == 100
    assert market["breaker"] == "closed"
    assert report["services"]["backtesting"]["grpc_percent"] == 0  # left out of the file: REST


@pytest.mark.slow
@pytest.mark.timeout(330)  # liveness only: on a loaded 2-core machine the servers alone take a minute or more to start
async def test_bench_quick_prints_and_writes_the_ratios(tmp_path):
    """A smoke run of the benchmark: it starts its own server, measures both transports and reports every target.
    Nothing here asserts a speed (machines are noisy); the ratios are checked for presence and sanity only."""
    out = tmp_path / "bench.json"
    code, stdout, err = await run("bench", "--quick", "--json", str(out), env={}, timeout=300)
    assert code == 0, err
    result = json.loads(out.read_text())
    targets = {r["key"]: r for r in result["ratios"] if r["target"]}
    assert set(targets) == {"adapter_overhead_pct", "small_grpc_over_rest_p50", "rest_over_grpc_100k",
                            "throughput_grpc_over_rest", "grpc_server_over_floor", "rest_server_over_floor"}
    assert {(r["transport"], r["server"]) for r in result["floor_rows"]} == {
        (transport, server) for transport in ("grpc", "rest") for server in ("floor", "route", "domain", "platform")}
    assert all(r["errors"] == 0 and r["calls_per_s"] > 0 and r["server_cpu_us_per_call"] > 0
               for r in result["floor_rows"])  # every server answered, its CPU was read
    info = {r["key"]: r for r in result["ratios"] if not r["target"]}
    for key in ("route_floor_over_floor", "route_floor_cpu_floor_share", "server_over_route_floor",
                "server_cpu_route_floor_share",  # the route floors split the gap: the framework, then the platform
                "domain_floor_over_route_floor", "domain_floor_cpu_route_floor_share", "server_over_domain_floor",
                "server_cpu_domain_floor_share"):  # and the domain floors split the platform: its domain, its layer
        for transport in ("grpc", "rest"):
            assert isinstance(info[f"{transport}_{key}"]["value"], float) and info[f"{transport}_{key}"]["value"] > 0
    for transport in ("grpc", "rest"):  # µs of server CPU per call; noise may make it negative on a quick run
        assert isinstance(info[f"{transport}_layer_cpu_us"]["value"], float)
    assert "route floor" in stdout and "domain floor" in stdout
    assert result["fanout_rows"] == []  # the analysis fan-out runs in full runs only (a second stack to start)
    assert all(isinstance(r["value"], float) and r["value"] > 0 and r["pass"] in (True, False) for r in targets.values()
               if r["key"] != "adapter_overhead_pct")  # measured; a pass/fail verdict given
    assert isinstance(targets["adapter_overhead_pct"]["value"], float)  # an overhead may be negative on a noisy run
    assert isinstance(info["adapter_overhead_us"]["value"], float) and info["adapter_overhead_us"]["unit"] == "µs"
    # the raw stub on a bare grpc.aio server, and (one at a time) on one answering from the platform's domain,
    # measured beside the adapters: the ceilings of the gRPC/REST targets, without and with the method's own work
    bare, domain = (next(r for r in result["rows"] if r["variant"] == f"grpc raw stub, {server} server")
                    for server in ("bare", "domain"))
    assert bare["n"] > 0 and bare["calls_per_s"] > 0 and domain["n"] > 0 and domain["transport"] == "grpc"
    for key in ("small_grpc_over_rest_p50_ceiling", "throughput_grpc_over_rest_ceiling",
                "small_grpc_over_rest_p50_domain_ceiling"):
        assert isinstance(info[key]["value"], float) and info[key]["value"] > 0
    # each target with a bound measured in the run carries it, and whether the target is within its reach
    for key, ceiling in bench.CEILINGS.items():
        assert targets[key]["ceiling"] == info[ceiling]["value"] and targets[key]["reachable"] in (True, False)
    for key, ceiling in bench.DOMAIN_CEILINGS.items():
        assert targets[key]["domain_ceiling"] == info[ceiling]["value"]
        assert targets[key]["reachable_with_domain"] in (True, False)
    assert "adapter->grpc p50 over raw stub+decode" in stdout
    assert re.search(r"adapter->grpc p50 minus raw stub\+decode p50, 10 bars\s*│\s*[+-]\d+ µs", stdout), stdout


@pytest.fixture
def coordinator_env(coordinator_host, tmp_path, tokens):
    flags = tmp_path / "flags.yaml"
    flags.write_text("services:\n  analysis_coordinator: {grpc: 100}\n")
    return {"FXPLAT_ANALYSIS_COORDINATOR_REST_URL": coordinator_host.rest_url,
            "FXPLAT_ANALYSIS_COORDINATOR_GRPC_TARGET": coordinator_host.grpc_target, "FXPLAT_FLAGS": str(flags),
            "COLUMNS": "160", "FXPLAT_TOKEN": tokens()}


MARCH = ["--start", "2025-03-03", "--end", "2025-04-01"]


async def test_analyze_json(coordinator_env):
    code, out, err = await run("analyze", "EURUSD", "GBPUSD", *MARCH, "--param", "fast=5", "-p", "slow=15", "--json",
                               env=coordinator_env)
    assert code == 0, err
    report = json.loads(out)
    assert report["request"]["params"] == {"fast": 5.0, "slow": 15.0}
    assert [c["status"] for c in report["calls"]] == ["ok"] * 6
    assert [b["summary"]["symbol"] for b in report["backtests"]] == ["EURUSD", "GBPUSD"]
    assert "served by grpc" in err


async def test_analyze_prints_a_readable_report(coordinator_env):
    code, out, err = await run("analyze", "USDJPY", "EURUSD", *MARCH, "--strategy", "rsi_reversion",
                               env=coordinator_env)
    assert code == 0, err
    for heading in ("Market", "Correlation of returns", "Granger causality", "Backtests: rsi_reversion",
                    "Component calls", "6/6 component calls succeeded", "USDJPY → EURUSD"):
        assert heading in out


@pytest.mark.parametrize("args, message", [
    (["EURUSD", "--param", "fast"], "expected NAME=NUMBER"),
    (["EURUSD", "--param", "fast=quick"], "'quick' is not a number"),
    (["EURUSD", "XXXYYY"], "NOT_FOUND [symbols[1]]: unknown symbol 'XXXYYY'"),
    (["EURUSD", "--timeframe", "H2"], "INVALID_ARGUMENT [--timeframe]: unknown timeframe 'H2'"),
    (["EURUSD", "--strategy", "martingale"], "unknown strategy 'martingale'"),
    (["EURUSD", "--param", "fast=30"], "INVALID_ARGUMENT [params.fast]: fast (30) must be less than slow (20)"),
    (["EURUSD", "--transport", "carrier-pigeon"], "--transport must be"),
])
async def test_analyze_errors_are_clear(coordinator_env, args, message):
    code, out, err = await run("analyze", *args, *MARCH, env=coordinator_env)
    assert code != 0 and message in err and "Traceback" not in err and out == "", err
