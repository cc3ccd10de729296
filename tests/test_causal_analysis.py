"""Causal Analysis: the statistics against independent references; the domain over a fake and over the real market."""
from __future__ import annotations

import warnings
from datetime import datetime, timezone

import numpy as np
import pytest
from scipy import stats
from statsmodels.tsa.stattools import grangercausalitytests

from services.causal_analysis import analysis
from services.causal_analysis.domain import CausalAnalysisDomain
from services.causal_analysis.models import (
    MAX_GRANGER_BARS,
    CausalAnalysis,
    CorrelationRequest,
    GrangerRequest,
    LeadLagRequest,
    RollingCorrelationRequest,
    SymbolPair,
)
from services.common.errors import InvalidArgument, NotFound
from services.common.market_types import CandleSeries, TimeRange, Timeframe, from_unix
from services.market_analysis.models import CandlePage, CandlesQuery, MarketAnalysis

T0 = int(datetime(2025, 1, 1, tzinfo=timezone.utc).timestamp())
HOUR = 3600


def lagged_pair(n: int, lag: int, beta: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(leader, follower): independent normal returns, and returns with beta * leader[t - lag] added."""
    rng = np.random.default_rng(seed)
    leader, follower = rng.standard_normal(n), rng.standard_normal(n)
    follower[lag:] += beta * leader[:-lag]
    return leader, follower


# --- pure functions --------------------------------------------------------------------------------------------------


def test_granger_f_tests_equal_statsmodels_ssr_ftest():
    cause, effect = lagged_pair(1500, 2, 0.2, seed=1)
    f, p = analysis.granger_f_tests(cause * 1e-4 + 0.3, effect * 2e-3, max_lag=6)  # affine changes must not matter
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = grangercausalitytests(np.column_stack([effect, cause]), maxlag=6)
    np.testing.assert_allclose(f, [reference[k][0]["ssr_ftest"][0] for k in range(1, 7)], rtol=1e-9)
    np.testing.assert_allclose(p, [reference[k][0]["ssr_ftest"][1] for k in range(1, 7)], rtol=1e-9)


def test_granger_finds_the_link_in_its_direction_at_its_lag():
    leader, follower = lagged_pair(2000, 2, 0.2, seed=2)
    _, forward = analysis.granger_f_tests(leader, follower, max_lag=5)
    _, backward = analysis.granger_f_tests(follower, leader, max_lag=5)
    assert np.argmin(forward) + 1 == 2 and forward[1] < 1e-10
    assert forward[0] > 0.01  # lag 1 cannot see a lag-2 link
    assert backward.min() > 0.01


def test_granger_finds_no_link_between_independent_series():
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal((2, 2000))
    for cause, effect in ((a, b), (b, a)):
        _, p = analysis.granger_f_tests(cause, effect, max_lag=5)
        assert p.min() > 0.01


def test_granger_of_a_series_on_a_copy_of_itself_finds_nothing_rather_than_failing():
    # Two symbols with the same bars (an import under two names): the cause's lags repeat the effect's, the Gram matrix
    # is singular, and the test must still answer (no gain from the copy: F 0, p 1), not raise or return NaN.
    series = np.random.default_rng(4).standard_normal(1500)
    for cause in (series, series * 3.0 + 1.0):
        f, p = analysis.granger_f_tests(cause, series, max_lag=5)
        np.testing.assert_allclose(f, 0.0, atol=1e-6)
        np.testing.assert_allclose(p, 1.0, atol=1e-6)


def test_benjamini_hochberg_against_a_hand_computed_example():
    # Sorted: 0.001 (x5/1 = 0.005), 0.03 (x5/2 = 0.075), 0.035 (x5/3 = 0.0583), 0.04 (x5/4 = 0.05), 0.2 (x5/5 = 0.2);
    # taking the running minimum from the largest down lowers 0.075 and 0.0583 to 0.05.
    p = np.array([0.04, 0.001, 0.03, 0.2, 0.035])
    np.testing.assert_allclose(analysis.benjamini_hochberg(p), [0.05, 0.005, 0.05, 0.2, 0.05])
    np.testing.assert_allclose(analysis.benjamini_hochberg(np.array([[0.5], [0.9]])), [[0.9], [0.9]])  # capped, shaped
    np.testing.assert_allclose(analysis.benjamini_hochberg(np.array([0.7, 0.3])), [0.7, 0.6])


def test_correlation_matrices_equal_scipy():
    rng = np.random.default_rng(4)
    returns = rng.standard_normal((500, 3)) @ np.array([[1.0, 0.5, 0.0], [0.0, 1.0, -0.7], [0.0, 0.0, 1.0]])
    pearson, spearman = analysis.pearson_matrix(returns), analysis.spearman_matrix(returns)
    for i in range(3):
        for j in range(3):
            assert pearson[i, j] == pytest.approx(stats.pearsonr(returns[:, i], returns[:, j]).statistic, abs=1e-12)
            assert spearman[i, j] == pytest.approx(stats.spearmanr(returns[:, i], returns[:, j]).statistic, abs=1e-12)


def test_rolling_correlation_equals_numpy_on_each_window():
    a, b = lagged_pair(300, 1, 0.5, seed=5)
    b = b + 0.5 * a
    rolling = analysis.rolling_correlation(a, b, window=20)
    assert np.isnan(rolling[:19]).all() and not np.isnan(rolling[19:]).any()
    for end in (19, 150, 299):
        expected = np.corrcoef(a[end - 19:end + 1], b[end - 19:end + 1])[0, 1]
        assert rolling[end] == pytest.approx(expected, abs=1e-12)


def test_cross_correlation_equals_numpy_and_finds_lead_and_sign():
    leader, follower = lagged_pair(3000, 3, -0.5, seed=6)
    lags, ccf = analysis.cross_correlation(leader, follower, max_lag=5)
    assert lags.tolist() == list(range(-5, 6))
    assert ccf[lags == 3][0] == pytest.approx(np.corrcoef(leader[:-3], follower[3:])[0, 1], abs=1e-12)
    assert ccf[lags == -2][0] == pytest.approx(np.corrcoef(leader[2:], follower[:-2])[0, 1], abs=1e-12)
    assert analysis.strongest_lead(lags, ccf) == 3 and ccf[lags == 3][0] < -0.3
    _, swapped = analysis.cross_correlation(follower, leader, max_lag=5)
    assert analysis.strongest_lead(lags, swapped) == -3


def test_align_is_an_inner_join_on_time():
    time, matrix = analysis.align(
        [np.array([1, 2, 3, 5]), np.array([2, 3, 4, 5])], [np.array([10.0, 20, 30, 50]), np.array([2.0, 3, 4, 5])]
    )
    assert time.tolist() == [2, 3, 5]
    assert matrix.tolist() == [[20, 2], [30, 3], [50, 5]]


# --- the domain over a fake market -----------------------------------------------------------------------------------


class FakeMarket:
    """A MarketAnalysis serving fixed hourly close series, in pages of at most `page_size` bars."""

    def __init__(self, closes: dict[str, tuple[np.ndarray, np.ndarray]], page_size: int = 700) -> None:
        self.closes = closes
        self.page_size = page_size
        self.calls = 0
        self.unknown_symbol = NotFound("unknown symbol", field="symbol")

    async def get_candles(self, query: CandlesQuery) -> CandlePage:
        self.calls += 1
        if query.symbol not in self.closes:
            raise self.unknown_symbol
        time, close = self.closes[query.symbol]
        start = 0 if query.range.start is None else np.searchsorted(time, query.range.start.timestamp())
        stop = len(time) if query.range.end is None else np.searchsorted(time, query.range.end.timestamp())
        start = max(start, int(query.page_token or 0))
        end = min(stop, start + min(query.limit, self.page_size))
        series = CandleSeries(query.symbol, query.timeframe, time[start:end], *[close[start:end]] * 4,
                              np.ones(end - start))
        return CandlePage(series, str(end) if end < stop else "")

    async def list_symbols(self):
        raise NotImplementedError

    async def compute_indicators(self, request):
        raise NotImplementedError

    async def analyze_market(self, query):
        raise NotImplementedError


def fake_market(n: int = 3000, page_size: int = 700) -> FakeMarket:
    """EURUSD leads GBPUSD by one bar; USDJPY is independent and misses every 10th bar."""
    eur, gbp = lagged_pair(n, 1, 0.3, seed=7)
    jpy = np.random.default_rng(8).standard_normal(n)
    time = T0 + HOUR * np.arange(n, dtype=np.int64)
    closes = {s: (time, np.exp(np.cumsum(r * 1e-3))) for s, r in (("EURUSD", eur), ("GBPUSD", gbp), ("USDJPY", jpy))}
    kept = np.arange(n) % 10 != 0
    closes["USDJPY"] = (time[kept], closes["USDJPY"][1][kept])
    return FakeMarket(closes, page_size)


@pytest.fixture
def market() -> FakeMarket:
    return fake_market()


def test_the_fakes_implement_the_interfaces(market):
    assert isinstance(market, MarketAnalysis)
    assert isinstance(CausalAnalysisDomain(market), CausalAnalysis)


async def test_granger_verdicts_directions_and_correction(market):
    result = await CausalAnalysisDomain(market).granger_causality(GrangerRequest(
        (SymbolPair("EURUSD", "GBPUSD"), SymbolPair("usdjpy", "EURUSD")), max_lag=4, alpha=0.01))
    verdicts = {(t.cause, t.effect): (t.significant, t.best_lag) for t in result.tests}
    assert list(verdicts) == [("EURUSD", "GBPUSD"), ("GBPUSD", "EURUSD"), ("USDJPY", "EURUSD"), ("EURUSD", "USDJPY")]
    assert verdicts[("EURUSD", "GBPUSD")] == (True, 1)
    assert not any(significant for significant, _ in list(verdicts.values())[1:])
    adjusted = analysis.benjamini_hochberg(np.array([t.p_values for t in result.tests]))
    np.testing.assert_allclose([t.adjusted_p_values for t in result.tests], adjusted)
    first = result.tests[0]
    assert first.p_value == first.p_values[0] and first.adjusted_p_value == first.adjusted_p_values[0]
    assert result.tests[0].observations == 2999 and result.tests[2].observations == 2699  # USDJPY misses 300 bars
    assert market.calls > 3  # every page was fetched


async def test_granger_uses_the_most_recent_bars_only():
    market = fake_market(n=MAX_GRANGER_BARS + 500, page_size=200_000)
    result = await CausalAnalysisDomain(market).granger_causality(GrangerRequest((SymbolPair("EURUSD", "GBPUSD"),)))
    last_open = T0 + HOUR * (MAX_GRANGER_BARS + 499)
    assert result.tests[0].observations == MAX_GRANGER_BARS - 1
    assert result.tests[0].range == TimeRange(from_unix(last_open - HOUR * (MAX_GRANGER_BARS - 1)),
                                              from_unix(last_open + HOUR))


async def test_correlation_matrix_on_aligned_returns(market):
    result = await CausalAnalysisDomain(market).correlation_matrix(CorrelationRequest(("EURUSD", "GBPUSD", "USDJPY")))
    time, closes = analysis.align(*zip(*(market.closes[s] for s in result.symbols)))
    returns = analysis.log_returns(closes)
    assert result.observations == len(returns) == 2699
    np.testing.assert_allclose(result.pearson, np.corrcoef(returns, rowvar=False), atol=1e-12)
    np.testing.assert_allclose(result.spearman, stats.spearmanr(returns).statistic, atol=1e-12)
    assert result.range == TimeRange(from_unix(time[0]), from_unix(time[-1] + HOUR))


async def test_rolling_correlation_columns(market):
    result = await CausalAnalysisDomain(market).rolling_correlation(
        RollingCorrelationRequest(SymbolPair("EURUSD", "GBPUSD"), window=50))
    assert np.array_equal(result.time, market.closes["EURUSD"][0][1:])
    assert np.isnan(result.correlation[:49]).all() and not np.isnan(result.correlation[49:]).any()


async def test_lead_lag_names_the_leader(market):
    result = await CausalAnalysisDomain(market).lead_lag(LeadLagRequest(SymbolPair("GBPUSD", "EURUSD"), max_lag=5))
    assert (result.leader, result.follower, result.lag) == ("EURUSD", "GBPUSD", 1)
    assert result.correlation == result.cross_correlation[result.lags == -1][0] > result.noise_bound
    assert result.lags.tolist() == list(range(-5, 6))


PAIR = SymbolPair("EURUSD", "GBPUSD")
BAD_REQUESTS = [
    ("max_lag -1", lambda c: c.granger_causality(GrangerRequest((PAIR,), max_lag=-1)), "max_lag"),
    ("max_lag 51", lambda c: c.granger_causality(GrangerRequest((PAIR,), max_lag=51)), "max_lag"),
    ("alpha 1", lambda c: c.granger_causality(GrangerRequest((PAIR,), alpha=1.0)), "alpha"),
    ("no pairs", lambda c: c.granger_causality(GrangerRequest(())), "pairs"),
    ("21 pairs", lambda c: c.granger_causality(GrangerRequest(
        tuple(SymbolPair(f"A{i:02d}XXX", "EURUSD") for i in range(21)))), "pairs"),
    ("same symbol twice", lambda c: c.granger_causality(GrangerRequest((PAIR, SymbolPair("GBPUSD", "gbpusd")))),
     "pairs[1]"),
    ("duplicate pair", lambda c: c.granger_causality(GrangerRequest((PAIR, SymbolPair("GBPUSD", "EURUSD")))),
     "pairs[1]"),
    ("empty symbol", lambda c: c.granger_causality(GrangerRequest((SymbolPair("EURUSD", " "),))), "pairs[0].second"),
    ("too few bars for max_lag", lambda c: c.granger_causality(GrangerRequest(
        (PAIR,), range=TimeRange(from_unix(T0), from_unix(T0 + 100 * HOUR)), max_lag=30)), "range"),
    ("one symbol", lambda c: c.correlation_matrix(CorrelationRequest(("EURUSD",))), "symbols"),
    ("symbol twice", lambda c: c.correlation_matrix(CorrelationRequest(("EURUSD", "GBPUSD", "EURUSD"))), "symbols[2]"),
    ("too few bars", lambda c: c.correlation_matrix(CorrelationRequest(
        ("EURUSD", "GBPUSD"), range=TimeRange(from_unix(T0), from_unix(T0 + 29 * HOUR)))), "range"),
    ("window 4", lambda c: c.rolling_correlation(RollingCorrelationRequest(PAIR, window=4)), "window"),
    ("pair of one", lambda c: c.lead_lag(LeadLagRequest(SymbolPair("EURUSD", "EURUSD"))), "pair"),
]


@pytest.mark.parametrize("call, field", [c[1:] for c in BAD_REQUESTS], ids=[c[0] for c in BAD_REQUESTS])
async def test_bad_requests_name_the_field(market, call, field):
    with pytest.raises(InvalidArgument) as raised:
        await call(CausalAnalysisDomain(market))
    assert raised.value.field == field


async def test_market_errors_propagate_unchanged(market):
    with pytest.raises(NotFound) as raised:
        await CausalAnalysisDomain(market).lead_lag(LeadLagRequest(SymbolPair("EURUSD", "XXXYYY")))
    assert raised.value is market.unknown_symbol


# --- the real synthetic market ---------------------------------------------------------------------------------------


async def test_finds_the_synthetic_link_and_no_other():
    from services.market_analysis.domain import MarketAnalysisDomain

    result = await CausalAnalysisDomain(MarketAnalysisDomain()).granger_causality(GrangerRequest(
        (SymbolPair("EURUSD", "GBPUSD"), SymbolPair("EURUSD", "USDJPY")), Timeframe.H1, alpha=0.01))
    verdicts = {(t.cause, t.effect): t.significant for t in result.tests}
    assert verdicts == {("EURUSD", "GBPUSD"): True, ("GBPUSD", "EURUSD"): False,
                        ("EURUSD", "USDJPY"): False, ("USDJPY", "EURUSD"): False}
    assert result.tests[0].best_lag == 1
