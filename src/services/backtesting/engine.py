"""The vectorised backtest engine: target positions in, trades and an equity curve out, with no Python loop per bar.

Execution model
---------------
- A target decided on bar t's close is filled at bar t+1's open; the position is held through bar t+1. A target on
  the last bar is never filled, and a position still open then is closed at the last bar's close.
- Each entry is sized with all the equity: units = equity before the entry / entry fill price (fractional units).
- Candle prices are mids: buys fill `half_spread` above, sells `half_spread` below. A reversal is two fills (exit, then
  entry) at the same open. Every fill pays units * (commission_per_unit + commission_rate * fill price).
- Within a trade, equity = equity at entry - entry commission + side * units * (close - entry fill): marked to the
  bar's close, before exit costs. A trade's exit can take equity to zero at worst (a margin call): later trades then
  have zero size.

Because units are fixed within a trade and sized from the equity at entry, every trade multiplies equity by a growth
factor that depends only on its fill prices, so the equity at each entry is a cumulative product over earlier trades.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from services.backtesting import strategies
from services.backtesting.metrics import compute_metrics
from services.backtesting.models import BacktestMetrics, EquityCurve, Side, Trade
from services.common.market_types import CandleSeries, from_unix


@dataclass(frozen=True)
class Costs:
    half_spread: float = 0.0  # price units added to buy fills and taken off sell fills
    commission_per_unit: float = 0.0  # paid per unit on every fill
    commission_rate: float = 0.0  # fraction of each fill's notional (units * fill price)


@dataclass(frozen=True, eq=False)
class Simulation:
    """The engine's columnar output: per bar `position` (held through the bar) and `equity` (at its close); per trade
    the remaining columns. `exit_bar` is the bar whose open the exit filled at, or the bar count for the final close."""

    position: np.ndarray
    equity: np.ndarray
    side: np.ndarray
    entry_bar: np.ndarray
    exit_bar: np.ndarray
    entry_price: np.ndarray
    exit_price: np.ndarray
    units: np.ndarray
    pnl: np.ndarray
    trade_return: np.ndarray


@dataclass(frozen=True)
class BacktestOutcome:
    trades: tuple[Trade, ...]
    equity_curve: EquityCurve
    metrics: BacktestMetrics


def simulate(open_: np.ndarray, close: np.ndarray, target: np.ndarray, costs: Costs,
             initial_equity: float) -> Simulation:
    """Fills `target` (position wanted after each bar's close) at the next bar's open; see the module docstring."""
    n = close.shape[0]
    position = np.zeros(n, dtype=np.int8)
    position[1:] = target[:-1]
    fills = np.flatnonzero(position[1:] != position[:-1]) + 1
    opening = np.flatnonzero(position[fills] != 0)
    entry_bar = fills[opening]
    exit_bar = np.append(fills, n)[opening + 1]
    side = position[entry_bar].astype(np.float64)

    entry_price = open_[entry_bar] + side * costs.half_spread
    exit_mid = np.where(exit_bar < n, open_[np.minimum(exit_bar, n - 1)], close[-1])
    exit_price = exit_mid - side * costs.half_spread
    # Costs and growth per unit of equity at entry (units = equity / entry_price).
    entry_cost = costs.commission_per_unit / entry_price + costs.commission_rate
    exit_cost = (costs.commission_per_unit + costs.commission_rate * exit_price) / entry_price
    growth = np.maximum(1.0 + side * (exit_price / entry_price - 1.0) - entry_cost - exit_cost, 0.0)
    equity_after = initial_equity * np.cumprod(growth)
    equity_before = np.concatenate(([initial_equity], equity_after[:-1]))

    equity = np.full(n, float(initial_equity))
    if entry_bar.size:
        bar = np.arange(n)
        trade = np.searchsorted(entry_bar, bar, side="right") - 1  # latest trade entered at or before the bar
        started = trade >= 0
        k = np.maximum(trade, 0)
        in_trade = started & (bar < exit_bar[k])
        marked = equity_before[k] * (1.0 - entry_cost[k] + side[k] * (close / entry_price[k] - 1.0))
        equity = np.where(in_trade, marked, np.where(started, equity_after[k], equity))
        if exit_bar[-1] == n:
            equity[-1] = equity_after[-1]

    return Simulation(
        position=position, equity=equity, side=side.astype(np.int8), entry_bar=entry_bar, exit_bar=exit_bar,
        entry_price=entry_price, exit_price=exit_price, units=equity_before / entry_price,
        pnl=equity_after - equity_before, trade_return=growth - 1.0,
    )


def run(series: CandleSeries, strategy: str, params: dict[str, float], costs: Costs,
        initial_equity: float) -> BacktestOutcome:
    """Backtest a validated strategy (params resolved) over `series`."""
    target = strategies.targets(strategy, series.close, params)
    sim = simulate(series.open, series.close, target, costs, initial_equity)
    metrics = compute_metrics(sim.equity, sim.position, sim.pnl, sim.trade_return, initial_equity,
                              series.timeframe.bars_per_year)
    return BacktestOutcome(_trades(sim, series), EquityCurve(series.time, sim.equity), metrics)


def _trades(sim: Simulation, series: CandleSeries) -> tuple[Trade, ...]:
    end_time = int(series.time[-1]) + series.timeframe.seconds  # the last bar's close
    fill_time = np.append(series.time, end_time)
    return tuple(
        Trade(Side.LONG if s > 0 else Side.SHORT, from_unix(et), ep, from_unix(xt), xp, u, pnl, ret)
        for s, et, ep, xt, xp, u, pnl, ret in zip(
            sim.side.tolist(), fill_time[sim.entry_bar].tolist(), sim.entry_price.tolist(),
            fill_time[sim.exit_bar].tolist(), sim.exit_price.tolist(), sim.units.tolist(), sim.pnl.tolist(),
            sim.trade_return.tolist(), strict=True)
    )
