"""How far several raters agree on a ranking: Kendall's W, and the stability of a ranking of
signals across seeds (each seed a rater). Re-exported by :mod:`analysis.stats`."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import scipy.stats as ss

__all__ = ["kendall_w", "rank_stability"]


def kendall_w(ranks_or_scores: pd.DataFrame | np.ndarray, ties: bool = True) -> float:
    """Kendall's coefficient of concordance W of m raters (rows) over n items (columns).

    Each row is ranked (average ranks for ties; the direction does not matter), then
    ``W = 12 S / (m^2 (n^3 - n) - m T)`` with ``S`` the sum of squared deviations of the
    items' rank sums from their mean m(n+1)/2 and ``T = sum over raters and tie groups of
    (t^3 - t)`` (``T = 0`` with ``ties=False``). 1 = identical rankings, 0 = no agreement.
    Items with a NaN for any rater are dropped.

    Returns
    -------
    float
        W, or NaN with fewer than 2 raters or 2 items, or when every rater ties everything.
    """
    data = pd.DataFrame(ranks_or_scores).dropna(axis=1, how="any")
    m, n = data.shape
    if m < 2 or n < 2:
        return np.nan
    ranks = data.rank(axis=1, method="average").to_numpy()
    sums = ranks.sum(axis=0)
    s = float(((sums - m * (n + 1) / 2) ** 2).sum())
    t = 0.0
    if ties:
        for row in ranks:
            counts = np.unique(row, return_counts=True)[1].astype(float)
            t += float((counts**3 - counts).sum())
    denom = m**2 * (n**3 - n) - m * t
    return 12 * s / denom if denom > 0 else np.nan


def rank_stability(
    metrics: pd.DataFrame,
    metric: str,
    by: Sequence[str] = ("task",),
    *,
    treatment: str = "signal",
    rater: Sequence[str] = ("base_seed", "seed"),
) -> pd.DataFrame:
    """How stable the ranking of treatments is across seeds, per block: Kendall's W.

    Within each ``by`` block, raters are the seeds (distinct ``rater`` tuples) and items
    the treatments present for every seed of the block (others dropped).

    Returns
    -------
    DataFrame
        One row per block: the ``by`` columns, ``kendall_w`` (tie-corrected),
        ``n_seeds``, ``n_signals`` (items used) and ``pvalue`` (chi-square test of no
        agreement, m(n-1)W on n-1 df; NaN when W is).
    """
    by, rater = list(by), list(rater)
    rows = []
    for key, part in metrics.groupby(by, observed=True, sort=True):
        wide = part.pivot_table(index=rater, columns=treatment, values=metric, aggfunc="mean")
        wide = wide.dropna(axis=1, how="any")
        m, n = wide.shape
        w = kendall_w(wide)
        p = float(ss.chi2.sf(m * (n - 1) * w, n - 1)) if np.isfinite(w) else np.nan
        rows.append((*(key if isinstance(key, tuple) else (key,)), w, m, n, p))
    return pd.DataFrame(rows, columns=[*by, "kendall_w", "n_seeds", "n_signals", "pvalue"])
