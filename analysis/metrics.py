"""Per-trial headline metrics, across-seed aggregates and interpolated curves (SPEC §4).

Curves follow :mod:`study.curves`: anchored at (0, reference), steps without a test
evaluation skipped, linear interpolation between logged points. :func:`trial_metrics`
recomputes them for every trial at once with grouped numpy operations (2 million steps
rows take a few seconds), so changing the drops or the reference needs no new trials.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from analysis.frames import IDENTITY, SIG_COLUMNS, add_identity
from study.curves import DROPS
from taxonomy.errors import PrunetaxError

__all__ = [
    "trial_metrics",
    "geometric_mean",
    "bootstrap_ci",
    "summarise",
    "overall_ranking",
    "curves",
    "DEFAULT_DROPS",
    "GEOMEAN_SHIFT",
]

DEFAULT_DROPS = DROPS
"""The SPEC §4 drops (1, 2, 5 and 10 points), from :mod:`study.curves`."""
GEOMEAN_SHIFT = 1.0
"""Shift (in metric units, i.e. points of sparsity) of :func:`geometric_mean`."""


def _label(drop: float) -> str:
    return f"{float(drop):g}"


class _Curves:
    """Many anchored curves at once, from points sorted by (trial ``g``, step).

    Invalid points (NaN x or y) are dropped, each curve is sorted by x (stable, so ties
    keep step order; skipped when already sorted, the usual case) and the anchor
    (0, reference) is put first; then ``self.g`` is sorted and ``first``/``last`` index
    each curve's anchor and last point.
    """

    def __init__(self, g: np.ndarray, x: np.ndarray, y: np.ndarray, ref: np.ndarray):
        n = len(ref)
        ok = np.isfinite(x) & np.isfinite(y)
        g, x, y = g[ok], x[ok], y[ok]
        if np.any((np.diff(x) < 0) & (g[1:] == g[:-1])):
            order = np.lexsort((x, g))
            g, x, y = g[order], x[order], y[order]
        at = np.searchsorted(g, np.arange(n))
        self.g = np.insert(g, at, np.arange(n))
        self.x = np.insert(x, at, 0.0)
        self.y = np.insert(y, at, ref)
        self.ref = ref
        self.first = at + np.arange(n)
        self.last = np.r_[self.first[1:] - 1, len(self.g) - 1] if n else self.first

    def at_drop(self, drop: float) -> np.ndarray:
        """:func:`study.curves.sparsity_at_drop` of every curve."""
        threshold = self.ref - drop
        out = self.x[self.last].copy()  # never crosses: the last point
        below = np.flatnonzero(self.y < threshold[self.g])
        if below.size:
            gb = self.g[below]
            k = below[np.r_[True, gb[1:] != gb[:-1]]]  # first point below, per curve
            gk = self.g[k]
            at_anchor = k == self.first[gk]
            j = np.where(at_anchor, k, k - 1)
            x0, y0, x1, y1 = self.x[j], self.y[j], self.x[k], self.y[k]
            with np.errstate(divide="ignore", invalid="ignore"):
                cross = x0 + (y0 - threshold[gk]) * (x1 - x0) / (y0 - y1)
            out[gk] = np.where(at_anchor, 0.0, cross)
        out[~np.isfinite(self.ref)] = np.nan
        return out

    def auc(self, upto: float = 100.0) -> np.ndarray:
        """:func:`study.curves.curve_auc` of every curve (trapezoids through the points)."""
        same = self.g[1:] == self.g[:-1]
        x0, x1, y0, y1 = self.x[:-1][same], self.x[1:][same], self.y[:-1][same], self.y[1:][same]
        a, b = np.minimum(x0, upto), np.minimum(x1, upto)
        with np.errstate(divide="ignore", invalid="ignore"):
            slope = np.where(x1 > x0, (y1 - y0) / (x1 - x0), 0.0)
        area = (b - a) * ((y0 + slope * (a - x0)) + (y0 + slope * (b - x0))) / 2
        total = np.bincount(self.g[:-1][same], weights=area, minlength=len(self.ref)).astype(float)
        xl, yl = self.x[self.last], self.y[self.last]
        total += np.where(xl < upto, (upto - xl) * yl, 0.0)
        total = total / upto
        total[~np.isfinite(self.ref)] = np.nan
        return total


def _references(trials: pd.DataFrame, reference: float | Mapping[str, float] | None) -> np.ndarray:
    if reference is None:
        return trials["reference_acc"].to_numpy(dtype=float, na_value=np.nan)
    if isinstance(reference, Mapping):
        missing = sorted(set(trials["task"]) - set(reference))
        if missing:
            raise PrunetaxError(f"`reference` has no value for the tasks {missing}; add them to the mapping.")
        return trials["task"].map(reference).to_numpy(dtype=float)
    return np.full(len(trials), float(reference))


def trial_metrics(
    trials: pd.DataFrame,
    steps: pd.DataFrame,
    drops: Sequence[float] = DEFAULT_DROPS,
    reference: float | Mapping[str, float] | None = None,
    *,
    upto: float = 100.0,
) -> pd.DataFrame:
    """Headline metrics of every trial, recomputed from its steps (SPEC §4).

    Parameters
    ----------
    trials
        One row per trial (:func:`analysis.frames.load_trials`; raw store rows work too).
    steps
        The ``steps`` rows (:func:`analysis.frames.load_steps`); rows of other trials are
        ignored.
    drops
        Accuracy drops (points) for the ``*_at_{d}`` columns.
    reference
        Reference accuracy (%): ``None`` = each trial's ``reference_acc``; a float for all
        trials; or a mapping ``task -> float``.
    upto
        Upper end of the AUC's sparsity range.

    Returns
    -------
    DataFrame
        One row per row of ``trials`` (same order), columns:

        - ``run_key`` and the identity columns ``task``, ``model``, ``dataset``,
          ``protocol``, ``signal``, ``sig_input``, ``sig_pointwise``, ``sig_reduction``,
          ``sig_scaling``, ``sig_class``, ``family``, ``alias``, ``seed``, ``base_seed``;
        - ``reference``: the reference accuracy used (%);
        - ``sparsity_at_{d}``: largest weight sparsity (%) within ``d`` points of the
          reference (first crossing, linearly interpolated; the last point if never);
        - ``macs_sparsity_at_{d}``: the same on the MACs-sparsity axis;
        - ``retrain_steps_at_{d}``: retraining steps summed over the steps at or below
          ``sparsity_at_{d}``;
        - ``auc``: area under the accuracy-sparsity curve over [0, ``upto``] / ``upto``;
        - ``final_sparsity``: sparsity of the last step; ``final_acc``: accuracy of the
          last evaluated step; ``n_steps``: the last step number.

        ``d`` is written with ``{:g}`` (``5`` -> ``sparsity_at_5``). Trials without any
        steps row get NaN metrics; trials without an evaluated step get the anchor only
        (``sparsity_at_d`` = 0, ``auc`` = reference).
    """
    trials = add_identity(trials).reset_index(drop=True)
    n = len(trials)
    ref = _references(trials, reference)
    cols = ("sparsity", "macs_sparsity", "test_acc", "retrain_steps")
    g, v = _sorted_steps(trials, steps, cols)
    x, acc = v["sparsity"], v["test_acc"]
    retrain = np.nan_to_num(v["retrain_steps"], nan=0.0)
    out = {c: trials.get(c, np.nan) for c in ("run_key", *IDENTITY)}
    out["reference"] = ref
    weights = _Curves(g, x, acc, ref)
    macs = _Curves(g, v["macs_sparsity"], acc, ref)
    for d in drops:
        s = weights.at_drop(float(d))
        out[f"sparsity_at_{_label(d)}"] = s
        out[f"macs_sparsity_at_{_label(d)}"] = macs.at_drop(float(d))
        within = x <= s[g] + 1e-9
        out[f"retrain_steps_at_{_label(d)}"] = np.bincount(g, weights=retrain * within, minlength=n)
    out["auc"] = weights.auc(upto)
    out.update(_final(g, v["step"], x, acc, n))
    frame = pd.DataFrame(out, index=trials.index)
    metric_cols = [c for c in frame if c not in ("run_key", *IDENTITY, "reference")]
    frame.loc[np.bincount(g, minlength=n) == 0, metric_cols] = np.nan
    return frame


def _sorted_steps(
    trials: pd.DataFrame, steps: pd.DataFrame, columns: Sequence[str]
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Trial index ``g`` (row of ``trials``) and float ``columns`` + ``step`` of the steps
    of those trials, sorted by (g, step); steps of other trials are dropped."""
    index = pd.Index(trials["run_key"])
    if not index.is_unique:
        raise PrunetaxError("`trials` must hold one row per run_key; deduplicate it (load_trials does).")
    codes, uniques = pd.factorize(steps["run_key"])  # hashing the few uniques is cheap
    lookup = np.append(index.get_indexer(uniques), -1)
    codes = lookup[codes]  # factorize's -1 (missing key) hits the appended -1
    keep = np.flatnonzero(codes >= 0)
    g = codes[keep].astype(np.int64)
    step = steps["step"].to_numpy(dtype=np.int64)[keep]
    if len(step):
        key = g * (int(step.max()) - int(step.min()) + 1) + (step - step.min())
        if np.any(key[1:] < key[:-1]):
            order = np.argsort(key, kind="stable")
            keep, g, step = keep[order], g[order], step[order]
    values = {c: steps[c].to_numpy(dtype=float, na_value=np.nan)[keep] for c in columns}
    values["step"] = step.astype(float)
    return g, values


def _final(g: np.ndarray, step: np.ndarray, x: np.ndarray, acc: np.ndarray, n: int) -> dict[str, np.ndarray]:
    """Last step, its sparsity and the last evaluated accuracy; ``g`` sorted by (g, step)."""
    final_sparsity, n_steps, final_acc = np.full(n, np.nan), np.full(n, np.nan), np.full(n, np.nan)
    last = np.flatnonzero(np.r_[g[1:] != g[:-1], True]) if len(g) else np.array([], int)
    final_sparsity[g[last]], n_steps[g[last]] = x[last], step[last]
    ev = np.flatnonzero(np.isfinite(acc))
    if ev.size:
        ge = g[ev]
        last_ev = ev[np.r_[ge[1:] != ge[:-1], True]]
        final_acc[g[last_ev]] = acc[last_ev]
    return {"final_sparsity": final_sparsity, "final_acc": final_acc, "n_steps": n_steps}


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
_TASK_IDENTITY = ("task", "model", "dataset", "protocol")


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
        Output of :func:`trial_metrics` (any frame with ``signal``, ``by`` and ``metric``).
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
        - block identity: ``task``, ``model``, ``dataset``, ``protocol`` when present and
          constant within every block (so dropped when ``by`` does not determine them);
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
    out = grouped["_v"].agg(n_seeds="count", mean="mean", std="std", min="min", max="max")
    geo = np.exp(grouped["_log"].mean()) - shift
    out.insert(1, "geomean", geo.where(~grouped["_bad"].any()))
    codes = grouped.ngroup().to_numpy()
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(len(out) + 1))
    ci = [
        bootstrap_ci(values[order[a:b]], stats[ci_stat], n_resamples, level, seed)
        for a, b in zip(bounds[:-1], bounds[1:], strict=True)
    ]
    out["ci_low"], out["ci_high"] = [c[0] for c in ci], [c[1] for c in ci]
    out = out.reset_index()
    ident = [c for c in _SIGNAL_IDENTITY if c in data and c not in keys]
    if ident:
        first = grouped[ident].first().reset_index(drop=True)
        out = pd.concat([out[keys], first, out.drop(columns=keys)], axis=1)
    block_ident = [c for c in _TASK_IDENTITY if c in data and c not in keys]
    if block_ident and by:
        per_block = data.groupby(by, dropna=False, observed=True)
        constant = [c for c in block_ident if (per_block[c].nunique(dropna=False) <= 1).all()]
        if constant:
            firsts = per_block[constant].first().reset_index()
            out = out.merge(firsts, on=by, how="left")
    out.insert(len(keys) + len(ident), "metric", metric)
    best_of = "max" if higher_is_better else "min"
    if by:
        blocks = out.groupby(by, dropna=False, observed=True)["geomean"]
        best = blocks.transform(best_of)
    else:
        blocks, best = out["geomean"], out["geomean"].agg(best_of)
    out["rank"] = blocks.rank(ascending=not higher_is_better, method="average")
    out["dist"] = (best - out["geomean"]) if higher_is_better else (out["geomean"] - best)
    lead = [*keys, *ident, *[c for c in _TASK_IDENTITY if c in out and c not in keys]]
    rest = [c for c in out if c not in lead]
    return out[lead + rest].sort_values([*by, "rank"], kind="stable").reset_index(drop=True)


def overall_ranking(summary: pd.DataFrame) -> pd.DataFrame:
    """Rank signals across blocks from :func:`summarise`'s output, best first.

    Returns
    -------
    DataFrame
        One row per ``signal``: ``overall_rank`` (1 = best, by ``mean_rank`` then
        ``mean_dist``), ``signal``, the signal identity columns present (``sig_input``,
        ``sig_pointwise``, ``sig_reduction``, ``sig_scaling``, ``sig_class``, ``family``,
        ``alias``), ``mean_rank`` (mean within-block rank), ``n_tasks`` (blocks where the
        signal has a rank), ``mean_dist`` (mean distance to the block's best),
        ``n_wins`` (blocks where it is the best or tied best) and ``mean_geomean``.
        Signals missing from some blocks are ranked over the blocks they have: compare
        ``n_tasks``, or summarise a complete set of signals.
    """
    ident = [c for c in _SIGNAL_IDENTITY if c in summary]
    data = summary.assign(_win=summary["dist"] == 0)
    g = data.groupby("signal", sort=True, observed=True)
    out = g.agg(
        mean_rank=("rank", "mean"),
        n_tasks=("rank", "count"),
        mean_dist=("dist", "mean"),
        n_wins=("_win", "sum"),
        mean_geomean=("geomean", "mean"),
    )
    if ident:
        out = g[ident].first().join(out)
    out = out.reset_index().sort_values(["mean_rank", "mean_dist"], kind="stable", na_position="last")
    out.insert(0, "overall_rank", np.arange(1, len(out) + 1))
    return out.reset_index(drop=True)


def curves(
    steps: pd.DataFrame,
    trials: pd.DataFrame,
    x: str = "sparsity",
    grid: Sequence[float] | np.ndarray | None = None,
    *,
    reference: float | Mapping[str, float] | None = None,
    hold: bool = False,
) -> pd.DataFrame:
    """Accuracy curves of every trial interpolated on one common ``x`` grid (tidy).

    Each curve is anchored at (0, reference), skips unevaluated steps and is linearly
    interpolated, as the headline metrics are; beyond its last point it is NaN (or held
    at the last value with ``hold=True``).

    Parameters
    ----------
    steps, trials
        As for :func:`trial_metrics`.
    x
        ``"sparsity"`` or ``"macs_sparsity"``.
    grid
        Points of the ``x`` axis (default ``0, 1, ..., 100``).
    reference
        As for :func:`trial_metrics`.
    hold
        Hold the last value beyond the last logged point instead of NaN.

    Returns
    -------
    DataFrame
        ``len(grid)`` rows per trial with steps: ``run_key``, the identity columns
        (``task``, ``model``, ``dataset``, ``protocol``, ``signal``, ``sig_*``,
        ``sig_class``, ``family``, ``alias``, ``seed``, ``base_seed``), ``reference``,
        the column named ``x`` (grid value), ``test_acc`` (interpolated, %) and
        ``acc_drop`` (reference - test_acc, points).
    """
    if x not in ("sparsity", "macs_sparsity"):
        raise PrunetaxError(f"`x` must be one of sparsity, macs_sparsity; got {x!r}.")
    grid = np.linspace(0.0, 100.0, 101) if grid is None else np.asarray(grid, dtype=float)
    trials = add_identity(trials).reset_index(drop=True)
    ref = _references(trials, reference)
    g, v = _sorted_steps(trials, steps, (x, "test_acc"))
    c = _Curves(g, v[x], v["test_acc"], ref)
    have = np.flatnonzero(np.bincount(g, minlength=len(trials)) > 0)
    lo = min(0.0, float(np.min(c.x, initial=0.0)), float(grid.min(initial=0.0)))
    width = max(float(np.max(c.x, initial=0.0)), float(grid.max(initial=0.0))) - lo + 1.0
    last_x = c.x[c.last[have]][:, None]
    query = np.minimum(grid[None, :], last_x)  # never past a curve's own last point
    values = np.full((len(have), len(grid)), np.nan)
    if len(have):
        flat = np.interp((query - lo + have[:, None] * width).ravel(), c.x - lo + c.g * width, c.y)
        values = flat.reshape(len(have), len(grid))
    outside = grid[None, :] < 0
    if not hold:
        outside = outside | (grid[None, :] > last_x)
    values[outside | ~np.isfinite(ref[have])[:, None]] = np.nan
    rows = np.repeat(have, len(grid))
    out = trials.loc[rows, [col for col in ("run_key", *IDENTITY) if col in trials]].reset_index(drop=True)
    out["reference"] = ref[rows]
    out[x] = np.tile(grid, len(have))
    out["test_acc"] = values.ravel()
    out["acc_drop"] = out["reference"] - out["test_acc"]
    return out
