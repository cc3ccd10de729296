"""Performance metrics of a simulated backtest.

Per-bar returns are r_t = equity_t / equity_{t-1} - 1 over consecutive bar closes (n bars give n - 1 returns; the
first bar never holds a position, so its equity is the initial equity). Risk-free rate 0. With B = bars per year:
Sharpe = mean(r) / std(r, ddof=1) * sqrt(B); Sortino = mean(r) / sqrt(mean(min(r, 0)^2)) * sqrt(B);
annualised return = (final / initial) ^ (B / n) - 1 (-1 once equity is gone; None if it overflows a double).
"""
from __future__ import annotations

import math

import numpy as np

from services.backtesting.models import BacktestMetrics


def compute_metrics(equity: np.ndarray, position: np.ndarray, pnl: np.ndarray, trade_return: np.ndarray,
                    initial_equity: float, bars_per_year: float) -> BacktestMetrics:
    bars = equity.shape[0]
    prev = equity[:-1]
    returns = np.divide(equity[1:], prev, out=np.ones_like(prev), where=prev != 0) - 1.0
    growth = float(equity[-1]) / initial_equity
    losses = -pnl[pnl < 0].sum()
    traded = pnl.size > 0
    return BacktestMetrics(
        total_return=growth - 1.0,
        annualized_return=_annualized(growth, bars_per_year / bars),
        sharpe_ratio=_ratio(returns.mean(), returns.std(ddof=1), bars_per_year),
        sortino_ratio=_ratio(returns.mean(), math.sqrt(np.mean(np.minimum(returns, 0.0) ** 2)), bars_per_year),
        max_drawdown=float(np.max(1.0 - equity / np.maximum.accumulate(equity))),
        win_rate=float(np.mean(pnl > 0)) if traded else None,
        profit_factor=float(pnl[pnl > 0].sum() / losses) if losses > 0 else None,
        trade_count=int(pnl.size),
        average_trade_pnl=float(pnl.mean()) if traded else None,
        average_trade_return=float(trade_return.mean()) if traded else None,
        exposure=float(np.mean(position != 0)),
        final_equity=float(equity[-1]),
    )


def _ratio(mean: float, deviation: float, bars_per_year: float) -> float | None:
    return float(mean / deviation * math.sqrt(bars_per_year)) if deviation > 0 else None


def _annualized(growth: float, periods_per_year: float) -> float | None:
    if growth <= 0:
        return -1.0
    try:
        return growth ** periods_per_year - 1.0
    except OverflowError:
        return None
