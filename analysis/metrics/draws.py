"""Signals drawn several times per seed (the ``random`` reference): one value per seed for
rankings and tests, and the spread over draws for the tables.

One random trajectory per seed is useless as a baseline (three draws spanned 3.5-36.7 on
one task), so ``random`` runs R independent draws per repeat (``trials.draw`` = 0..R-1).
Rankings and tests treat a seed as the unit, so a seed's value is the **median over its
draws** (robust to one lucky or unlucky draw); the tables show the spread over all draws.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

__all__ = ["SEED_KEYS", "SPREAD", "collapse_draws", "draw_spread"]

SEED_KEYS = ("task", "signal", "base_seed", "seed")
"""One seed of one signal on one task: the draws of these keys are collapsed."""

SPREAD = (0.1, 0.9)
"""Quantiles of the band shown for drawn signals (the 10-90 % range over all draws)."""


def collapse_draws(metrics: pd.DataFrame, keys: Sequence[str] = SEED_KEYS) -> pd.DataFrame:
    """One row per seed: rows that share ``keys`` (several draws) become their median.

    Numeric metric columns take the median over the draws; every other column keeps the
    first draw's value (``run_key`` too), ``draw`` becomes 0 and ``n_draws`` counts the
    draws (1 for every row that had one). Row order: first appearance.
    """
    keys = [k for k in keys if k in metrics]
    data = metrics.reset_index(drop=True)
    group = data.groupby(keys, sort=False, dropna=False, observed=True).ngroup().to_numpy()
    sizes = np.bincount(group)
    multi = sizes[group] > 1
    out = data.assign(n_draws=1)
    if not multi.any():
        return out
    drawn = data[multi]
    numeric = [c for c in drawn.select_dtypes("number").columns if c not in (*keys, "draw")]
    by = drawn.groupby(keys, sort=False, dropna=False, observed=True)
    merged = by.first()
    merged[numeric] = by[numeric].median()
    merged["n_draws"] = by.size()
    merged = merged.reset_index()
    merged["draw"] = 0
    merged["_order"] = np.flatnonzero(multi)[np.unique(group[multi], return_index=True)[1]]
    single = out[~multi].assign(_order=np.flatnonzero(~multi))
    both = pd.concat([single, merged[[*single.columns]]], ignore_index=True)
    return both.sort_values("_order", kind="stable").drop(columns="_order").reset_index(drop=True)


def draw_spread(
    metrics: pd.DataFrame, metric: str, by: Sequence[str] = ("task",), quantiles: tuple = SPREAD
) -> pd.DataFrame:
    """The spread over every draw (all seeds pooled) of the signals drawn more than once
    per seed somewhere, per ``by`` block (``()``: all blocks pooled).

    Returns
    -------
    DataFrame
        The ``by`` columns, ``signal``, ``n_draws`` (draws in all), ``draw_median``,
        ``draw_low`` / ``draw_high`` (the ``quantiles``), ``draw_min`` and ``draw_max``.
        Empty when no signal has several draws per seed.
    """
    by = list(by)
    seeds = [k for k in SEED_KEYS if k in metrics]
    per_seed = metrics.groupby(seeds, dropna=False, observed=True)["signal"].transform("size")
    drawn = metrics[metrics["signal"].isin(metrics.loc[per_seed > 1, "signal"].unique())]
    columns = [*by, "signal", "n_draws", "draw_median", "draw_low", "draw_high", "draw_min", "draw_max"]
    if drawn.empty:
        return pd.DataFrame(columns=columns)
    values = drawn.groupby([*by, "signal"], observed=True)[metric]
    out = values.agg(n_draws="count", draw_median="median", draw_min="min", draw_max="max")
    out["draw_low"] = values.quantile(quantiles[0])
    out["draw_high"] = values.quantile(quantiles[1])
    return out.reset_index()[columns]
