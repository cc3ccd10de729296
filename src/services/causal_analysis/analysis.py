"""Pure statistics of Causal Analysis: functions over numpy arrays, no I/O.

Conventions: a series of log returns is `r[t] = ln(close[t] / close[t-1])`; a "lag k" pairs a value at bar t with one
at bar t - k. Every function takes float64 arrays and is deterministic.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import special, stats


def align(times: Sequence[np.ndarray], values: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Inner join on time. Each `times[i]` is ascending and unique, `values[i]` its values. Returns the timestamps
    present in every series and a matrix whose column i holds series i's values at those timestamps."""
    common = times[0]
    for t in times[1:]:
        common = np.intersect1d(common, t, assume_unique=True)
    columns = [v[np.searchsorted(t, common)] for t, v in zip(times, values)]
    return common, np.column_stack(columns).astype(np.float64, copy=False)


def log_returns(closes: np.ndarray) -> np.ndarray:
    """Log returns along axis 0: `ln(close[t] / close[t-1])`, one row fewer than `closes`."""
    return np.diff(np.log(closes), axis=0)


def granger_f_tests(cause: np.ndarray, effect: np.ndarray, max_lag: int) -> tuple[np.ndarray, np.ndarray]:
    """F statistics and p-values of "`cause` Granger-causes `effect`" at lags k = 1..max_lag (element k-1).

    At lag k, over the bars t = k..n-1, the restricted OLS regresses effect[t] on a constant and effect[t-1..t-k];
    the unrestricted one adds cause[t-1..t-k]. With residual sums of squares RSS_r and RSS_u,
    F = ((RSS_r - RSS_u) / k) / (RSS_u / (n - 3k - 1)) and p = P(F(k, n - 3k - 1) > F): the ssr F-test of statsmodels'
    `grangercausalitytests`. Both regressions are solved from one Gram matrix of all lags (normal equations on
    standardised series, which the test is invariant to), so every lag costs one small factorisation instead of two
    regressions over all bars.
    """
    n = len(effect)
    y, x = _standardized(effect), _standardized(cause)
    # Columns: constant, effect lags 1..K, cause lags 1..K, effect at t; lags before the first bar are zero-padded
    # and never used (lag k only reads rows t >= k).
    design = np.zeros((n, 2 * max_lag + 2))
    design[:, 0] = 1.0
    for j in range(1, max_lag + 1):
        design[j:, j] = y[:-j]
        design[j:, max_lag + j] = x[:-j]
    design[:, -1] = y
    gram = design[max_lag:].T @ design[max_lag:]
    f_stats = np.empty(max_lag)
    for k in range(max_lag, 0, -1):
        if k < max_lag:
            gram += np.outer(design[k], design[k])  # rows t >= k
        own = [0, *range(1, k + 1)]
        rss_restricted, rss_unrestricted = _nested_rss(gram, own, list(range(max_lag + 1, max_lag + k + 1)))
        df = n - 3 * k - 1
        f = max(rss_restricted - rss_unrestricted, 0.0) / k / (rss_unrestricted / df)
        f_stats[k - 1] = f
    # P(F(k, n - 3k - 1) > F) for every lag at once: the function `stats.f.sf` evaluates, without its ~75 µs of
    # generic argument checking per call (as much as the rest of a five-lag test); the values are identical.
    lags = np.arange(1, max_lag + 1)
    return f_stats, special.fdtrc(lags, n - 3 * lags - 1, f_stats)


def _standardized(a: np.ndarray) -> np.ndarray:
    return (a - a.mean()) / a.std()


def _nested_rss(gram: np.ndarray, own: list[int], added: list[int]) -> tuple[float, float]:
    """RSS of regressing the Gram matrix's last column on `own`, and on `own` + `added`, from one Cholesky factor L of
    the Gram matrix in the order own, added, target: the target's last pivot squared is the full model's RSS, and
    adding back the squares of its row under `added` gives the RSS without them (a Schur complement). A Gram matrix
    that is not positive definite (collinear columns: two symbols with the same bars) takes least squares instead,
    which degrades gracefully where a factorisation cannot."""
    order = [*own, *added, gram.shape[0] - 1]
    try:
        row = np.linalg.cholesky(gram[np.ix_(order, order)])[-1]
    except np.linalg.LinAlgError:
        return _residual_sum_of_squares(gram, own), _residual_sum_of_squares(gram, own + added)
    unrestricted = float(row[-1] ** 2)
    return unrestricted + float(row[len(own):-1] @ row[len(own):-1]), unrestricted


def _residual_sum_of_squares(gram: np.ndarray, regressors: list[int]) -> float:
    """RSS of regressing the Gram matrix's last column on the given columns, from the normal equations."""
    xtx = gram[np.ix_(regressors, regressors)]
    xty = gram[regressors, -1]
    coef = np.linalg.lstsq(xtx, xty, rcond=None)[0]
    return float(gram[-1, -1] - coef @ xty)


def benjamini_hochberg(p_values: np.ndarray) -> np.ndarray:
    """Benjamini–Hochberg adjusted p-values, in the input's order and shape. With the m p-values sorted ascending,
    q_(i) = min over j >= i of min(1, m * p_(j) / j); rejecting every hypothesis with q <= alpha controls the false
    discovery rate at alpha."""
    p = np.asarray(p_values, dtype=np.float64)
    flat = p.ravel()
    m = flat.size
    order = np.argsort(flat, kind="stable")
    scaled = flat[order] * m / np.arange(1, m + 1)
    adjusted = np.empty(m)
    adjusted[order] = np.minimum(np.minimum.accumulate(scaled[::-1])[::-1], 1.0)
    return adjusted.reshape(p.shape)


def pearson_matrix(returns: np.ndarray) -> np.ndarray:
    """Pearson correlation of every pair of columns: cov(a, b) / (std(a) std(b)); NaN for a constant column. The
    diagonal is exactly 1 (corrcoef leaves rounding such as 0.9999999999999998 there)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        matrix = np.atleast_2d(np.corrcoef(returns, rowvar=False))
    diagonal = np.diagonal(matrix).copy()
    np.fill_diagonal(matrix, np.where(np.isnan(diagonal), np.nan, 1.0))
    return matrix


def spearman_matrix(returns: np.ndarray) -> np.ndarray:
    """Spearman rank correlation of every pair of columns: the Pearson correlation of their ranks (ties averaged)."""
    return pearson_matrix(stats.rankdata(returns, axis=0))


def rolling_correlation(a: np.ndarray, b: np.ndarray, window: int) -> np.ndarray:
    """Pearson correlation of a and b over the trailing `window` values ending at each index; NaN for the first
    window - 1 indices (warm-up) and for windows in which either series is constant."""
    return pd.Series(a).rolling(window).corr(pd.Series(b)).to_numpy(dtype=np.float64)


def cross_correlation(a: np.ndarray, b: np.ndarray, max_lag: int) -> tuple[np.ndarray, np.ndarray]:
    """Cross-correlation function: for each lag k in -max_lag..max_lag, the Pearson correlation of a[t] with b[t + k]
    over the n - |k| overlapping bars. A peak at k > 0 means a's moves precede b's by k bars (a leads); k < 0 means b
    leads. Returns (lags, correlations)."""
    lags = np.arange(-max_lag, max_lag + 1)
    n = len(a)
    correlations = np.array([_pearson(a[max(0, -k):n - max(0, k)], b[max(0, k):n - max(0, -k)]) for k in lags])
    return lags, correlations


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    da, db = a - a.mean(), b - b.mean()
    return float(da @ db / np.sqrt((da @ da) * (db @ db)))


def strongest_lead(lags: np.ndarray, correlations: np.ndarray) -> int:
    """The non-zero lag with the largest absolute cross-correlation (the earliest such lag on ties); lag 0 is excluded
    because it measures co-movement, not lead."""
    candidates = np.flatnonzero(lags != 0)
    return int(lags[candidates[np.argmax(np.abs(correlations[candidates]))]])


def white_noise_bound(observations: int) -> float:
    """The 95 % bound 1.96 / sqrt(n): at any single lag, the sample cross-correlation of two independent white-noise
    series of n values stays within +-bound with probability about 0.95."""
    return float(stats.norm.ppf(0.975) / np.sqrt(observations))
