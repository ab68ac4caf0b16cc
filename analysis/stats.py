"""Comparing many signals over many tasks (Demšar 2006; Benavoli et al. 2016).

Blocks are tasks (model x dataset x protocol [x target]); seeds are averaged *within* a
block first (seeds as blocks would be pseudo-replication). The omnibus test is Friedman's;
claims rest on pairwise Wilcoxon signed-rank tests with Holm's correction; Nemenyi
p-values and the critical difference serve the CD diagram only (their verdict on A vs B
depends on which other signals are in the pool). Kendall's W measures how stable a
ranking is across seeds.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from itertools import combinations

import numpy as np
import pandas as pd
import scipy.stats as ss

from taxonomy.errors import PrunetaxError

__all__ = [
    "block_matrix",
    "friedman",
    "wilcoxon_holm",
    "holm",
    "nemenyi",
    "critical_difference",
    "kendall_w",
    "rank_stability",
]


def block_matrix(
    metrics: pd.DataFrame,
    metric: str,
    block: Sequence[str] = ("task",),
    treatment: str = "signal",
) -> pd.DataFrame:
    """Blocks x treatments matrix of ``metric``, seeds averaged within each cell.

    Parameters
    ----------
    metrics
        One row per trial (:func:`analysis.metrics.trial_metrics`).
    metric
        The column to compare.
    block
        Columns that define a block (default: the task).
    treatment
        Column that names the compared methods.

    Returns
    -------
    DataFrame
        Index: the ``block`` columns (a MultiIndex for several); columns: the treatments
        present (non-NaN) in every block, sorted; values: the mean of ``metric`` over the
        cell's trials (NaN values skipped). ``attrs["dropped_treatments"]`` lists the
        treatments left out because some block lacks them.

    Raises
    ------
    PrunetaxError
        When fewer than 2 blocks or 2 complete treatments remain.
    """
    block = list(block)
    missing = [c for c in (*block, treatment, metric) if c not in metrics]
    if missing:
        raise PrunetaxError(f"`metrics` lacks the columns {missing}; pass trial_metrics' output.")
    cells = metrics.groupby([*block, treatment], observed=True)[metric].mean()
    wide = cells.unstack(treatment).sort_index(axis=1)
    complete = wide.columns[wide.notna().all(axis=0)]
    dropped = [str(c) for c in wide.columns if c not in complete]
    wide = wide[complete]
    wide.columns.name = treatment
    if wide.shape[0] < 2 or wide.shape[1] < 2:
        raise PrunetaxError(
            f"a block comparison needs >= 2 blocks and >= 2 {treatment}s present in every block; got "
            f"{wide.shape[0]} blocks ({', '.join(block)}) and {wide.shape[1]} complete {treatment}s "
            f"({len(dropped)} dropped for missing blocks). Run more tasks or compare fewer {treatment}s."
        )
    wide.attrs["dropped_treatments"] = dropped
    return wide


def _mean_ranks(wide: pd.DataFrame, higher_is_better: bool) -> pd.Series:
    ranks = wide.rank(axis=1, ascending=not higher_is_better, method="average")
    return ranks.mean(axis=0).sort_values(kind="stable").rename("mean_rank")


def friedman(wide: pd.DataFrame, *, higher_is_better: bool = True) -> dict[str, object]:
    """Friedman's test that all treatments (columns) rank alike over the blocks (rows).

    Returns
    -------
    dict
        ``statistic`` and ``pvalue`` (``scipy.stats.friedmanchisquare``, chi-square with
        tie correction), ``iman_davenport`` and ``iman_davenport_pvalue`` (Demšar's
        recommended F form: (N-1)chi2 / (N(k-1) - chi2) on (k-1, (k-1)(N-1)) df),
        ``n_blocks`` (N), ``n_treatments`` (k) and ``mean_ranks`` (Series, 1 = best,
        ties averaged, sorted best first).
    """
    n, k = wide.shape
    if k < 3:
        raise PrunetaxError(
            f"Friedman's test needs >= 3 treatments; got {k}. Compare two with wilcoxon_holm."
        )
    if wide.isna().any().any():
        raise PrunetaxError("`wide` has NaNs; build it with block_matrix (complete blocks only).")
    stat, p = ss.friedmanchisquare(*(wide[c].to_numpy(dtype=float) for c in wide.columns))
    denom = n * (k - 1) - stat
    ff = (n - 1) * stat / denom if denom > 0 else np.inf
    p_ff = float(ss.f.sf(ff, k - 1, (k - 1) * (n - 1))) if np.isfinite(ff) else 0.0
    return {
        "statistic": float(stat),
        "pvalue": float(p),
        "iman_davenport": float(ff),
        "iman_davenport_pvalue": p_ff,
        "n_blocks": n,
        "n_treatments": k,
        "mean_ranks": _mean_ranks(wide, higher_is_better),
    }


def holm(pvalues: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values (as ``statsmodels`` ``multipletests(method="holm")``).

    Sorted ascending, p_(i) is multiplied by (m - i + 1), made non-decreasing by a
    running maximum and clipped at 1; NaNs stay NaN and do not count in m.
    """
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    m = ok.size
    if m:
        order = ok[np.argsort(p[ok], kind="stable")]
        adjusted = np.maximum.accumulate(p[order] * (m - np.arange(m)))
        out[order] = np.minimum(adjusted, 1.0)
    return out


def wilcoxon_holm(
    wide: pd.DataFrame,
    control: str | None = None,
    alpha: float = 0.05,
    *,
    higher_is_better: bool = True,
    method: str = "auto",
) -> pd.DataFrame:
    """Pairwise Wilcoxon signed-rank tests over blocks with Holm's correction.

    Each test pairs two columns of ``wide`` block by block with ``scipy.stats.wilcoxon``
    and its defaults: two-sided; ``zero_method="wilcox"`` drops zero differences (blocks
    where the two signals tie, e.g. equivalent signals); ties among the |differences|
    get average ranks; ``method="auto"`` uses the exact null distribution for n <= 50
    without ties or zeros, an exhaustive permutation test for n <= 13 with ties or zeros
    (exact but slow: ~0.1-0.5 s per pair on 2 cores; pass ``method="asymptotic"`` for
    hundreds of signals) and the tie-corrected normal approximation otherwise. A pair
    whose differences are all zero gets ``statistic`` 0 and ``pvalue`` 1 (no evidence)
    instead of scipy's warning and NaN.

    Parameters
    ----------
    wide
        Blocks x treatments (:func:`block_matrix`).
    control
        Test each treatment against this one only (m = k - 1 tests); default all pairs
        (m = k(k-1)/2, in column order).
    alpha
        Family-wise level for ``significant``.
    higher_is_better
        Direction of the metric, for ``better``.
    method
        ``scipy.stats.wilcoxon``'s ``method``.

    Returns
    -------
    DataFrame
        One row per pair: ``a``, ``b`` (``a`` is the control when given), ``n`` (blocks),
        ``n_nonzero`` (blocks with a nonzero difference), ``mean_diff`` and
        ``median_diff`` (of a - b), ``statistic`` (scipy's: the smaller signed-rank
        sum), ``pvalue`` (unadjusted), ``p_holm`` (Holm-adjusted over all rows),
        ``significant`` (``p_holm < alpha``) and ``better`` (the treatment favoured by the
        median difference, by the mean when the median is 0; ``""`` when both are 0).
    """
    cols = list(wide.columns)
    if control is not None:
        if control not in cols:
            raise PrunetaxError(f"`control` must be a column of `wide`; got {control!r}.")
        pairs = [(control, c) for c in cols if c != control]
    else:
        pairs = list(combinations(cols, 2))
    rows = []
    for a, b in pairs:
        d = wide[a].to_numpy(dtype=float) - wide[b].to_numpy(dtype=float)
        d = d[~np.isnan(d)]
        nonzero = int(np.count_nonzero(d))
        if nonzero == 0:
            stat, p = 0.0, 1.0
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                res = ss.wilcoxon(d, method=method)
            stat, p = float(res.statistic), float(res.pvalue)
        med, mean = (float(np.median(d)), float(np.mean(d))) if d.size else (np.nan, np.nan)
        lead = med if med != 0 else mean
        sign = lead if higher_is_better else -lead
        better = a if sign > 0 else b if sign < 0 else ""
        rows.append((a, b, d.size, nonzero, mean, med, stat, p, better))
    out = pd.DataFrame(
        rows,
        columns=["a", "b", "n", "n_nonzero", "mean_diff", "median_diff", "statistic", "pvalue", "better"],
    )
    out.insert(8, "p_holm", holm(out["pvalue"]))
    out.insert(9, "significant", out["p_holm"] < alpha)
    return out


def nemenyi(wide: pd.DataFrame, treatments: Sequence[str] | None = None) -> pd.DataFrame:
    """Nemenyi post-hoc p-values after Friedman (``scikit_posthocs.posthoc_nemenyi_friedman``).

    Parameters
    ----------
    wide
        Blocks x treatments (:func:`block_matrix`).
    treatments
        Return the p-values among these columns only, still ranked within the full table
        (k = every column), as a CD diagram of the best few needs: the full k x k matrix
        costs seconds per hundred treatments. Default: every column.

    Returns
    -------
    DataFrame
        Square, treatments x treatments, symmetric, 1 on the diagonal. For the CD
        diagram; base claims on :func:`wilcoxon_holm`.
    """
    if treatments is not None:
        return _nemenyi_among(wide, list(treatments))
    import scikit_posthocs as sp

    p = sp.posthoc_nemenyi_friedman(wide.to_numpy(dtype=float))
    p.index = p.columns = pd.Index(wide.columns, name=wide.columns.name)
    return p


def _nemenyi_among(wide: pd.DataFrame, shown: list[str]) -> pd.DataFrame:
    """scikit-posthocs' formula for the ``shown`` pairs only: q = |R_i - R_j| / sqrt(k(k+1)/(6N))
    over the mean ranks R of all k columns, p = studentized-range survival of q·sqrt(2)."""
    missing = [t for t in shown if t not in wide.columns]
    if missing:
        raise PrunetaxError(f"`treatments` must be columns of `wide`; {missing} are not.")
    n, k = wide.shape
    ranks = ss.rankdata(wide.to_numpy(dtype=float), axis=1, method="average").mean(axis=0)
    r = ranks[wide.columns.get_indexer(shown)]
    q = np.abs(r[:, None] - r[None, :]) / np.sqrt(k * (k + 1.0) / (6.0 * n))
    upper = np.triu_indices(len(shown), 1)
    p = np.ones((len(shown), len(shown)))
    p[upper] = ss.studentized_range.sf(q[upper] * np.sqrt(2.0), k, np.inf)
    p.T[upper] = p[upper]
    index = pd.Index(shown, name=wide.columns.name)
    return pd.DataFrame(p, index=index, columns=index)


def critical_difference(n_treatments: int, n_blocks: int, alpha: float = 0.05) -> float:
    """Demšar's Nemenyi critical difference of mean ranks: q_a * sqrt(k(k+1) / (6N)).

    q_a is the studentized-range quantile (k groups, infinite df) divided by sqrt 2
    (Demšar 2006, Table 5: k=4 -> 2.569, k=10 -> 3.164 at alpha 0.05).
    """
    k, n = int(n_treatments), int(n_blocks)
    if k < 2 or n < 1:
        raise PrunetaxError(f"`n_treatments` must be >= 2 and `n_blocks` >= 1; got {k} and {n}.")
    q = ss.studentized_range.ppf(1 - alpha, k, np.inf) / np.sqrt(2)
    return float(q * np.sqrt(k * (k + 1) / (6 * n)))


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
