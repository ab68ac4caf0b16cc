"""Headline metrics of every trial, recomputed from its steps (SPEC §4).

Recomputing from the steps rather than storing the numbers with the trial means that
changing the drops or the reference accuracy needs no new trials.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from analysis.frames import IDENTITY, add_identity
from analysis.metrics.anchored import AnchoredCurves, references, sorted_steps
from study.curves import DROPS

__all__ = ["trial_metrics", "DEFAULT_DROPS"]

DEFAULT_DROPS = DROPS
"""The SPEC §4 drops (1, 2, 5 and 10 points), from :mod:`study.curves`."""


def _label(drop: float) -> str:
    """A drop as it appears in a column name (``5`` -> ``5``, ``2.5`` -> ``2.5``)."""
    return f"{float(drop):g}"


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
    ref = references(trials, reference)
    cols = ("sparsity", "macs_sparsity", "test_acc", "retrain_steps")
    g, v = sorted_steps(trials, steps, cols)
    x, acc = v["sparsity"], v["test_acc"]
    retrain = np.nan_to_num(v["retrain_steps"], nan=0.0)
    out = {c: trials.get(c, np.nan) for c in ("run_key", *IDENTITY)}
    out["reference"] = ref
    weights = AnchoredCurves(g, x, acc, ref)
    macs = AnchoredCurves(g, v["macs_sparsity"], acc, ref)
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
