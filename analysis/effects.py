"""How much each component of a signal matters: main effects and two-way interactions.

A *cell* is one equivalence class of signals in one block (task): its trials' metric,
averaged over seeds, then over the class's members (so members of a class count once,
at the class representative's components). References are left out. A *matched set*
for a component is the cells of one block that agree on the other three components.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from functools import cache

import numpy as np
import pandas as pd

from analysis.frames import SIG_COLUMNS
from taxonomy.components import AXES
from taxonomy.errors import PrunetaxError
from taxonomy.spec import parse

__all__ = ["cells", "component_effects", "interaction", "COMPONENTS"]

COMPONENTS = tuple(AXES)
"""``("input", "pointwise", "reduction", "scaling")``: the component columns of :func:`cells`."""


@cache
def _components(sig_class: str) -> tuple[str, ...]:
    return tuple(c.id for c in parse(sig_class).components)


def cells(metrics: pd.DataFrame, metric: str, by: Sequence[str] = ("task",)) -> pd.DataFrame:
    """One row per (block, equivalence class) of taxonomy signals, references excluded.

    Returns
    -------
    DataFrame
        The ``by`` columns, ``sig_class``, ``input``, ``pointwise``, ``reduction``,
        ``scaling`` (the class representative's components), ``value`` (``metric``
        averaged over seeds per signal, then over the class's member signals present)
        and ``n_members`` (member signals present).
    """
    by = list(by)
    missing = [c for c in (*by, "signal", *SIG_COLUMNS, metric) if c not in metrics]
    if missing:
        raise PrunetaxError(f"`metrics` lacks the columns {missing}; pass trial_metrics' output.")
    data = metrics[metrics[list(SIG_COLUMNS)].notna().all(axis=1)]
    cls = data["sig_class"] if "sig_class" in data else data["signal"]
    data = data.assign(sig_class=cls.fillna(data["signal"]).astype(str))
    per_signal = data.groupby([*by, "sig_class", "signal"], observed=True)[metric].mean()
    out = per_signal.groupby(level=[*by, "sig_class"], observed=True).agg(["mean", "count"]).reset_index()
    out = out.rename(columns={"mean": "value", "count": "n_members"})
    comps = pd.DataFrame([_components(c) for c in out["sig_class"]], columns=COMPONENTS, index=out.index)
    return pd.concat([out[[*by, "sig_class"]], comps, out[["value", "n_members"]]], axis=1)


def _design(
    table: pd.DataFrame, component: str, by: list[str]
) -> tuple[np.ndarray, np.ndarray, list, np.ndarray]:
    """Matched sets x options matrix (NaN where missing), option labels, block of each set."""
    others = [c for c in COMPONENTS if c != component]
    order = [m.id for m in AXES[component]]
    options = [o for o in order if o in set(table[component])]
    sets = table.groupby([*by, *others], observed=True, sort=True).ngroup().to_numpy()
    col = pd.Index(options).get_indexer(table[component])
    y = np.full((sets.max() + 1 if len(sets) else 0, len(options)), np.nan)
    y[sets, col] = table["value"].to_numpy(dtype=float)
    block = (
        table.groupby(by, observed=True, sort=True).ngroup().to_numpy() if by else np.zeros(len(sets), int)
    )
    set_block = np.zeros(len(y), int)
    set_block[sets] = block
    return y, ~np.isnan(y), options, set_block


def _connected(mask: np.ndarray) -> bool:
    """Whether the options (columns) are linked through sets holding two or more of them."""
    k = mask.shape[1]
    link = (mask.T.astype(int) @ mask.astype(int)) > 0
    seen, frontier = {0}, [0]
    while frontier:
        i = frontier.pop()
        for j in np.flatnonzero(link[i]):
            if j not in seen:
                seen.add(int(j))
                frontier.append(int(j))
    return len(seen) == k


def _solve(y: np.ndarray, mask: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Least-squares option effects (sum zero) with set fixed effects, for each row of
    ``weights`` (resamples x sets); returns resamples x options."""
    n = mask.sum(axis=1)
    m = mask.astype(float)
    ybar = np.nansum(y, axis=1) / n
    resid = np.where(mask, y - ybar[:, None], 0.0)
    k = mask.shape[1]
    outer = (m[:, :, None] * m[:, None, :] / n[:, None, None]).reshape(len(m), k * k)
    a = np.einsum("bi,ij->bij", weights @ m, np.eye(k)) - (weights @ outer).reshape(-1, k, k)
    b = weights @ resid
    return (np.linalg.pinv(a + 1.0) @ b[:, :, None])[:, :, 0]


def component_effects(
    metrics: pd.DataFrame,
    metric: str = "sparsity_at_5",
    by: Sequence[str] = ("task",),
    *,
    n_resamples: int = 2000,
    level: float = 0.95,
    seed: int = 0,
    resample: str = "set",
) -> pd.DataFrame:
    """Main effect of every option of every component, from matched comparisons.

    For a component (say ``reduction``), cells (:func:`cells`) are grouped into matched
    sets that agree on the block and the other three components. The effect of option o
    is the mean over sets of (cell with o - mean of the set's cells): how much choosing o
    adds to the metric relative to the average option, everything else equal. When every
    set holds every option that is exactly the mean paired difference; as equivalence
    classes make some cells impossible (``hessian_gn``-``sum`` *is* ``taylor``-``l2``),
    sets are often incomplete, and the estimate is then the least-squares fit of
    ``value = set effect + option effect`` with option effects summing to 0, which stays
    exact for additive data and reduces to the paired mean for complete sets.

    Parameters
    ----------
    metrics
        One row per trial (:func:`analysis.metrics.trial_metrics`).
    metric
        Column to analyse (higher = better or not: effects are signed differences).
    by
        Columns of a block; sets never mix blocks.
    n_resamples, level, seed
        Percentile bootstrap of the effects.
    resample
        Bootstrap unit: ``"set"`` (matched sets, default) or ``"block"`` (whole blocks:
        honest about correlation within a task, but coarse with few tasks).

    Returns
    -------
    DataFrame
        One row per (component, option present), components in taxonomy order and
        options in their enum order: ``component``, ``option``, ``metric``, ``effect``,
        ``ci_low``, ``ci_high``, ``n_pairs`` (matched sets holding this option and at
        least one other), ``n_cells`` (cells with this option) and ``mean`` (raw mean of
        those cells, for reference). Options in no matched set get NaN effects; when the
        options of a component are not linked through shared sets the whole component
        gets NaN (with a warning).
    """
    if resample not in ("set", "block"):
        raise PrunetaxError(f"`resample` must be one of set, block; got {resample!r}.")
    by = list(by)
    table = cells(metrics, metric, by)
    rng = np.random.default_rng(seed)
    rows = []
    for component in COMPONENTS:
        if table.empty:
            break
        y, mask, options, set_block = _design(table, component, by)
        n_pairs = (mask & (mask.sum(axis=1) >= 2)[:, None]).sum(axis=0)
        est = np.full(len(options), np.nan)
        ci = np.full((2, len(options)), np.nan)
        use = np.flatnonzero(n_pairs > 0)
        if len(use) >= 2:
            ys, ms = y[:, use], mask[:, use]
            keep = ms.sum(axis=1) >= 2
            ys, ms, blocks = ys[keep], ms[keep], set_block[keep]
            if _connected(ms):
                est[use] = _solve(ys, ms, np.ones((1, len(ys))))[0]
                boot = _bootstrap(ys, ms, blocks, resample, n_resamples, rng)
                ci[:, use] = np.nanquantile(boot, [(1 - level) / 2, (1 + level) / 2], axis=0)
            else:
                warnings.warn(
                    f"the options of `{component}` are not linked through matched sets; "
                    "its effects are left NaN.",
                    stacklevel=2,
                )
        raw = table.groupby(component, observed=True)["value"].agg(["mean", "count"])
        for i, option in enumerate(options):
            rows.append(
                (component, option, metric, est[i], ci[0, i], ci[1, i], int(n_pairs[i]))
                + (int(raw.loc[option, "count"]), float(raw.loc[option, "mean"]))
            )
    columns = ["component", "option", "metric", "effect", "ci_low", "ci_high", "n_pairs", "n_cells", "mean"]
    return pd.DataFrame(rows, columns=columns)


def _bootstrap(
    y: np.ndarray, mask: np.ndarray, blocks: np.ndarray, resample: str, n: int, rng: np.random.Generator
) -> np.ndarray:
    units = blocks if resample == "block" else np.arange(len(y))
    n_units = int(units.max()) + 1
    out = []
    for start in range(0, n, 250):
        size = min(250, n - start)
        draws = rng.multinomial(n_units, np.full(n_units, 1 / n_units), size=size).astype(float)
        out.append(_solve(y, mask, draws[:, units]))
    return np.concatenate(out) if out else np.empty((0, mask.shape[1]))


def interaction(
    metrics: pd.DataFrame,
    metric: str = "sparsity_at_5",
    a: str = "reduction",
    b: str = "scaling",
    *,
    by: Sequence[str] = ("task",),
    tidy: bool = False,
) -> pd.DataFrame:
    """Two-way table of ``metric`` by components ``a`` x ``b``, over the other components.

    Cells (:func:`cells`, classes counted once, references excluded) are averaged per
    (block, a, b) over the other two components present, then over blocks. Means over
    the cells present: with an incomplete grid, compare with :func:`component_effects`.

    Returns
    -------
    DataFrame
        ``tidy=False``: rows = options of ``a``, columns = options of ``b`` (enum order),
        values = the mean. ``tidy=True``: one row per (a, b) present with columns ``a``'s
        and ``b``'s names, ``mean``, ``n_cells`` (cells averaged, all blocks),
        ``n_blocks`` and ``interaction`` (mean - row mean - column mean + grand mean of
        the table; 0 everywhere when the two components act additively).
    """
    for name in (a, b):
        if name not in COMPONENTS:
            raise PrunetaxError(f"`a` and `b` must be among {', '.join(COMPONENTS)}; got {name!r}.")
    if a == b:
        raise PrunetaxError(f"`a` and `b` must differ; got {a!r} twice.")
    by = list(by)
    table = cells(metrics, metric, by)
    per_block = table.groupby([*by, a, b], observed=True)["value"].agg(["mean", "count"]).reset_index()
    tidy_frame = (
        per_block.groupby([a, b], observed=True)
        .agg(mean=("mean", "mean"), n_cells=("count", "sum"), n_blocks=("mean", "count"))
        .reset_index()
    )
    order = {c: [m.id for m in AXES[c]] for c in (a, b)}
    wide = tidy_frame.pivot(index=a, columns=b, values="mean")
    wide = wide.reindex(
        index=[o for o in order[a] if o in wide.index], columns=[o for o in order[b] if o in wide.columns]
    )
    if not tidy:
        return wide
    rows, cols = wide.mean(axis=1), wide.mean(axis=0)
    grand = float(np.nanmean(wide.to_numpy())) if wide.size else np.nan
    resid = tidy_frame["mean"] - tidy_frame[a].map(rows) - tidy_frame[b].map(cols) + grand
    tidy_frame["interaction"] = resid.to_numpy(dtype=float)
    rank = {c: {o: i for i, o in enumerate(order[c])} for c in (a, b)}
    keys = [tidy_frame[a].map(rank[a]), tidy_frame[b].map(rank[b])]
    return tidy_frame.iloc[np.lexsort((keys[1].to_numpy(), keys[0].to_numpy()))].reset_index(drop=True)
