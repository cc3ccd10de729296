"""benchmarks/bench_adapter_cost.py, the measurement behind the adapter-overhead verdict in docs/benchmarks.md. Its rows
mean something only if each variant is what it says: the adapters answer the page from the floor server over gRPC, the
ablated one skips exactly its metric updates, the instant client is not a call; these tests check that, and that a
short run prints every row (they time nothing)."""
from __future__ import annotations

import re

import pytest
from prometheus_client import REGISTRY

from benchmark_scripts import loaded


@pytest.fixture(scope="module")
def bench():
    with loaded("bench_adapter_cost") as module:
        yield module


def _ok_grpc_calls() -> float:
    return REGISTRY.get_sample_value("fxplat_client_calls_total", {
        "service": "market_analysis", "method": "GetCandles", "transport": "grpc", "code": "OK",
        "fallback": "false"}) or 0.0


async def test_the_adapters_it_times_answer_over_grpc_and_only_the_ablated_one_skips_its_metrics(bench, tmp_path):
    from adapters.flags import Flags
    from services.common import errors as E
    from transport.client_factory import ClientFactory

    flags_file = tmp_path / "flags.yaml"
    flags_file.write_text("kill_switch: false\nservices:\n  market_analysis:\n    grpc: 100\n")
    with bench.floors(tmp_path) as endpoint:
        async with ClientFactory() as factory:
            flags = Flags(flags_file, unleash_url="")
            full = bench.adapter(endpoint, factory, flags)
            ablated = bench.adapter(endpoint, factory, flags, hedge=False, metrics=False)
            page = bench.ten_bar_page()
            before = _ok_grpc_calls()
            assert (await full.get_candles(bench.QUERY)).series == page.series
            assert _ok_grpc_calls() == before + 1
            assert (await ablated.get_candles(bench.QUERY)).series == page.series
            assert _ok_grpc_calls() == before + 1  # its usual outcome's update was made a no-op
            assert ablated.caller._method("GetCandles").hedged is False
            assert full.caller._method("GetCandles").hedged is True
    # the floor is gone: the same call now fails, so the answers above came over the wire
    async with ClientFactory() as factory:
        gone = bench.adapter(endpoint, factory, Flags(flags_file, unleash_url=""), force="grpc")
        with pytest.raises(E.Unavailable):
            await gone.get_candles(bench.QUERY)


async def test_a_short_run_prints_every_row(bench):
    out = await bench.main(30)
    for row in ("raw stub+decode", "grpc client", "adapter forced", "adapter", "adapter, no hedge",
                "adapter, no hedge/metrics"):
        assert re.search(rf"^{re.escape(row)} +p50 +[+-]?\d+\.\d µs", out, re.M), out
    assert re.search(r"^instant adapter, in situ +p50 +\d+\.\d µs +\(\d+\.\dx its tight-loop cost\)", out, re.M), out
