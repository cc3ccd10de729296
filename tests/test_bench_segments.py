"""How `fxplat bench` spreads its measurements (fxplat.bench._measure, _concurrent, _segments): the transports
alternate in segments, so that a slow spell of the machine (a 2-core VM's speed moves ~2x for seconds at a time)
falls on gRPC and REST alike, and each row adds up every segment measured into it. Fake calls record their order;
nothing here is timed against a target."""
from __future__ import annotations

import asyncio
import itertools

from fxplat import bench as B


def _recording(log: list[str], *names: str) -> dict[str, B.Call]:
    def call_of(name: str) -> B.Call:
        async def call() -> None:
            log.append(name)
            await asyncio.sleep(0)
        return call
    return {name: call_of(name) for name in names}


def _blocks(log: list[str]) -> list[str]:
    """The transports of `log` with each run of calls on one transport folded into one entry: "g" or "r"."""
    return [transport for transport, _ in itertools.groupby(name[0] for name in log)]


async def test_the_transports_alternate_in_segments_sequentially_and_under_16_callers():
    log: list[str] = []
    calls = _recording(log, "g-raw", "g-adapter", "r-raw", "r-adapter")
    size = B.Size("t", 10, grpc_seq=(6, 6, 60.0), rest_seq=(3, 3, 60.0), grpc_conc=(48, 60.0), rest_conc=(24, 60.0),
                  concurrent=("g-adapter", "r-adapter"), rest=("r-raw", "r-adapter"), rest_warmup=0, rounds=3)
    rows = await B._measure(size, calls, ("g-raw", "g-adapter"), log=lambda line: None)

    # three gRPC blocks and three REST blocks in turn, sequentially (the first gRPC one with its warm-up) and again
    # under 16 callers: never one transport's whole measurement at one moment
    assert _blocks(log) == ["g", "r"] * 6
    assert {name: row.n for name, row in rows.items()} == {"g-raw": 6, "g-adapter": 6, "r-raw": 3, "r-adapter": 3}
    assert rows["g-adapter"].transport == "grpc" and rows["r-adapter"].transport == "rest"
    # each 16-caller segment has its share of the calls (48 / 3, 24 / 3), and the row adds them all up
    assert rows["g-adapter"].conc_calls == 48 and rows["r-adapter"].conc_calls == 24
    assert rows["g-raw"].conc_calls == 0 and rows["g-raw"].calls_per_s is None  # not in `concurrent`
    for row in (rows["g-adapter"], rows["r-adapter"]):
        assert row.calls_per_s == row.conc_calls / row.conc_wall_s
        assert len(row.conc_samples_ms) == row.conc_calls and row.conc_p50_ms is not None


async def test_with_one_round_each_transport_is_measured_in_one_block():
    log: list[str] = []
    calls = _recording(log, "g", "r")
    size = B.Size("t", 10, (4, 4, 60.0), (2, 2, 60.0), (16, 60.0), (16, 60.0), ("g", "r"), rest=("r",),
                  rest_warmup=0)
    await B._measure(size, calls, ("g",), log=lambda line: None)
    assert _blocks(log) == ["g", "r", "g", "r"]  # sequential, then 16 callers


async def test_a_variant_on_a_server_of_its_own_is_timed_in_a_block_after_the_interleaved_rounds():
    """The raw stub on the bare and on the domain server: interleaved one call in seven, their servers would run cold
    while the platform's stays busy. So in each gRPC segment each gets a block of consecutive calls (after a few
    untimed ones), as many as each interleaved variant got; and 16-caller runs on gRPC's budget."""
    log: list[str] = []
    calls = _recording(log, "g-raw", "g-adapter", "g-bare", "g-domain", "r-adapter")
    size = B.Size("t", 10, grpc_seq=(4, 4, 60.0), rest_seq=(2, 2, 60.0), grpc_conc=(32, 60.0), rest_conc=(16, 60.0),
                  concurrent=("g-bare", "g-domain", "r-adapter"), rest=("r-adapter",), rest_warmup=0, rounds=2)
    rows = await B._measure(size, calls, ("g-raw", "g-adapter"), log=lambda line: None,
                            own_server=("g-bare", "g-domain"))
    assert {name: row.n for name, row in rows.items()} == {"g-raw": 4, "g-adapter": 4, "g-bare": 4, "g-domain": 4,
                                                          "r-adapter": 2}
    assert rows["g-domain"].transport == "grpc" and rows["g-domain"].conc_calls == 32  # gRPC's 16-caller budget
    first_segment = log[:log.index("r-adapter")]
    warm = B.OWN_SERVER_WARMUP
    interleaved = first_segment[:len(first_segment) - 2 * (warm + 2)]
    assert set(interleaved) == {"g-raw", "g-adapter"}  # the platform's variants, call by call
    # then each own-server variant back to back: its warm-up and its timed calls in one run
    assert first_segment[len(interleaved):] == ["g-bare"] * (warm + 2) + ["g-domain"] * (warm + 2)


async def test_a_row_adds_up_its_16_caller_segments_and_warms_the_pool_once():
    made: list[str] = []
    calls = _recording(made, "call")
    row = B.Row("t", 10, "call", "grpc")
    await B._concurrent(calls["call"], row, 4 * B.CONCURRENCY, 60.0)
    first_wall = row.conc_wall_s
    assert len(made) == B.CONCURRENCY + 4 * B.CONCURRENCY  # the pool's warm-up, then the measured calls
    await B._concurrent(calls["call"], row, 4 * B.CONCURRENCY, 60.0)
    assert len(made) == B.CONCURRENCY + 8 * B.CONCURRENCY  # no second warm-up: the pool is open
    assert row.conc_calls == 8 * B.CONCURRENCY == len(row.conc_samples_ms)
    assert row.conc_wall_s > first_wall
    assert row.calls_per_s == row.conc_calls / row.conc_wall_s
    await B._concurrent(calls["call"], row, 0, 60.0)  # a segment with no calls changes nothing
    assert row.conc_calls == 8 * B.CONCURRENCY


def test_a_budget_is_split_into_segments_rounding_counts_up():
    assert B._segments((400, 2000, 10.0), 8) == (50, 250, 1.25)
    assert B._segments((15, 100, 2.5), 2) == (8, 50, 1.25)
    assert B._segments((1600, 1.5), 8) == (200, 0.1875)
    assert B._segments((3, 3, 1.0), 1) == (3, 3, 1.0)


def test_the_ceilings_compare_the_bare_server_with_the_rest_adapter():
    def row(variant: str, p50: float, rate: float) -> B.Row:
        return B.Row("10", 10, variant, "rest" if "rest" in variant else "grpc", n=100, p50_ms=p50, calls_per_s=rate)

    rows = [row(B.BASELINE, 1.0, 1500.0), row("adapter -> grpc", 1.1, 1400.0), row("adapter -> rest", 2.0, 500.0),
            row(B.FLOOR_STUB, 0.6, 1750.0)]
    by_key = {r["key"]: r for r in B._ratios(rows, 10)}
    assert by_key["small_grpc_over_rest_p50_ceiling"]["value"] == 0.6 / 2.0
    assert by_key["throughput_grpc_over_rest_ceiling"]["value"] == 1750.0 / 500.0
    assert by_key["small_grpc_over_rest_p50_ceiling"]["target"] is None  # information beside the targets
    assert by_key["small_grpc_over_rest_p50"]["value"] == 1.1 / 2.0


def test_a_target_whose_ceiling_misses_too_is_reported_out_of_reach():
    def row(variant: str, p50: float, rate: float) -> B.Row:
        return B.Row("10", 10, variant, "rest" if "rest" in variant else "grpc", n=100, p50_ms=p50, calls_per_s=rate)

    rows = [row(B.BASELINE, 0.80, 2500.0), row("adapter -> grpc", 0.85, 2400.0), row("adapter -> rest", 1.40, 600.0),
            row(B.FLOOR_STUB, 0.75, 2900.0)]

    def floor(transport: str, server: str, rate: float) -> dict:
        return {"transport": transport, "server": server, "calls_per_s": rate, "server_cpu_us_per_call": 1e6 / rate,
                "seq_p50_ms": 0.5}

    floor_rows = [floor("grpc", "floor", 3000.0), floor("grpc", "route", 2900.0), floor("grpc", "platform", 2000.0),
                  floor("rest", "floor", 6000.0), floor("rest", "route", 3500.0), floor("rest", "platform", 2000.0)]
    targets = {r["key"]: r for r in B._ratios(rows, 10, floor_rows) if r["target"]}
    small, busy = targets["small_grpc_over_rest_p50"], targets["throughput_grpc_over_rest"]
    # 0.85 / 1.40 misses <= 0.5, and so does the bare server's 0.75 / 1.40: out of reach
    assert small["pass"] is False and small["ceiling"] == 0.75 / 1.40 and small["reachable"] is False
    # 2400 / 600 = 4.0 passes; 2900 / 600 passes too
    assert busy["pass"] is True and busy["reachable"] is True
    # the REST server: 2000 / 6000 misses >= 0.8, and the framework alone reaches 3500 / 6000: out of reach
    rest = targets["rest_server_over_floor"]
    assert rest["pass"] is False and rest["ceiling"] == 3500.0 / 6000.0 and rest["reachable"] is False
    # the gRPC server: 2000 / 3000 misses >= 0.7 but the codec floor reaches 2900 / 3000: within reach, a real miss
    grpc = targets["grpc_server_over_floor"]
    assert grpc["pass"] is False and grpc["reachable"] is True
    # a target without a ceiling row says nothing about reach
    assert targets["adapter_overhead_pct"]["ceiling"] is None and targets["adapter_overhead_pct"]["reachable"] is None


def test_the_domain_floors_split_the_platform_gap_into_its_domain_and_its_own_layer():
    """route -> domain floor: what the domain (and its encoding) costs; domain floor -> platform: what the per-call
    layer alone costs, also as µs of server CPU per call. Without a domain row the split is simply not printed."""
    def floor(transport: str, server: str, rate: float, cpu: float) -> dict:
        return {"transport": transport, "server": server, "calls_per_s": rate, "server_cpu_us_per_call": cpu,
                "seq_p50_ms": 0.5}

    floor_rows = [floor("grpc", "floor", 3000.0, 300.0), floor("grpc", "route", 2900.0, 310.0),
                  floor("grpc", "domain", 2500.0, 360.0), floor("grpc", "platform", 2250.0, 400.0)]
    info = {r["key"]: r for r in B._ratios([], 10, floor_rows) if not r["target"]}
    assert info["grpc_domain_floor_over_route_floor"]["value"] == 2500.0 / 2900.0
    assert info["grpc_domain_floor_cpu_route_floor_share"]["value"] == 310.0 / 360.0
    assert info["grpc_server_over_domain_floor"]["value"] == 2250.0 / 2500.0
    assert info["grpc_server_cpu_domain_floor_share"]["value"] == 360.0 / 400.0
    assert info["grpc_layer_cpu_us"]["value"] == 40.0 and info["grpc_layer_cpu_us"]["unit"] == "µs"
    assert not any(k.startswith("rest_") for k in info)  # no REST floor rows: no REST split
    without = {r["key"] for r in B._ratios([], 10, [r for r in floor_rows if r["server"] != "domain"])}
    assert "grpc_layer_cpu_us" not in without and "grpc_server_over_route_floor" in without


def test_a_target_whose_domain_ceiling_misses_is_reported_domain_bound(capsys):
    """The bare server reaches 0.5x (the framework allows it), but a server that computes the answer from the
    platform's domain, with none of its layer, does not: the miss is domain-bound (out of reach with the method's own
    work), and the report says so."""
    def row(variant: str, p50: float, rate: float) -> B.Row:
        return B.Row("10", 10, variant, "rest" if "rest" in variant else "grpc", n=100, p50_ms=p50, calls_per_s=rate)

    rows = [row(B.BASELINE, 0.80, 2500.0), row("adapter -> grpc", 0.85, 2300.0), row("adapter -> rest", 1.40, 625.0),
            row(B.FLOOR_STUB, 0.65, 2800.0), row(B.DOMAIN_STUB, 0.75, 2450.0)]
    ratios = B._ratios(rows, 10)
    by_key = {r["key"]: r for r in ratios}
    small = by_key["small_grpc_over_rest_p50"]
    assert small["pass"] is False and small["reachable"] is True  # 0.65 / 1.40 = 0.46
    assert small["domain_ceiling"] == 0.75 / 1.40 and small["reachable_with_domain"] is False  # 0.54
    # with 16 callers the domain server bounds nothing (measured): no second ceiling for the throughput target
    assert by_key["throughput_grpc_over_rest"]["domain_ceiling"] is None
    assert by_key["adapter_overhead_pct"]["domain_ceiling"] is None  # no such bound for it
    B._print_tables({"meta": {"small_bars": 10, "wall_s": 1.0, "cpus": 2, "client_loop": "uvloop"}, "rows": [],
                     "ratios": ratios})
    out = capsys.readouterr().out
    assert "MISS, domain-bound" in out and "0.54x" in out
