"""Every Market Analysis RPC gives the same answer in-process, over gRPC and over REST (real servers on loopback)."""
from __future__ import annotations

import time
from datetime import datetime, timezone

import numpy as np
import pytest

from services.common.market_types import TimeRange, Timeframe
from services.market_analysis.models import CandlesQuery, IndicatorRequest, IndicatorSpec, SummaryQuery

WIRES = ("grpc", "rest")
JAN = TimeRange(datetime(2025, 1, 6, tzinfo=timezone.utc), datetime(2025, 2, 1, tzinfo=timezone.utc))


@pytest.mark.parametrize("wire", WIRES)
async def test_list_symbols(market_clients, wire):
    expected = await market_clients["domain"].list_symbols()
    assert {s.symbol for s in expected} >= {"EURUSD", "GBPUSD", "USDJPY", "USDCHF", "AUDUSD", "USDCAD", "NZDUSD", "EURGBP"}
    assert await market_clients[wire].list_symbols() == expected


@pytest.mark.parametrize("wire", WIRES)
@pytest.mark.parametrize("query", [
    CandlesQuery("EURUSD"),
    CandlesQuery("USDJPY", Timeframe.M15, JAN, limit=500),
    CandlesQuery("GBPUSD", Timeframe.D1),
    CandlesQuery("EURUSD", Timeframe.H4, TimeRange(datetime(2030, 1, 1), None)),  # beyond the data: empty page
], ids=["default", "m15-range", "d1", "empty"])
async def test_get_candles(market_clients, wire, query):
    expected = await market_clients["domain"].get_candles(query)
    got = await market_clients[wire].get_candles(query)
    assert got.series == expected.series
    assert got.next_page_token == expected.next_page_token


@pytest.mark.parametrize("wire", WIRES)
async def test_paging_walks_the_range_once(market_clients, wire):
    client = market_clients[wire]
    query = CandlesQuery("EURGBP", Timeframe.H1, JAN, limit=100)
    times = []
    for _ in range(20):  # bounded: JAN at H1 is < 2,000 bars
        page = await client.get_candles(query)
        times.append(page.series.time)
        if not page.next_page_token:
            break
        query = CandlesQuery(query.symbol, query.timeframe, query.range, query.limit, page.next_page_token)
    all_times = np.concatenate(times)
    whole = await market_clients["domain"].get_candles(CandlesQuery("EURGBP", Timeframe.H1, JAN, limit=100_000))
    assert np.array_equal(all_times, whole.series.time)


ALL_INDICATORS = (
    IndicatorSpec("sma", {"period": 20}), IndicatorSpec("ema", {"period": 12}), IndicatorSpec("rsi"),
    IndicatorSpec("macd", {"fast": 8, "slow": 21, "signal": 5}), IndicatorSpec("bollinger", {"period": 20, "k": 2.5}),
    IndicatorSpec("atr", {"period": 14}),
)


@pytest.mark.parametrize("wire", WIRES)
async def test_compute_indicators_keeps_nan_warmup(market_clients, wire):
    request = IndicatorRequest("AUDUSD", Timeframe.H1, JAN, ALL_INDICATORS)
    expected = await market_clients["domain"].compute_indicators(request)
    got = await market_clients[wire].compute_indicators(request)
    assert got == expected
    sma = got.outputs[0].lines["value"]
    assert np.isnan(sma[:19]).all() and not np.isnan(sma[19:]).any()


@pytest.mark.parametrize("wire", WIRES)
async def test_analyze_market(market_clients, wire):
    for query in (SummaryQuery("EURUSD"), SummaryQuery("USDJPY", Timeframe.H4, JAN)):
        assert await market_clients[wire].analyze_market(query) == await market_clients["domain"].analyze_market(query)


@pytest.mark.slow
async def test_100k_m1_bars_on_both_transports(market_clients):
    query = CandlesQuery("EURUSD", Timeframe.M1, limit=100_000)
    results = {}
    for wire in ("domain", *WIRES):
        start = time.perf_counter()
        page = await market_clients[wire].get_candles(query)
        results[wire] = (page, time.perf_counter() - start)
    assert len(results["domain"][0].series) == 100_000
    for wire in WIRES:
        assert results[wire][0].series == results["domain"][0].series
        assert results[wire][0].next_page_token
    print("\n100k M1 bars into domain types: "
          + ", ".join(f"{w} {results[w][1] * 1000:.0f} ms" for w in WIRES))
