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

from analysis.concordance import kendall_w, rank_stability
from taxonomy.errors import PrunetaxError

__all__ = [
    "block_matrix",
    "summary_matrix",
    "mean_ranks",
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


def summary_matrix(
    summary: pd.DataFrame,
    value: str = "geomean",
    block: Sequence[str] = ("task",),
    treatment: str = "signal",
) -> pd.DataFrame:
    """Blocks x treatments matrix of a per-block summary (e.g. the geomean over seeds of
    :func:`analysis.metrics.summarise`), keeping the treatments with a value in every block.

    Unlike :func:`block_matrix` it aggregates nothing (the summary already did) and never
    raises: one block or one treatment is a valid (if untestable) ranking.
    ``attrs["dropped_treatments"]`` lists the treatments missing from some block.
    """
    wide = summary.pivot_table(index=list(block), columns=treatment, values=value, aggfunc="first")
    wide = wide.reindex(columns=sorted(summary[treatment].unique()))
    complete = wide.columns[wide.notna().all(axis=0)]
    dropped = [str(c) for c in wide.columns if c not in complete]
    wide = wide[complete]
    wide.columns.name = treatment
    wide.attrs["dropped_treatments"] = dropped
    return wide


def mean_ranks(wide: pd.DataFrame, higher_is_better: bool = True) -> pd.Series:
    """Mean over blocks (rows) of each treatment's within-block rank (1 = best, ties share
    the average rank), sorted best first: the one rank computation tables, CD diagrams and
    Friedman's test share."""
    ranks = wide.rank(axis=1, ascending=not higher_is_better, method="average")
    return ranks.mean(axis=0).sort_values(kind="stable").rename("mean_rank")


FRIEDMAN_MIN_BLOCKS = 10
FRIEDMAN_MIN_TREATMENTS = 5
"""Below 10 blocks or 5 treatments Friedman's chi-square (and F) approximation is not to be
trusted (Demšar 2006, after Friedman's tables); :func:`friedman` then adds a caveat."""


def _rank_sum_statistic(*samples: np.ndarray, axis: int = -1) -> np.ndarray:
    """Sum of squared rank sums: Friedman's statistic up to constants that a within-block
    permutation leaves unchanged (ties included), so the permutation p-values are equal."""
    x = np.stack([np.moveaxis(np.asarray(a), axis, -1) for a in samples], axis=-2)
    ranks = ss.rankdata(x, axis=-2)
    return (ranks.sum(axis=-1) ** 2).sum(axis=-1)


def _friedman_permutation(wide: pd.DataFrame, n_resamples: int, seed: int) -> float:
    """Friedman's p-value from within-block permutations (exact when the k!^N permutations
    fit in ``n_resamples``; otherwise Monte Carlo, with the +1 correction)."""
    samples = [wide[c].to_numpy(dtype=float) for c in wide.columns]
    res = ss.permutation_test(
        samples,
        _rank_sum_statistic,
        permutation_type="samples",
        vectorized=True,
        n_resamples=n_resamples,
        alternative="greater",
        rng=seed,
    )
    return float(res.pvalue)


def friedman(
    wide: pd.DataFrame, *, higher_is_better: bool = True, permutations: int = 2000, seed: int = 0
) -> dict[str, object]:
    """Friedman's test that all treatments (columns) rank alike over the blocks (rows).

    With few blocks the chi-square p-value can be wildly small (2 blocks of 100 signals:
    p ~ 1e-11 for noise), so a permutation p-value (treatments shuffled within each block)
    is always computed as well and, below :data:`FRIEDMAN_MIN_BLOCKS` blocks or
    :data:`FRIEDMAN_MIN_TREATMENTS` treatments, ``caveat`` says to read that one.

    Returns
    -------
    dict
        ``statistic`` and ``pvalue`` (``scipy.stats.friedmanchisquare``, chi-square with
        tie correction), ``iman_davenport`` and ``iman_davenport_pvalue`` (Demšar's
        recommended F form: (N-1)chi2 / (N(k-1) - chi2) on (k-1, (k-1)(N-1)) df),
        ``pvalue_permutation`` (``scipy.stats.permutation_test`` over within-block
        permutations; ``permutations`` resamples, ``seed``; NaN with ``permutations=0``),
        ``approximate`` (too few blocks or treatments for the chi-square form), ``caveat``
        (a sentence, ``""`` when the approximation holds), ``n_blocks`` (N),
        ``n_treatments`` (k) and ``mean_ranks`` (:func:`mean_ranks`).
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
    p_perm = _friedman_permutation(wide, permutations, seed) if permutations > 0 else np.nan
    approximate = n < FRIEDMAN_MIN_BLOCKS or k < FRIEDMAN_MIN_TREATMENTS
    caveat = ""
    if approximate:
        caveat = (
            f"with {n} blocks and {k} treatments the chi-square and F p-values are large-sample "
            f"approximations that cannot be trusted (they need >= {FRIEDMAN_MIN_BLOCKS} blocks and "
            f">= {FRIEDMAN_MIN_TREATMENTS} treatments); read the permutation p-value instead"
        )
    return {
        "statistic": float(stat),
        "pvalue": float(p),
        "iman_davenport": float(ff),
        "iman_davenport_pvalue": p_ff,
        "pvalue_permutation": p_perm,
        "approximate": approximate,
        "caveat": caveat,
        "n_blocks": n,
        "n_treatments": k,
        "mean_ranks": mean_ranks(wide, higher_is_better),
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
