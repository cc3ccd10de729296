"""MarketAnalysisDomain over the synthetic market: paging, validation, indicators and summaries."""
from __future__ import annotations

import base64
import time
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from services.common.errors import InvalidArgument, NotFound
from services.common.market_types import CandleSeries, TimeRange, Timeframe, to_unix
from services.market_analysis import synthetic
from services.market_analysis.domain import MarketAnalysisDomain
from services.market_analysis.summary import summarize
from services.market_analysis.models import (
    MAX_CANDLES_PER_PAGE,
    CandlesQuery,
    IndicatorRequest,
    IndicatorSpec,
    MarketAnalysis,
    Regime,
    SummaryQuery,
    TrendDirection,
)

JAN = datetime(2025, 1, 1, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def domain() -> MarketAnalysisDomain:
    return MarketAnalysisDomain()


def test_implements_the_protocol(domain):
    assert isinstance(domain, MarketAnalysis)


async def test_warm_and_list_symbols(domain):
    await domain.warm()
    symbols = await domain.list_symbols()
    names = [s.symbol for s in symbols]
    assert names == sorted(names) and set(synthetic.SYMBOLS) <= set(names)
    jpy = next(s for s in symbols if s.symbol == "USDJPY")
    assert (jpy.base, jpy.quote, jpy.pip_size, jpy.digits, jpy.source) == ("USD", "JPY", 0.01, 3, "synthetic")
    assert jpy.first_time == JAN and jpy.last_time == datetime(2025, 12, 31, 23, 59, tzinfo=timezone.utc)


# --- candles and paging ---------------------------------------------------------------------------------------------


async def test_paging_returns_every_bar_exactly_once(domain):
    rng = TimeRange(JAN + timedelta(days=2), JAN + timedelta(days=9, hours=5))
    expected = domain.candles("GBPUSD", Timeframe.M5, rng)
    pages, token, limit = [], "", 97
    while True:
        page = await domain.get_candles(CandlesQuery("GBPUSD", Timeframe.M5, rng, limit=limit, page_token=token))
        pages.append(page.series)
        token = page.next_page_token
        if not token:
            break
        assert len(page.series) == limit
        limit = 211 if limit == 97 else 97  # the limit may change between pages
    times = np.concatenate([p.time for p in pages])
    assert np.array_equal(times, expected.time)
    assert np.array_equal(np.concatenate([p.close for p in pages]), expected.close)
    assert times[0] >= to_unix(rng.start) and times[-1] < to_unix(rng.end)


async def test_default_range_is_whole_history_and_exact_fit_has_no_token(domain):
    page = await domain.get_candles(CandlesQuery("EURUSD", Timeframe.D1, limit=MAX_CANDLES_PER_PAGE))
    assert page.series.time[0] == to_unix(JAN) and page.next_page_token == ""
    n = len(page.series)
    exact = await domain.get_candles(CandlesQuery("EURUSD", Timeframe.D1, limit=n))
    assert exact.next_page_token == ""
    short = await domain.get_candles(CandlesQuery("EURUSD", Timeframe.D1, limit=n - 1))
    assert short.next_page_token != ""
    assert set(short.next_page_token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


async def test_range_outside_the_data_is_an_empty_page(domain):
    rng = TimeRange(datetime(2030, 1, 1), datetime(2030, 2, 1))
    page = await domain.get_candles(CandlesQuery("EURUSD", Timeframe.H1, rng))
    assert len(page.series) == 0 and page.next_page_token == ""
    weekend = TimeRange(datetime(2025, 1, 4, 12), datetime(2025, 1, 5, 12))  # Saturday noon to Sunday noon
    assert len((await domain.get_candles(CandlesQuery("EURUSD", Timeframe.M1, weekend))).series) == 0


async def test_hundred_thousand_bar_m1_page(domain):
    started = time.perf_counter()
    page = await domain.get_candles(CandlesQuery("EURUSD", Timeframe.M1, limit=100_000))
    elapsed = time.perf_counter() - started
    s = page.series
    assert len(s) == 100_000 and page.next_page_token
    assert s.time.dtype == np.int64 and s.close.dtype == np.float64
    assert all(getattr(s, c).flags.c_contiguous for c in s.COLUMNS)
    assert elapsed < 0.5
    rest = await domain.get_candles(CandlesQuery("EURUSD", Timeframe.M1, limit=5, page_token=page.next_page_token))
    assert rest.series.time[0] == synthetic.m1("EURUSD").time[100_000]


@pytest.mark.parametrize("token", ["!!!", "abc", base64.urlsafe_b64encode(b"1:123:zz").decode().rstrip("="), "A" * 300])
async def test_malformed_page_token(domain, token):
    with pytest.raises(InvalidArgument) as e:
        await domain.get_candles(CandlesQuery("EURUSD", Timeframe.H1, limit=10, page_token=token))
    assert e.value.field == "page_token"


async def test_page_token_from_another_query(domain):
    first = await domain.get_candles(CandlesQuery("EURUSD", Timeframe.H1, limit=10))
    for other in (
        CandlesQuery("GBPUSD", Timeframe.H1, limit=10, page_token=first.next_page_token),
        CandlesQuery("EURUSD", Timeframe.M5, limit=10, page_token=first.next_page_token),
        CandlesQuery("EURUSD", Timeframe.H1, TimeRange(JAN), limit=10, page_token=first.next_page_token),
    ):
        with pytest.raises(InvalidArgument) as e:
            await domain.get_candles(other)
        assert e.value.field == "page_token"


@pytest.mark.parametrize("limit", [0, -1, MAX_CANDLES_PER_PAGE + 1])
async def test_limit_bounds(domain, limit):
    with pytest.raises(InvalidArgument) as e:
        await domain.get_candles(CandlesQuery("EURUSD", Timeframe.H1, limit=limit))
    assert e.value.field == "limit"


async def test_limit_upper_bound_is_allowed(domain):
    page = await domain.get_candles(CandlesQuery("EURUSD", Timeframe.M1, limit=MAX_CANDLES_PER_PAGE))
    assert len(page.series) == MAX_CANDLES_PER_PAGE


async def test_unknown_symbol_is_not_found(domain):
    with pytest.raises(NotFound) as e:
        await domain.get_candles(CandlesQuery("FOOBAR", Timeframe.H1))
    assert e.value.field == "symbol" and "FOOBAR" in e.value.message and "ListSymbols" in e.value.message
    with pytest.raises(InvalidArgument) as e:
        await domain.get_candles(CandlesQuery(" ", Timeframe.H1))
    assert e.value.field == "symbol"


async def test_symbol_is_case_insensitive_and_timeframe_may_be_text(domain):
    page = await domain.get_candles(CandlesQuery("eurusd", "h4", limit=3))  # type: ignore[arg-type]
    assert page.series.symbol == "EURUSD" and page.series.timeframe is Timeframe.H4


# --- indicators -----------------------------------------------------------------------------------------------------


async def test_compute_indicators_in_request_order(domain):
    rng = TimeRange(JAN + timedelta(days=30), JAN + timedelta(days=60))
    specs = (IndicatorSpec("rsi"), IndicatorSpec("SMA", {"period": 5}), IndicatorSpec("macd"), IndicatorSpec("atr"))
    result = await domain.compute_indicators(IndicatorRequest("EURUSD", Timeframe.H1, rng, specs))
    bars = domain.candles("EURUSD", Timeframe.H1, rng)
    assert np.array_equal(result.time, bars.time) and result.time.dtype == np.int64
    assert [o.name for o in result.outputs] == ["rsi", "sma", "macd", "atr"]
    sma = result.outputs[1].lines["value"]
    assert sma[4] == pytest.approx(bars.close[:5].mean(), rel=1e-12)
    for out in result.outputs:
        for line in out.lines.values():
            assert len(line) == len(bars) and line.dtype == np.float64 and line.flags.c_contiguous


@pytest.mark.parametrize(
    ("specs", "field"),
    [
        ((), "indicators"),
        (tuple(IndicatorSpec("sma") for _ in range(21)), "indicators"),
        ((IndicatorSpec("sma"), IndicatorSpec("ema", {"period": 0})), "indicators[1].params.period"),
        ((IndicatorSpec("sma"), IndicatorSpec("rsi"), IndicatorSpec("foo")), "indicators[2].name"),
        ((IndicatorSpec("bollinger", {"sigma": 2}),), "indicators[0].params.sigma"),
    ],
)
async def test_indicator_request_validation(domain, specs, field):
    with pytest.raises(InvalidArgument) as e:
        await domain.compute_indicators(IndicatorRequest("EURUSD", Timeframe.H1, indicators=specs))
    assert e.value.field == field


async def test_indicator_range_too_large(domain):
    with pytest.raises(InvalidArgument) as e:  # the whole year of M1 is ~376k bars
        await domain.compute_indicators(IndicatorRequest("EURUSD", Timeframe.M1, indicators=(IndicatorSpec("sma"),)))
    assert e.value.field == "range" and "narrow the range" in e.value.message


async def test_indicators_on_unknown_symbol(domain):
    with pytest.raises(NotFound):
        await domain.compute_indicators(IndicatorRequest("ZZZZZZ", indicators=(IndicatorSpec("sma"),)))


# --- market summary -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("symbol", ["EURUSD", "USDJPY", "EURGBP"])
@pytest.mark.parametrize("tf", [Timeframe.M15, Timeframe.H1, Timeframe.D1])
async def test_analyze_market_default_window(domain, symbol, tf):
    s = await domain.analyze_market(SummaryQuery(symbol, tf))
    bars = synthetic.candles(symbol, tf)
    assert s.bars == min(500, len(bars))
    assert s.as_of.timestamp() == bars.time[-1] and s.last_price == bars.close[-1]
    assert s.change_pct == pytest.approx((bars.close[-1] / bars.close[-s.bars] - 1) * 100)
    assert 0 <= s.trend_strength <= 1 and isinstance(s.trend, TrendDirection) and isinstance(s.regime, Regime)
    assert 0 < s.atr < 0.05 * s.last_price
    assert 0.02 < s.realized_volatility < 0.2
    assert all(level < s.last_price for level in s.support) and all(level > s.last_price for level in s.resistance)
    assert list(s.support) == sorted(s.support, reverse=True) and list(s.resistance) == sorted(s.resistance)
    assert len(s.support) <= 3 and len(s.resistance) <= 3 and (s.support or s.resistance)


async def test_analyze_market_range_and_too_few_bars(domain):
    rng = TimeRange(JAN + timedelta(days=7), JAN + timedelta(days=14))
    s = await domain.analyze_market(SummaryQuery("GBPUSD", Timeframe.H1, rng))
    assert s.bars == len(domain.candles("GBPUSD", Timeframe.H1, rng))
    with pytest.raises(InvalidArgument) as e:
        await domain.analyze_market(SummaryQuery("GBPUSD", Timeframe.D1, rng))
    assert e.value.field == "range" and "30" in e.value.message


def bars_from_close(close: np.ndarray) -> CandleSeries:
    close = np.asarray(close, dtype=np.float64)
    open_ = np.r_[close[0], close[:-1]]
    n = len(close)
    return CandleSeries(
        "TEST", Timeframe.H1, np.arange(n, dtype=np.int64) * 3600, open_, np.maximum(open_, close) * 1.0001,
        np.minimum(open_, close) * 0.9999, close, np.ones(n),
    )


def test_summary_labels_follow_the_definitions():
    up = summarize(bars_from_close(1.1 * np.exp(np.linspace(0, 0.05, 200))))
    assert (up.trend, up.regime) == (TrendDirection.UP, Regime.TRENDING) and up.trend_strength > 0.99
    down = summarize(bars_from_close(1.1 * np.exp(np.linspace(0, -0.05, 200))))
    assert down.trend is TrendDirection.DOWN and down.change_pct < 0
    wiggle = 1.1 + 0.002 * np.sin(np.arange(200) * 0.7)
    flat = summarize(bars_from_close(wiggle))
    assert (flat.trend, flat.regime) == (TrendDirection.SIDEWAYS, Regime.RANGING)
    loud = wiggle.copy()
    loud[-40:] = 1.1 + 0.006 * np.sin(np.arange(40) * 0.7)
    assert summarize(bars_from_close(loud)).regime is Regime.VOLATILE
    calm = wiggle.copy()
    calm[-40:] = 1.1 + 0.0005 * np.sin(np.arange(40) * 0.7)
    assert summarize(bars_from_close(calm)).regime is Regime.QUIET
    # the oscillation's turning points cluster into one level on each side of the last price
    assert len(flat.support) >= 1 and len(flat.resistance) >= 1
    assert flat.support[0] < flat.last_price < flat.resistance[0]
