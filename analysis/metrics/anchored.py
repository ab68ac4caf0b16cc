"""Many accuracy-sparsity curves at once, as the headline metrics and the plots read them.

Curves follow :mod:`study.curves`: anchored at (0, reference), steps without a test
evaluation skipped, linear interpolation between logged points. Doing this for every
trial at once with grouped numpy operations (rather than per trial) is what lets 2
million steps rows take a few seconds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from taxonomy.errors import PrunetaxError

__all__ = ["AnchoredCurves", "references", "sorted_steps"]


class AnchoredCurves:
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


def references(trials: pd.DataFrame, reference: float | Mapping[str, float] | None) -> np.ndarray:
    """Each trial's reference accuracy (%): its own ``reference_acc``, one float, or per task."""
    if reference is None:
        return trials["reference_acc"].to_numpy(dtype=float, na_value=np.nan)
    if isinstance(reference, Mapping):
        missing = sorted(set(trials["task"]) - set(reference))
        if missing:
            raise PrunetaxError(f"`reference` has no value for the tasks {missing}; add them to the mapping.")
        return trials["task"].map(reference).to_numpy(dtype=float)
    return np.full(len(trials), float(reference))


def sorted_steps(
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
