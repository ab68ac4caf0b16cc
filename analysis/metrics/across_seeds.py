"""Across-seed aggregates: the paper's shifted geometric mean, bootstrap intervals, the
per-block summary and the ranking across blocks.

Seeds are summarised *within* a block (a task) first; ranks and distances to the best
are within a block, so tasks with different accuracy scales never mix.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from analysis.frames import SIG_COLUMNS
from taxonomy.errors import PrunetaxError

if TYPE_CHECKING:
    from pandas.api.typing import DataFrameGroupBy

__all__ = [
    "geometric_mean",
    "bootstrap_ci",
    "summarise",
    "overall_ranking",
    "ranking_blocks",
    "GEOMEAN_SHIFT",
]

GEOMEAN_SHIFT = 1.0
"""Shift (in metric units, i.e. points of sparsity) of :func:`geometric_mean`."""


def geometric_mean(
    values: object, shift: float = GEOMEAN_SHIFT, axis: int | None = None
) -> float | np.ndarray:
    """The paper's across-seed aggregate: a geometric mean, shifted so zeros are allowed.

    ``exp(mean(log(v + shift))) - shift``, NaNs ignored. The plain geometric mean
    (``shift=0``) collapses to 0 as soon as one seed scores 0 (a first pruning step that
    already drops too far) and is arbitrarily sensitive near 0 (0.01 vs 0.1 changes it by
    a factor 10^(1/n)); flooring at an ``eps`` only moves that problem into the choice of
    ``eps``. With the default shift of 1 (one point of sparsity) it is defined and
    continuous at 0, lies between the minimum and the arithmetic mean, and differs from
    the plain geometric mean by under 0.05 point for values of 10 % and more
    (20, 25, 30 -> 24.68 against 24.66). ``shift=0`` gives the exact plain geometric
    mean (0 when any value is 0).

    Parameters
    ----------
    values
        Array-like of values; NaNs are ignored.
    shift
        Added before the logarithm and subtracted after the exponential.
    axis
        Reduce along this axis (``None``: all values).

    Returns
    -------
    float or ndarray
        NaN for an empty (or all-NaN) input and when a value is ``< -shift``.
    """
    v = np.asarray(values, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        bad = np.any(v + shift < 0, axis=axis)
        res = np.exp(np.nanmean(np.log(v + shift), axis=axis)) - shift
    res = np.where(bad, np.nan, res)
    return float(res) if np.ndim(res) == 0 else res


def bootstrap_ci(
    values: object,
    stat: Callable[..., object] = np.mean,
    n_resamples: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``stat`` over ``values`` (NaNs dropped).

    Parameters
    ----------
    values
        One-dimensional sample.
    stat
        Statistic; called as ``stat(samples, axis=-1)`` on a (resamples x n) array when
        it accepts ``axis`` (numpy reductions, :func:`geometric_mean`), else per resample.
    n_resamples, level, seed
        Number of resamples, confidence level, seed of ``numpy.random.default_rng``.

    Returns
    -------
    (low, high)
        The ``(1 - level)/2`` and ``(1 + level)/2`` quantiles of the resampled statistic;
        ``(nan, nan)`` with fewer than 2 values. With few values (3 seeds) the interval
        is coarse: only 10 distinct resamples exist.
    """
    v = np.asarray(values, dtype=float).ravel()
    v = v[~np.isnan(v)]
    if v.size < 2:
        return (np.nan, np.nan)
    if not 0 < level < 1:
        raise PrunetaxError(f"`level` must be in (0, 1); got {level!r}.")
    rng = np.random.default_rng(seed)
    batch = max(1, min(n_resamples, 2_000_000 // v.size))
    stats = []
    for start in range(0, n_resamples, batch):
        samples = v[rng.integers(0, v.size, size=(min(batch, n_resamples - start), v.size))]
        try:
            stats.append(np.asarray(stat(samples, axis=-1), dtype=float))
        except TypeError:
            stats.append(np.array([float(stat(s)) for s in samples]))
    q = np.quantile(np.concatenate(stats), [(1 - level) / 2, (1 + level) / 2])
    return (float(q[0]), float(q[1]))


_SIGNAL_IDENTITY = (*SIG_COLUMNS, "sig_class", "family", "alias")
_TASK_IDENTITY = ("task", "model", "dataset", "protocol", "protocol_label")


def summarise(
    metrics: pd.DataFrame,
    metric: str = "sparsity_at_5",
    by: Sequence[str] = ("task",),
    *,
    higher_is_better: bool = True,
    ci_stat: str = "geomean",
    shift: float = GEOMEAN_SHIFT,
    n_resamples: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """Across-seed summary of ``metric``: one row per (``by``..., ``signal``).

    Parameters
    ----------
    metrics
        Output of :func:`~analysis.metrics.trial_metrics` (any frame with ``signal``, ``by`` and ``metric``).
    metric
        Column to summarise.
    by
        Columns of a block (default: the task); ranks and ``dist`` are within a block.
    higher_is_better
        Direction of ``metric`` (``False`` for e.g. ``retrain_steps_at_5``).
    ci_stat
        ``"geomean"`` (default: the interval brackets the headline) or ``"mean"``.
    shift
        Shift of :func:`geometric_mean`.
    n_resamples, level, seed
        Of :func:`bootstrap_ci` (the same seed for every row: reproducible, order-free).

    Returns
    -------
    DataFrame
        Sorted by ``by`` then ``rank``; columns:

        - the ``by`` columns and ``signal``;
        - signal identity: ``sig_input``, ``sig_pointwise``, ``sig_reduction``,
          ``sig_scaling``, ``sig_class``, ``family``, ``alias`` (those present);
        - block identity: ``task``, ``model``, ``dataset``, ``protocol``, ``protocol_label``
          when present and constant within every block (so dropped when ``by`` does not
          determine them);
        - ``metric``: the metric's name;
        - ``n_seeds``: non-NaN values; ``geomean`` (:func:`geometric_mean`), ``mean``,
          ``std`` (ddof 1; NaN for one seed), ``min``, ``max``;
        - ``ci_low``, ``ci_high``: percentile bootstrap interval of ``ci_stat`` over seeds
          (NaN with fewer than 2 seeds);
        - ``rank``: rank of ``geomean`` within the block, 1 = best, ties averaged;
        - ``dist``: distance in ``geomean`` to the block's best (0 for the best, >= 0).
    """
    by = list(by)
    missing = [c for c in (*by, "signal", metric) if c not in metrics]
    if missing:
        raise PrunetaxError(f"`metrics` lacks the columns {missing}; pass trial_metrics' output.")
    stats = {"geomean": lambda a, axis=-1: geometric_mean(a, shift, axis=axis), "mean": np.nanmean}
    if ci_stat not in stats:
        raise PrunetaxError(f"`ci_stat` must be one of geomean, mean; got {ci_stat!r}.")
    keys = [*by, "signal"]
    data = metrics.reset_index(drop=True)
    values = data[metric].to_numpy(dtype=float, na_value=np.nan)
    grouped = data.assign(_v=values, _log=np.log(np.maximum(values + shift, 0.0)), _bad=values + shift < 0)
    grouped = grouped.groupby(keys, sort=True, dropna=False, observed=True)
    out = _seed_statistics(grouped, shift)
    out["ci_low"], out["ci_high"] = _intervals(
        grouped, len(out), values, stats[ci_stat], n_resamples, level, seed
    )
    out = out.reset_index()
    ident = [c for c in _SIGNAL_IDENTITY if c in data and c not in keys]
    if ident:
        first = grouped[ident].first().reset_index(drop=True)
        out = pd.concat([out[keys], first, out.drop(columns=keys)], axis=1)
    out = _with_block_identity(out, data, by, keys)
    out.insert(len(keys) + len(ident), "metric", metric)
    _rank_within_blocks(out, by, higher_is_better)
    lead = [*keys, *ident, *[c for c in _TASK_IDENTITY if c in out and c not in keys]]
    rest = [c for c in out if c not in lead]
    return out[lead + rest].sort_values([*by, "rank"], kind="stable").reset_index(drop=True)


def _seed_statistics(grouped: DataFrameGroupBy, shift: float) -> pd.DataFrame:
    """Count, geomean (NaN when a value is below ``-shift``), mean, std, min and max per group."""
    out = grouped["_v"].agg(n_seeds="count", mean="mean", std="std", min="min", max="max")
    geo = np.exp(grouped["_log"].mean()) - shift
    out.insert(1, "geomean", geo.where(~grouped["_bad"].any()))
    return out


def _intervals(
    grouped: DataFrameGroupBy,
    n_groups: int,
    values: np.ndarray,
    stat: Callable[..., object],
    n_resamples: int,
    level: float,
    seed: int,
) -> tuple[list[float], list[float]]:
    """Bootstrap interval of every group, each from the same seed (reproducible, order-free)."""
    codes = grouped.ngroup().to_numpy()
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(n_groups + 1))
    ci = [
        bootstrap_ci(values[order[a:b]], stat, n_resamples, level, seed)
        for a, b in zip(bounds[:-1], bounds[1:], strict=True)
    ]
    return [c[0] for c in ci], [c[1] for c in ci]


def _with_block_identity(
    out: pd.DataFrame, data: pd.DataFrame, by: list[str], keys: list[str]
) -> pd.DataFrame:
    """Add the task identity columns that are constant within every block (so meaningful)."""
    block_ident = [c for c in _TASK_IDENTITY if c in data and c not in keys]
    if not (block_ident and by):
        return out
    per_block = data.groupby(by, dropna=False, observed=True)
    constant = [c for c in block_ident if (per_block[c].nunique(dropna=False) <= 1).all()]
    if not constant:
        return out
    firsts = per_block[constant].first().reset_index()
    return out.merge(firsts, on=by, how="left")


def _rank_within_blocks(out: pd.DataFrame, by: list[str], higher_is_better: bool) -> None:
    """Add ``rank`` (1 = best, ties averaged) and ``dist`` (to the block's best geomean)."""
    best_of = "max" if higher_is_better else "min"
    if by:
        blocks = out.groupby(by, dropna=False, observed=True)["geomean"]
        best = blocks.transform(best_of)
    else:
        blocks, best = out["geomean"], out["geomean"].agg(best_of)
    out["rank"] = blocks.rank(ascending=not higher_is_better, method="average")
    out["dist"] = (best - out["geomean"]) if higher_is_better else (out["geomean"] - best)


def ranking_blocks(metrics: pd.DataFrame) -> tuple[str, ...]:
    """The blocks signals are ranked in and tested over: ``("task", "seed")`` when the
    repeats are independent, else ``("task",)``.

    A repeat is independent when its trial seed is its base seed (``seeds = "base"``): it
    has its own data split, base model and evaluation batches, so two repeats of a task are
    two replications of the experiment and each may be a block of Friedman's test, like a
    dataset in Demsar (2006). Several trial seeds on one base model share that model and
    its test set: they are not independent, and are summarised within their task first
    (seeds as blocks would be pseudo-replication).
    """
    if not {"seed", "base_seed", "task"} <= set(metrics.columns) or metrics.empty:
        return ("task",)
    same = (metrics["seed"].astype("int64") == metrics["base_seed"].astype("int64")).all()
    repeated = metrics.groupby("task", observed=True)["seed"].nunique().max() > 1
    return ("task", "seed") if same and repeated else ("task",)


def overall_ranking(
    summary: pd.DataFrame, *, higher_is_better: bool = True, block: Sequence[str] = ("task",)
) -> pd.DataFrame:
    """Rank signals across blocks from :func:`summarise`'s output, best first.

    The rule (the report's, stated there once): within each block, the signals present in
    *every* block are ranked by their geomean (1 = best, ties share the average rank;
    :func:`analysis.stats.mean_ranks` on :func:`analysis.stats.summary_matrix`), and a
    signal's ``mean_rank`` is the mean of those ranks over the blocks. A signal missing
    from some block was not measured against the same competitors, so it gets no mean rank
    (NaN) and comes after every complete signal, ordered by ``n_tasks`` (more first), then
    ``mean_dist``. The critical-difference diagram and Friedman's test use the same ranks.

    Returns
    -------
    DataFrame
        One row per ``signal``: ``overall_rank`` (1 = best, by ``mean_rank`` then
        ``mean_dist``), ``signal``, the signal identity columns present (``sig_input``,
        ``sig_pointwise``, ``sig_reduction``, ``sig_scaling``, ``sig_class``, ``family``,
        ``alias``), ``mean_rank``, ``n_tasks`` (blocks where the signal has a geomean),
        ``mean_dist`` (mean distance to the block's best), ``n_wins`` (blocks where it is
        the best or tied best) and ``mean_geomean``.
    """
    from analysis.stats import mean_ranks, summary_matrix

    ident = [c for c in _SIGNAL_IDENTITY if c in summary]
    data = summary.assign(_win=summary["dist"] == 0)
    g = data.groupby("signal", sort=True, observed=True)
    out = g.agg(
        n_tasks=("geomean", "count"),
        mean_dist=("dist", "mean"),
        n_wins=("_win", "sum"),
        mean_geomean=("geomean", "mean"),
    )
    ranks = mean_ranks(summary_matrix(summary, "geomean", block), higher_is_better)
    out.insert(0, "mean_rank", ranks.reindex(out.index))
    if ident:
        out = g[ident].first().join(out)
    out = out.reset_index().assign(_missing=lambda f: f["mean_rank"].isna())
    out["_tasks"] = -out["n_tasks"]
    out = out.sort_values(["_missing", "mean_rank", "_tasks", "mean_dist"], kind="stable", na_position="last")
    out = out.drop(columns=["_missing", "_tasks"])
    out.insert(0, "overall_rank", np.arange(1, len(out) + 1))
    return out.reset_index(drop=True)
