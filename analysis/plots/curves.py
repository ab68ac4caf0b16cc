"""Accuracy vs (weight or MAC) sparsity: mean line and seed band per signal, a panel per task."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from analysis.palette import family_colour, family_of, linestyle, style
from analysis.plots._base import new_figure, set_title, signal_handles, unique_labels

__all__ = ["accuracy_curves", "X_LABELS"]

X_LABELS = {
    "sparsity": "weight sparsity (% of conv + linear weights removed)",
    "macs_sparsity": "MAC sparsity (% of multiply-adds removed)",
}
_BAND_COLUMNS = ("task", "signal", "mean", "low", "high", "n")


def accuracy_curves(
    bands: pd.DataFrame,
    *,
    x: str = "sparsity",
    order: Sequence[str] | None = None,
    band_label: str = "min–max over seeds",
    data: str = "",
    col_wrap: int = 3,
) -> Figure:
    """Test accuracy against sparsity, one panel per task.

    Parameters
    ----------
    bands : DataFrame
        Tidy, already aggregated curves: one row per (task, signal, grid point) with
        columns ``task``, ``signal``, ``x`` (the grid, named by ``x``), ``mean`` (mean
        accuracy over seeds, %), ``low``/``high`` (the band) and ``n`` (seeds). The band is
        drawn only where ``n > 1``.
    x : str
        The grid column: ``sparsity`` or ``macs_sparsity``.
    order : sequence of str, optional
        Signals in legend order (default: order of appearance).
    band_label : str
        What the band is (shown in the title).
    data : str
        The data the figure is about (second title line).
    col_wrap : int
        Panels per row.
    """
    missing = [c for c in (*_BAND_COLUMNS, x) if c not in bands.columns]
    if missing:
        raise ValueError(f"accuracy_curves: `bands` lacks columns {missing}")
    signals = list(dict.fromkeys(order if order is not None else bands["signal"]))
    signals = [s for s in signals if s in set(bands["signal"])]
    tasks = list(dict.fromkeys(bands["task"]))
    styles = _styles(signals)
    labels = unique_labels(signals)
    ncols = max(1, min(col_wrap, len(tasks)))
    nrows = max(1, math.ceil(len(tasks) / ncols))
    with style():
        fig = new_figure(max(4.8 * ncols, 8.0), 3.6 * nrows + 0.6 + 0.25 * math.ceil(len(signals) / 4))
        axes = np.atleast_1d(fig.subplots(nrows, ncols, sharex=True, sharey=True, squeeze=False)).ravel()
        for ax, task in zip(axes, tasks, strict=False):
            _panel(ax, bands[bands["task"] == task], x, signals, styles)
            ax.set_title(task, fontsize=11)
        for ax in axes[len(tasks) :]:
            ax.set_visible(False)
        for i, ax in enumerate(axes[: len(tasks)]):
            if i + ncols >= len(tasks):  # nothing drawn below: this panel carries the x axis
                ax.xaxis.set_tick_params(labelbottom=True)
                ax.set_xlabel(X_LABELS.get(x, f"{x} (%)"))
            if i % ncols == 0:
                ax.set_ylabel("test accuracy (%)")
        reach = float(bands[x].max()) if len(bands) else 100.0
        axes[0].set_xlim(0, min(100.0, 10 * math.ceil(reach / 10 + 0.05)))  # room to the right, no void
        fig.legend(
            handles=signal_handles(signals, styles, labels),
            loc="outside lower center",
            ncols=min(4, max(1, len(signals))),
            title="signal (colour = pointwise family; line style and marker tell a family apart)",
            frameon=False,
        )
        seeds = int(bands["n"].max()) if len(bands) else 0
        band = f"mean over seeds, band = {band_label}" if seeds > 1 else "one seed, no band"
        what = "Test accuracy vs " + ("MAC sparsity" if x == "macs_sparsity" else "weight sparsity")
        set_title(fig, f"{what} — {band}", data)
    return fig


def _styles(signals: Sequence[str]) -> dict[str, object]:
    seen: dict[str, int] = {}
    styles = {}
    for s in signals:
        family = family_of(s)
        styles[s] = linestyle(s, seen.get(family, 0))
        seen[family] = seen.get(family, 0) + 1
    return styles


def _panel(ax, frame: pd.DataFrame, x: str, signals: Sequence[str], styles: dict[str, object]) -> None:
    groups = dict(tuple(frame.groupby("signal", sort=False)))
    for z, signal in enumerate(reversed(signals)):  # first in legend is drawn on top
        part = groups.get(signal)
        if part is None or part.empty:
            continue
        part = part.sort_values(x)
        colour = family_colour(family_of(signal))
        ax.plot(
            part[x], part["mean"], color=colour, markersize=5, markevery=0.1, zorder=3 + z, **styles[signal]
        )
        many = part["n"] > 1
        if many.any():
            ax.fill_between(
                part[x],
                part["low"],
                part["high"],
                where=many.to_numpy(),
                color=colour,
                alpha=0.12,
                linewidth=0,
                zorder=1,
            )
