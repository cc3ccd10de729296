"""The backtest engine, strategies and metrics on small hand-made series whose results are worked out by hand in the
comments, plus checks against independent (loop and textbook) implementations."""
from __future__ import annotations

import math
import statistics
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from services.backtesting import engine, strategies
from services.backtesting.engine import Costs
from services.backtesting.metrics import compute_metrics
from services.backtesting.models import Side
from services.common import indicators
from services.common.errors import InvalidArgument
from services.common.market_types import CandleSeries, Timeframe

T0 = datetime(2025, 3, 3, tzinfo=timezone.utc)
HOUR = timedelta(hours=1)


def series(open_: list[float], close: list[float]) -> CandleSeries:
    n = len(close)
    time = np.arange(n, dtype=np.int64) * 3600 + int(T0.timestamp())
    o, c = np.array(open_, dtype=float), np.array(close, dtype=float)
    return CandleSeries("TEST", Timeframe.H1, time, o, np.maximum(o, c), np.minimum(o, c), c, np.ones(n))


# sma_cross(fast=2, slow=3) on 12 bars.
#   bar      0   1   2     3   4     5     6     7     8     9    10    11
#   open    10  10  10     9   8     9    10    12    11    11     8     9
#   close   10  10   9     8   9    11    12    11     9     8     9    10
#   SMA2     -  10  9.5  8.5  8.5   10  11.5  11.5    10   8.5   8.5   9.5
#   SMA3     -   -  9.67   9  8.67  9.33 10.67 11.33 10.67 9.33  8.67    9
#   fast-slow        <0   <0   <0    >0    >0    >0    <0    <0    <0    >0
# Below from the first defined bar (2): no position until the first cross.
# Cross up on bar 5's close  -> long  filled at bar 6's open (10), not at bar 5's close (11).
# Cross down on bar 8's close -> reverse: exit the long and go short at bar 9's open (11).
# Cross up on bar 11's close  -> never filled (no next bar); the short is closed at bar 11's close (10).
SMA_OPEN = [10, 10, 10, 9, 8, 9, 10, 12, 11, 11, 8, 9]
SMA_CLOSE = [10, 10, 9, 8, 9, 11, 12, 11, 9, 8, 9, 10]
SMA_PARAMS = {"fast": 2.0, "slow": 3.0}


def run_sma(costs: Costs = Costs()) -> engine.BacktestOutcome:
    return engine.run(series(SMA_OPEN, SMA_CLOSE), "sma_cross", SMA_PARAMS, costs, 1000.0)


def test_sma_cross_fills_next_open_reverses_on_each_cross_and_closes_at_the_end():
    out = run_sma()
    long, short = out.trades
    # Long: units = 1000 / 10 = 100; exit at 11: pnl = 100 * (11 - 10) = 100; equity 1100.
    assert (long.side, long.entry_time, long.entry_price) == (Side.LONG, T0 + 6 * HOUR, 10)
    assert (long.exit_time, long.exit_price) == (T0 + 9 * HOUR, 11)
    assert long.units == pytest.approx(100)
    assert long.pnl == pytest.approx(100)
    assert long.trade_return == pytest.approx(0.1)
    # Short: units = 1100 / 11 = 100; closed at the last close 10 at 11:00 + 1h: pnl = 100 * (11 - 10) = 100.
    assert (short.side, short.entry_time, short.entry_price) == (Side.SHORT, T0 + 9 * HOUR, 11)
    assert (short.exit_time, short.exit_price) == (T0 + 12 * HOUR, 10)
    assert short.units == pytest.approx(100)
    assert short.pnl == pytest.approx(100)
    assert short.trade_return == pytest.approx(100 / 1100)
    # Equity at each close: flat 1000 until bar 6; long 100 units from 10: bar 6 1000 + 100*2 = 1200, bar 7 1100,
    # bar 8 900; bar 9: realised 1100, short 100 from 11, close 8: 1100 + 100*3 = 1400; bar 10 1300;
    # bar 11: closed at 10 -> 1200.
    assert out.equity_curve.equity == pytest.approx([1000] * 6 + [1200, 1100, 900, 1400, 1300, 1200])
    assert np.array_equal(out.equity_curve.time, series(SMA_OPEN, SMA_CLOSE).time)
    assert out.metrics.final_equity == pytest.approx(1200)
    assert out.metrics.trade_count == 2
    assert out.metrics.exposure == pytest.approx(6 / 12)  # bars 6..11 are held


def test_spread_fills_half_a_spread_worse_on_each_side_with_fractional_units():
    out = run_sma(Costs(half_spread=0.5))
    long, short = out.trades
    # Long buys at 10 + 0.5 = 10.5: units = 1000 / 10.5 = 95.238...; sells at 11 - 0.5 = 10.5: pnl 0.
    assert (long.entry_price, long.exit_price) == (10.5, 10.5)
    assert long.units == pytest.approx(95.23809523809524)
    assert long.pnl == pytest.approx(0, abs=1e-9)
    # Short sells at 11 - 0.5 = 10.5, buys back at the last close 10 + 0.5 = 10.5: pnl 0. The spread ate it all.
    assert (short.entry_price, short.exit_price) == (10.5, 10.5)
    assert short.units == pytest.approx(1000 / 10.5)
    assert out.metrics.final_equity == pytest.approx(1000)


def test_commission_per_unit_is_paid_on_entry_and_exit():
    out = run_sma(Costs(commission_per_unit=0.1))
    long, short = out.trades
    # Long: 100 units; commissions 100 * 0.1 twice = 20; pnl = 100 * 1 - 20 = 80; equity 1080.
    assert long.pnl == pytest.approx(80)
    # Short: units = 1080 / 11 = 98.1818...; pnl = 98.1818 * (11 - 10) - 2 * 98.1818 * 0.1 = 98.1818 * 0.8 = 78.545...
    assert short.units == pytest.approx(1080 / 11)
    assert short.pnl == pytest.approx(1080 / 11 * 0.8)
    assert out.metrics.final_equity == pytest.approx(1080 * 11.8 / 11)  # 1158.5454...
    # Mid-trade marks carry the entry commission: bar 6 = 1000 - 10 + 100 * (12 - 10) = 1190.
    assert out.equity_curve.equity[6] == pytest.approx(1190)


def test_commission_rate_is_a_share_of_each_fills_notional():
    out = run_sma(Costs(commission_rate=0.01))
    long, short = out.trades
    # Long: entry notional 1000 -> 10; exit notional 100 * 11 = 1100 -> 11; pnl = 100 - 21 = 79; equity 1079.
    assert long.pnl == pytest.approx(79)
    # Short: units = 1079 / 11; entry fee 1% of 1079 = 10.79; exit fee 1% of (1079 / 11) * 10 = 9.809...;
    # equity = 1079 * (1 + 1/11 - 1/100 - 1/110) = 1079 * 1179 / 1100 = 1156.4918...
    assert short.pnl == pytest.approx(1079 / 11 - 10.79 - 1079 / 11 * 10 * 0.01)
    assert out.metrics.final_equity == pytest.approx(1079 * 1179 / 1100)


def test_sma_cross_waits_for_a_cross():
    # Rising prices: fast is above slow from the first defined bar, which is not a cross: no trade at all.
    closes = [1, 2, 3, 4, 5, 6, 7, 8]
    out = engine.run(series(closes, closes), "sma_cross", SMA_PARAMS, Costs(), 1000.0)
    assert out.trades == ()
    assert out.metrics.final_equity == 1000
    assert out.metrics.exposure == 0
    assert (out.metrics.win_rate, out.metrics.profit_factor, out.metrics.sharpe_ratio) == (None, None, None)


def test_a_lost_short_cannot_take_equity_below_zero():
    # Short from bar 1's open (1.0), covered at bar 2's open (2.5): growth 1 - 1.5 < 0, floored to 0 (margin call).
    s = series([1, 1, 2.5, 3], [1, 2, 3, 3])
    sim = engine.simulate(s.open, s.close, np.array([-1, 0, 0, 0], dtype=np.int8), Costs(), 100.0)
    assert sim.pnl.tolist() == [-100.0]
    assert sim.equity.tolist() == [100.0, 0.0, 0.0, 0.0]  # bar 1 marked at close 2: 100 - 100 * (2 - 1) = 0


# RSI(2), Wilder. closes and changes:
#   bar     0   1   2   3   4   5   6    7     8     9    10    11
#   close  10  11  12  11   9   8   9  9.5  10.5  11.5  10.5   8.5
#   change     +1  +1  -1  -2  -1  +1 +0.5   +1    +1    -1    -2
# bar 2: gain (1+1)/2 = 1, loss 0                 -> RSI 100       > 70: short
# bar 3: gain (1+0)/2 = 0.5, loss (0+1)/2 = 0.5   -> 50            not < 50: hold short
# bar 4: gain 0.25, loss (0.5+2)/2 = 1.25         -> 25/1.5 = 16.7 < 30: long
# bar 5: gain 0.125, loss 1.125                   -> 10            hold long
# bar 6: gain 0.5625, loss 0.5625                 -> 50            not > 50: hold long
# bar 7: gain 0.53125, loss 0.28125               -> 65.4          > 50: flat (not > 70)
# bar 8: gain 0.765625, loss 0.140625             -> 84.5          short
# bar 9: gain 0.8828125, loss 0.0703125           -> 92.6          hold short
# bar 10: gain 0.44140625, loss 0.53515625        -> 45.2          < 50: flat (not < 30)
# bar 11: gain 0.220703125, loss 1.267578125      -> 14.8          long
RSI_CLOSE = np.array([10, 11, 12, 11, 9, 8, 9, 9.5, 10.5, 11.5, 10.5, 8.5])


def test_rsi_is_wilder_smoothed():
    r = indicators.rsi(RSI_CLOSE, 2)
    assert np.isnan(r[:2]).all()
    expected = [100, 50, 100 * 0.25 / 1.5, 10, 50, 100 * 0.53125 / 0.8125, 100 * 0.765625 / 0.90625]
    assert r[2:9] == pytest.approx(expected)


def test_rsi_reversion_targets():
    t = strategies.targets("rsi_reversion", RSI_CLOSE, {"period": 2, "lower": 30, "upper": 70})
    assert t.tolist() == [0, 0, -1, -1, 1, 1, 1, 0, -1, -1, 0, 1]


# bollinger_breakout(period=3, k=1), population std:
#   bar 2: [10,10,10] mean 10, std 0: close 10 is not above the upper band (10)       -> flat
#   bar 3: [10,10,13] mean 11, std sqrt(2) = 1.414: 13 > 12.414                         -> long
#   bar 4: [10,13,14] mean 12.33: 14 is not below the middle                            -> hold long
#   bar 5: [13,14,13] mean 13.33, std 0.471: 13 < middle (exit), 13 > lower 12.86         -> flat
#   bar 6: [14,13,10] mean 12.33, std 1.700: 10 < lower 10.63                            -> short
#   bar 7: [13,10,11] mean 11.33: 11 is not above the middle                            -> hold short
#   bar 8: [10,11,12] mean 11, std 0.816: 12 > upper 11.82 (and > middle: short exits)  -> long
#   bar 9: [11,12,11] mean 11.33, std 0.471: 11 < middle, 11 > lower 10.86                -> flat
def test_bollinger_breakout_targets():
    close = np.array([10, 10, 10, 13, 14, 13, 10, 11, 12, 11], dtype=float)
    t = strategies.targets("bollinger_breakout", close, {"period": 3, "k": 1})
    assert t.tolist() == [0, 0, 0, 1, 1, 0, -1, -1, 1, 0]


def test_indicators_match_textbook_formulas():
    x = np.random.default_rng(7).normal(1.1, 0.01, 300)
    windows = np.lib.stride_tricks.sliding_window_view(x, 20)
    assert indicators.sma(x, 20)[19:] == pytest.approx(windows.mean(axis=1), rel=1e-12)
    bands = indicators.bollinger(x, 20, 1.0)  # k = 1: the band's half-width is the population std
    assert (bands["upper"] - bands["middle"])[19:] == pytest.approx(windows.std(axis=1), rel=1e-9)
    gains, losses = np.clip(np.diff(x), 0, None), np.clip(-np.diff(x), 0, None)
    avg_gain, avg_loss = gains[:14].mean(), losses[:14].mean()
    expected = [100 * avg_gain / (avg_gain + avg_loss)]
    for g, l in zip(gains[14:], losses[14:]):
        avg_gain, avg_loss = (avg_gain * 13 + g) / 14, (avg_loss * 13 + l) / 14
        expected.append(100 * avg_gain / (avg_gain + avg_loss))
    assert indicators.rsi(x, 14)[14:] == pytest.approx(expected, rel=1e-9)


def reference_simulation(open_, close, target, costs: Costs, equity0: float):
    """A bar-by-bar account, written independently of the vectorised engine."""
    n = len(close)
    cash, side, units, entry_price, entry_equity, entry_fee = equity0, 0, 0.0, 0.0, 0.0, 0.0
    curve, trades = [], []

    def fee(u, price):
        return u * (costs.commission_per_unit + costs.commission_rate * price)

    def exit_at(mid):
        nonlocal cash
        price = mid - side * costs.half_spread
        cash = max(entry_equity - entry_fee + side * units * (price - entry_price) - fee(units, price), 0.0)
        trades.append((side, entry_price, price, units, cash - entry_equity))

    for t in range(n):
        wanted = target[t - 1] if t else 0
        if wanted != side:
            if side:
                exit_at(open_[t])
            side = wanted
            if side:
                entry_price = open_[t] + side * costs.half_spread
                entry_equity, units = cash, cash / entry_price
                entry_fee = fee(units, entry_price)
        curve.append(entry_equity - entry_fee + side * units * (close[t] - entry_price) if side else cash)
    if side:
        exit_at(close[-1])
        curve[-1] = cash
    return np.array(curve), trades


@pytest.mark.parametrize("costs", [Costs(), Costs(0.0002, 0.00001, 0.0005)], ids=["free", "costly"])
def test_vectorised_engine_matches_a_bar_by_bar_account(costs):
    rng = np.random.default_rng(3)
    close = 1.1 * np.exp(np.cumsum(rng.normal(0, 0.002, 2000)))
    open_ = np.concatenate(([1.1], close[:-1])) * np.exp(rng.normal(0, 0.0005, 2000))
    target = rng.choice(np.array([-1, 0, 1], dtype=np.int8), 2000, p=[0.3, 0.4, 0.3])
    target = np.repeat(target[::8], 8)  # hold each target 8 bars so trades span several bars

    sim = engine.simulate(open_, close, target, costs, 10_000.0)
    curve, trades = reference_simulation(open_, close, target, costs, 10_000.0)

    assert sim.equity == pytest.approx(curve, rel=1e-9)
    got = list(zip(sim.side.tolist(), sim.entry_price, sim.exit_price, sim.units, sim.pnl))
    assert len(got) == len(trades) > 50
    for g, ref in zip(got, trades):
        assert g == pytest.approx(ref, rel=1e-9)


def test_metrics_against_textbook_formulas():
    equity = np.array([100.0, 110.0, 99.0, 108.9, 108.9, 104.0])
    position = np.array([0, 1, 1, 0, 1, 1])
    pnl = np.array([8.9, -4.9])
    returns = [110 / 100 - 1, 99 / 110 - 1, 108.9 / 99 - 1, 0.0, 104 / 108.9 - 1]
    bars_per_year = 1000.0
    m = compute_metrics(equity, position, pnl, pnl / np.array([100.0, 108.9]), 100.0, bars_per_year)

    assert m.total_return == pytest.approx(0.04)
    assert m.annualized_return == pytest.approx(1.04 ** (1000 / 6) - 1)
    assert m.sharpe_ratio == pytest.approx(statistics.mean(returns) / statistics.stdev(returns) * math.sqrt(1000))
    downside = math.sqrt(sum(min(r, 0) ** 2 for r in returns) / len(returns))
    assert m.sortino_ratio == pytest.approx(statistics.mean(returns) / downside * math.sqrt(1000))
    assert m.max_drawdown == pytest.approx(1 - 99 / 110)  # 110 -> 99; the final 104 is only 5.5 % below the 110 peak
    assert m.win_rate == 0.5
    assert m.profit_factor == pytest.approx(8.9 / 4.9)
    assert m.trade_count == 2
    assert m.average_trade_pnl == pytest.approx(2.0)
    assert m.average_trade_return == pytest.approx((8.9 / 100 - 4.9 / 108.9) / 2)
    assert m.exposure == pytest.approx(4 / 6)
    assert m.final_equity == 104.0


def test_annualised_return_that_overflows_is_none():
    m = compute_metrics(np.array([1.0, 1.0, 10.0]), np.zeros(3), np.array([9.0]), np.array([9.0]), 1.0, 1e6)
    assert m.annualized_return is None
    assert m.profit_factor is None  # no losing trade


@pytest.mark.parametrize(("strategy", "params", "field"), [
    ("momentum", {}, "strategy"),
    ("sma_cross", {"fast": 20, "slow": 20}, "params.fast"),
    ("sma_cross", {"fast": 2.5}, "params.fast"),
    ("sma_cross", {"period": 5}, "params.period"),
    ("rsi_reversion", {"period": 1}, "params.period"),
    ("rsi_reversion", {"lower": 60}, "params.lower"),
    ("rsi_reversion", {"upper": float("nan")}, "params.upper"),
    ("bollinger_breakout", {"k": 0}, "params.k"),
])
def test_bad_strategy_or_params_name_the_field(strategy, params, field):
    with pytest.raises(InvalidArgument) as raised:
        strategies.resolve_params(strategy, params)
    assert raised.value.field == field


def test_params_resolve_with_defaults():
    assert strategies.resolve_params("rsi_reversion", {"period": 7}) == {"period": 7, "lower": 30, "upper": 70}
    assert strategies.min_bars("sma_cross", strategies.resolve_params("sma_cross", {})) == 22
