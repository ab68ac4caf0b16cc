"""Accuracy curves of every trial interpolated on one common sparsity grid.

A common grid is what lets seeds be averaged point by point (the report's bands) and
curves of different trials be drawn or compared directly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from analysis.frames import IDENTITY, add_identity
from analysis.metrics.anchored import AnchoredCurves, references, sorted_steps
from taxonomy.errors import PrunetaxError

__all__ = ["curves"]


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
        As for :func:`~analysis.metrics.trial_metrics`.
    x
        ``"sparsity"`` or ``"macs_sparsity"``.
    grid
        Points of the ``x`` axis (default ``0, 1, ..., 100``).
    reference
        As for :func:`~analysis.metrics.trial_metrics`.
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
    ref = references(trials, reference)
    g, v = sorted_steps(trials, steps, (x, "test_acc"))
    c = AnchoredCurves(g, v[x], v["test_acc"], ref)
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
