"""Rank quality along the oracle's own pruning trajectory: correlation with the oracle per step."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from analysis.palette import signal_colours, style
from analysis.plots._base import line_styles, new_figure, set_title, signal_legend, unique_labels

__all__ = ["rank_quality_steps"]


def rank_quality_steps(
    by_step: pd.DataFrame,
    *,
    signals: Sequence[str] | None = None,
    measure: str = "spearman",
    data: str = "",
    col_wrap: int = 3,
) -> Figure:
    """Correlation of each signal's unit ranking with the oracle's, at every step of the
    oracle's trajectory, one panel per model/dataset.

    Parameters
    ----------
    by_step : DataFrame
        :func:`analysis.rank_quality.rank_quality_by_step`: ``model``, ``dataset``,
        ``signal``, ``step`` and the ``measure`` column (mean over seeds).
    signals : sequence of str, optional
        The signals to draw, in legend order (default: all, sorted).
    measure : str
        ``spearman`` or ``kendall``.
    data : str
        The data the figure is about (second title line).
    """
    missing = [c for c in ("model", "dataset", "signal", "step", measure) if c not in by_step]
    if missing:
        raise ValueError(f"rank_quality_steps: `by_step` lacks columns {missing}")
    if by_step["step"].nunique() < 2:
        raise ValueError("rank_quality_steps: one step only (the unpruned network): nothing to follow")
    order = list(signals) if signals is not None else sorted(by_step["signal"].unique())
    order = [s for s in dict.fromkeys(order) if s in set(by_step["signal"])]
    keys = list(by_step.groupby(["model", "dataset"], sort=True).groups)
    styles, colours, labels = line_styles(order), signal_colours(order), unique_labels(order)
    ncols = max(1, min(col_wrap, len(keys)))
    nrows = math.ceil(len(keys) / ncols)
    name = "Spearman ρ" if measure == "spearman" else "Kendall τ"
    with style():
        fig = new_figure(max(4.8 * ncols, 8.0), 3.6 * nrows + 0.8 + 0.25 * math.ceil(len(order) / 4))
        axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
        for ax, (model, dataset) in zip(axes, keys, strict=False):
            part = by_step[(by_step["model"] == model) & (by_step["dataset"] == dataset)]
            for signal in reversed(order):
                line = part[part["signal"] == signal].sort_values("step")
                if len(line):
                    look = dict(color=colours[signal], markersize=5, **styles[signal])
                    ax.plot(line["step"], line[measure], **look)
            ax.axhline(0, color="black", linewidth=0.8, zorder=1)
            ax.set_title(f"{model}/{dataset}", fontsize=11)
            ax.set_xlabel("oracle step (units pruned by the oracle so far)")
            ax.set_ylabel(f"{name} with the oracle")
        for ax in axes[len(keys) :]:
            ax.set_visible(False)
        signal_legend(fig, order, styles, labels, colours)
        what = f"Agreement with the oracle along its own trajectory: {name} of {len(order)} signals"
        set_title(fig, what, data)
    return fig
