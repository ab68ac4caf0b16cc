"""How well each signal's unit ranking matches the oracle's (Molchanov et al.; SPEC §5).

Both rank units the same way round: a low ``score`` is pruned first and a low oracle
``loss_change`` is the least important unit, so a perfect signal correlates +1.
Correlations are computed over all units (``scope="global"``) and within each layer
(``scope=<layer>``): the first is what a global pruning loop sees, the second isolates
the pointwise/reduction choice from the cross-layer scaling.

The ``scores`` and ``oracle`` tables may hold several ``step`` values: step 0 (or null) is
the unpruned network, step k the network after the oracle's own k-th greedy prune (scored
over the units still active then). Every step is correlated separately, which shows
whether a signal's agreement with the oracle decays as pruning proceeds.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd

from analysis.metrics import bootstrap_ci
from taxonomy.errors import PrunetaxError

__all__ = ["rank_quality", "rank_quality_summary", "rank_quality_by_step", "rank_similarity", "with_step"]

_IDS = ["model", "dataset", "base_seed", "seed"]


def with_step(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with an integer ``step`` column: null or missing = 0 (the unpruned network)."""
    step = frame["step"] if "step" in frame else pd.Series(0, index=frame.index)
    return frame.assign(step=pd.to_numeric(step, errors="coerce").fillna(0).astype("int64"))


def _merge(scores: pd.DataFrame, oracle: pd.DataFrame) -> pd.DataFrame:
    if "level" in scores:
        scores = scores[scores["level"] == "unit"]
    scores = with_step(scores)
    right = with_step(oracle)[["run_key", *_IDS, "step", "unit", "layer", "loss_change"]]
    right = right.rename(columns={"layer": "_oracle_layer"})
    # a rank-quality job writes its scores and its oracle under one run_key
    if set(scores["run_key"].unique()) & set(right["run_key"].unique()):
        merged = scores.merge(right.drop(columns=_IDS), on=["run_key", "step", "unit"], how="inner")
    else:
        merged = scores.merge(right.drop(columns="run_key"), on=[*_IDS, "step", "unit"], how="inner")
    merged["layer"] = merged["layer"].astype(object).fillna(merged["_oracle_layer"])
    return merged.drop(columns="_oracle_layer")


def _runs(g: np.ndarray, *keys: np.ndarray, n_groups: int) -> np.ndarray:
    """Per group, the number of pairs tied on all ``keys`` (rows sorted so ties are adjacent)."""
    change = np.ones(len(g), bool)
    change[1:] = g[1:] != g[:-1]
    for k in keys:
        change[1:] |= k[1:] != k[:-1]
    starts = np.flatnonzero(change)
    t = np.diff(np.r_[starts, len(g)]).astype(float)
    return np.bincount(g[starts], t * (t - 1) / 2, n_groups)


def _kendall_tau_b(codes: np.ndarray, x: np.ndarray, y: np.ndarray, n_groups: int) -> np.ndarray:
    """Kendall's tau-b per group, as ``scipy.stats.kendalltau`` computes it, for all groups at once.

    tau-b = (tot - xtie - ytie + ntie - 2 dis) / sqrt((tot - xtie)(tot - ytie)), where dis
    = strict inversions of y after sorting by (x, y); inversions are counted by merging
    blocks of doubling size, with one sort and two binary searches per level.
    """
    order = np.lexsort((y, codes))
    g, ys = codes[order], y[order]
    ytie = _runs(g, ys, n_groups=n_groups)
    new = np.ones(len(g), bool)
    new[1:] = (g[1:] != g[:-1]) | (ys[1:] != ys[:-1])
    dense = np.empty(len(g), np.int64)
    dense[order] = np.cumsum(new) - 1  # dense rank of y, increasing across groups too
    order = np.lexsort((y, x, codes))
    g, xs, ys, v = codes[order], x[order], y[order], dense[order]
    xtie = _runs(g, xs, n_groups=n_groups)
    ntie = _runs(g, xs, ys, n_groups=n_groups)
    n = np.bincount(g, minlength=n_groups)
    start = np.r_[0, np.cumsum(n)[:-1]]
    pos = np.arange(len(g)) - start[g]
    big = int(v.max()) + 1 if len(v) else 1
    dis = np.zeros(n_groups)
    size = 1
    while size < (n.max() if len(n) else 0):
        left = (pos // size) % 2 == 0
        pid = start[g] + (pos // (2 * size)) * 2 * size  # first position of the block pair
        keys = np.sort(pid[left] * big + v[left])
        base = pid[~left] * big
        above = np.searchsorted(keys, base + big, "left") - np.searchsorted(keys, base + v[~left], "right")
        dis += np.bincount(g[~left], above, n_groups)
        size *= 2
    tot = n * (n - 1) / 2.0
    with np.errstate(divide="ignore", invalid="ignore"):
        tau = (tot - xtie - ytie + ntie - 2 * dis) / np.sqrt((tot - xtie) * (tot - ytie))
    return np.where(np.isfinite(tau), np.clip(tau, -1.0, 1.0), np.nan)


def _spearman(codes: np.ndarray, score: np.ndarray, loss: np.ndarray, n_groups: int) -> np.ndarray:
    """Pearson correlation of within-group average ranks (= ``scipy.stats.spearmanr``)."""
    rs = pd.Series(score).groupby(codes).rank(method="average").to_numpy()
    ro = pd.Series(loss).groupby(codes).rank(method="average").to_numpy()
    n = np.bincount(codes, minlength=n_groups).astype(float)
    centre = ((n + 1) / 2)[codes]  # the mean of average ranks, exactly
    rs, ro = rs - centre, ro - centre
    cov = np.bincount(codes, rs * ro, n_groups)
    var = np.bincount(codes, rs * rs, n_groups) * np.bincount(codes, ro * ro, n_groups)
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = np.where((var > 0) & (n >= 2), cov / np.sqrt(var), np.nan)
    return np.clip(rho, -1.0, 1.0)


def rank_quality(scores: pd.DataFrame, oracle: pd.DataFrame, *, kendall: bool = True) -> pd.DataFrame:
    """Spearman and Kendall correlation of every signal's unit scores with the oracle.

    Parameters
    ----------
    scores, oracle
        :func:`analysis.frames.load_rank_tables`. Units are matched on (``run_key``,
        ``unit``), or on (model, dataset, base_seed, seed, unit) when the two tables
        share no run_key; units with a NaN score or loss change are dropped.
    kendall
        Compute Kendall's tau (``False`` leaves it NaN). Both correlations are computed
        for all rows at once (O(N log^2 N)); tests check them against scipy.

    Returns
    -------
    DataFrame
        One row per (``run_key``, ``signal``, ``step``, ``scope``), the ``rank_quality``
        schema's columns: ``run_key``, ``model``, ``dataset``, ``base_seed``, ``seed``,
        ``signal``, ``scope`` (``"global"`` or a layer name), ``spearman`` (equal to
        ``scipy.stats.spearmanr``), ``kendall`` (equal to ``scipy.stats.kendalltau``'s tau-b),
        ``n_units`` and ``step`` (0 = unpruned; units are matched within a step).
        Correlations are NaN with fewer than 2 units or constant scores.
    """
    merged = _merge(scores, oracle)
    merged = merged[np.isfinite(merged["score"].to_numpy(dtype=float, na_value=np.nan))]
    merged = merged[np.isfinite(merged["loss_change"].to_numpy(dtype=float, na_value=np.nan))]
    parts = [merged.assign(scope="global"), merged.assign(scope=merged["layer"].astype(str))]
    data = pd.concat(parts, ignore_index=True)
    keys = ["run_key", "signal", "step", "scope"]
    codes = data.groupby(keys, sort=True, observed=True).ngroup().to_numpy()
    n_groups = int(codes.max()) + 1 if len(codes) else 0
    order = np.argsort(codes, kind="stable")
    codes = codes[order]
    bounds = np.searchsorted(codes, np.arange(n_groups + 1))
    score = data["score"].to_numpy(dtype=float)[order]
    loss = data["loss_change"].to_numpy(dtype=float)[order]
    first = data.iloc[order[bounds[:-1]]][["run_key", *_IDS, "signal", "scope"]].reset_index(drop=True)
    first["spearman"] = _spearman(codes, score, loss, n_groups)
    first["kendall"] = _kendall_tau_b(codes, score, loss, n_groups) if kendall else np.nan
    first["n_units"] = np.diff(bounds)
    first["step"] = data["step"].to_numpy()[order[bounds[:-1]]]
    first["_layer"] = first["scope"] != "global"
    first = first.sort_values(["run_key", "signal", "step", "_layer", "scope"], kind="stable")
    return first.drop(columns="_layer").reset_index(drop=True)


def rank_quality_summary(
    rq: pd.DataFrame,
    scope: str | None = "global",
    *,
    step: int | None = 0,
    n_resamples: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """Mean rank quality over seeds per (model, dataset, signal) with bootstrap intervals.

    Parameters
    ----------
    rq
        Output of :func:`rank_quality`.
    scope
        ``"global"`` (default): the global correlations; ``"layers"``: each seed's mean
        over its layers; ``None``: every scope separately.
    step
        The oracle-trajectory step to summarise (default 0, the unpruned network); ``None``
        pools every step (see :func:`rank_quality_by_step` for one row per step).
    n_resamples, level, seed
        Of :func:`analysis.metrics.bootstrap_ci` (percentile bootstrap over seeds).

    Returns
    -------
    DataFrame
        ``model``, ``dataset``, ``signal``, ``scope``, ``n_seeds``, ``spearman``,
        ``spearman_ci_low``, ``spearman_ci_high``, ``kendall``, ``kendall_ci_low``,
        ``kendall_ci_high`` (means over seeds) and ``n_units`` (mean units per
        correlation); sorted by model, dataset and descending ``spearman``.
    """
    rq = with_step(rq)
    if step is not None:
        rq = rq[rq["step"] == int(step)]
    if scope == "global":
        data = rq[rq["scope"] == "global"]
    elif scope == "layers":
        layers = rq[rq["scope"] != "global"]
        data = (
            layers.groupby(["run_key", *_IDS, "signal"], observed=True)[["spearman", "kendall", "n_units"]]
            .mean()
            .reset_index()
            .assign(scope="layers")
        )
    elif scope is None:
        data = rq
    else:
        raise PrunetaxError(f"`scope` must be one of 'global', 'layers', None; got {scope!r}.")
    keys = ["model", "dataset", "signal", "scope"]
    rows = []
    for key, part in data.groupby(keys, observed=True, sort=True):
        row = dict(zip(keys, key, strict=True))
        row["n_seeds"] = int(part["spearman"].notna().sum())
        for col in ("spearman", "kendall"):
            values = part[col].to_numpy(dtype=float)
            row[col] = float(np.nanmean(values)) if np.isfinite(values).any() else np.nan
            row[f"{col}_ci_low"], row[f"{col}_ci_high"] = bootstrap_ci(
                values, np.mean, n_resamples, level, seed
            )
        row["n_units"] = float(part["n_units"].mean())
        rows.append(row)
    columns = [*keys, "n_seeds"]
    columns += [f"{c}{s}" for c in ("spearman", "kendall") for s in ("", "_ci_low", "_ci_high")]
    out = pd.DataFrame(rows, columns=[*columns, "n_units"])
    return out.sort_values(["model", "dataset", "spearman"], ascending=[True, True, False]).reset_index(
        drop=True
    )


def rank_quality_by_step(rq: pd.DataFrame, scope: str = "global") -> pd.DataFrame:
    """Mean correlation with the oracle over seeds at every step of the oracle's trajectory.

    Returns
    -------
    DataFrame
        One row per (``model``, ``dataset``, ``signal``, ``step``): ``spearman`` and
        ``kendall`` (means over seeds, NaN-skipping), ``n_seeds`` (seeds with a Spearman
        value) and ``n_units`` (mean units active at that step), sorted by model, dataset,
        signal, step.
    """
    data = with_step(rq)
    data = data[data["scope"] == scope]
    keys = ["model", "dataset", "signal", "step"]
    grouped = data.groupby(keys, observed=True, sort=True)
    out = grouped[["spearman", "kendall", "n_units"]].mean()
    out.insert(2, "n_seeds", grouped["spearman"].count())
    return out.reset_index()


def rank_similarity(
    scores: pd.DataFrame,
    method: str = "spearman",
    signals: Sequence[str] | None = None,
    *,
    step: int | None = 0,
) -> pd.DataFrame:
    """Signal x signal correlation of unit rankings, averaged over rank-quality runs.

    For every ``run_key`` (one model, dataset, base seed and seed) the units are ranked
    by each signal and the rankings correlated; the matrices are averaged (NaN-skipping)
    over run_keys. Units missing a score for some signal are dropped within that run.
    Only the scores of oracle-trajectory step ``step`` are used (default 0, the unpruned
    network; ``None``: each (run_key, step) is a run of its own).

    Returns
    -------
    DataFrame
        Square, indexed and columned by signal (sorted, or ``signals``' order);
        ``attrs["n_runs"]`` holds the number of runs averaged.
    """
    if method not in ("spearman", "kendall", "pearson"):
        raise PrunetaxError(f"`method` must be one of spearman, kendall, pearson; got {method!r}.")
    if "level" in scores:
        scores = scores[scores["level"] == "unit"]
    scores = with_step(scores)
    if step is not None:
        scores = scores[scores["step"] == int(step)]
    names = sorted(scores["signal"].unique()) if signals is None else list(signals)
    mats = []
    for _, part in scores.groupby(["run_key", "step"], observed=True, sort=True):
        wide = part.pivot_table(index="unit", columns="signal", values="score", aggfunc="mean")
        wide = wide.reindex(columns=names).dropna(axis=0, how="any")
        if len(wide) < 2:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if method == "spearman":
                corr = np.corrcoef(wide.rank(axis=0).to_numpy(), rowvar=False)
            else:
                corr = wide.corr(method=method).to_numpy()
        mats.append(np.atleast_2d(corr))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(np.stack(mats), axis=0) if mats else np.full((len(names), len(names)), np.nan)
    out = pd.DataFrame(mean, index=pd.Index(names, name="signal"), columns=pd.Index(names, name="signal"))
    out.attrs["n_runs"] = len(mats)
    return out
