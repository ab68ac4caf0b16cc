"""Accuracy-sparsity curve metrics (SPEC §4), numpy only (``analysis`` reuses them).

A curve is anchored at (0, reference) and linearly interpolated between logged
points; steps without a test evaluation (NaN accuracy) are skipped.
"""

from __future__ import annotations

import numpy as np

__all__ = ["sparsity_at_drop", "curve_auc", "DROPS"]

DROPS = (1.0, 2.0, 5.0, 10.0)


def _points(x: np.ndarray, acc: np.ndarray, reference: float) -> tuple[np.ndarray, np.ndarray]:
    x, acc = np.asarray(x, dtype=float), np.asarray(acc, dtype=float)
    keep = np.isfinite(acc) & np.isfinite(x)
    order = np.argsort(x[keep], kind="stable")
    return (np.concatenate([[0.0], x[keep][order]]), np.concatenate([[reference], acc[keep][order]]))


def sparsity_at_drop(x: np.ndarray, acc: np.ndarray, reference: float, drop: float = 5.0) -> float:
    """Largest ``x`` (sparsity, %) up to which accuracy stays within ``drop`` points of
    ``reference``: the first crossing of ``reference - drop``, linearly interpolated; the
    last point if the curve never crosses."""
    xs, ys = _points(x, acc, reference)
    threshold = reference - drop
    below = np.nonzero(ys < threshold)[0]
    if below.size == 0:
        return float(xs[-1])
    k = int(below[0])
    if k == 0:
        return 0.0
    x0, y0, x1, y1 = xs[k - 1], ys[k - 1], xs[k], ys[k]
    return float(x0 + (y0 - threshold) * (x1 - x0) / (y0 - y1))


def curve_auc(x: np.ndarray, acc: np.ndarray, reference: float, upto: float = 100.0) -> float:
    """Area under the accuracy-sparsity curve over [0, upto], divided by ``upto`` (a mean
    accuracy in points); beyond the last point the curve is held at its last value."""
    xs, ys = _points(x, acc, reference)
    grid_x = np.concatenate([xs[xs < upto], [upto]])
    grid_y = np.interp(grid_x, xs, ys)
    return float(np.trapezoid(grid_y, grid_x) / upto)
