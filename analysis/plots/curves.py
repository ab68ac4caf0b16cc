"""Accuracy vs (weight or MAC) sparsity: mean line and seed band per signal, a panel per task."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from analysis.palette import signal_colours, style
from analysis.plots._base import line_styles, new_figure, set_title, signal_legend, unique_labels

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
    subset: str = "",
    labels: Mapping[str, str] | None = None,
) -> Figure:
    """Test accuracy against sparsity, one panel per task.

    Parameters
    ----------
    bands : DataFrame
        Tidy, already aggregated curves: one row per (task, signal, grid point) with
        columns ``task``, ``signal``, ``x`` (the grid, named by ``x``), ``mean`` (the line:
        mean accuracy over seeds, %), ``low``/``high`` (the band) and ``n`` (curves behind
        the point). The band is drawn only where ``n > 1``. An optional boolean ``drawn``
        marks signals drawn several times per seed (``random``): their line is the median
        over draws and their band the 10–90 % range (said in the legend).
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
    subset : str
        Which signals were chosen, when not all (title), e.g. ``"6 of 12 signals: ..."``.
    labels : mapping, optional
        Legend text of some signals (default: :func:`~analysis.plots.short_label`), e.g. when a
        line is a signal under one protocol label among others.
    """
    missing = [c for c in (*_BAND_COLUMNS, x) if c not in bands.columns]
    if missing:
        raise ValueError(f"accuracy_curves: `bands` lacks columns {missing}")
    signals = list(dict.fromkeys(order if order is not None else bands["signal"]))
    signals = [s for s in signals if s in set(bands["signal"])]
    tasks = list(dict.fromkeys(bands["task"]))
    styles, colours = line_styles(signals), signal_colours(signals)
    labels = {**unique_labels(signals), **{s: v for s, v in (labels or {}).items() if s in signals}}
    if "drawn" in bands:
        drawn = set(bands.loc[bands["drawn"].astype(bool), "signal"])
        labels = {s: f"{v} (median, 10–90 % of draws)" if s in drawn else v for s, v in labels.items()}
    ncols = max(1, min(col_wrap, len(tasks)))
    nrows = max(1, math.ceil(len(tasks) / ncols))
    with style():
        fig = new_figure(max(4.8 * ncols, 8.0), 3.6 * nrows + 0.6 + 0.25 * math.ceil(len(signals) / 4))
        axes = np.atleast_1d(fig.subplots(nrows, ncols, sharex=True, sharey=True, squeeze=False)).ravel()
        for ax, task in zip(axes, tasks, strict=False):
            _panel(ax, bands[bands["task"] == task], x, signals, styles, colours)
            ax.set_title(task, fontsize=11)
            ax.tick_params(labelbottom=True, labelleft=True)  # tick labels on every panel
        for ax in axes[len(tasks) :]:
            ax.set_visible(False)
        for i, ax in enumerate(axes[: len(tasks)]):
            if i + ncols >= len(tasks):  # nothing drawn below: this panel carries the x label
                ax.set_xlabel(X_LABELS.get(x, f"{x} (%)"))
            if i % ncols == 0:
                ax.set_ylabel("test accuracy (%)")
        reach = float(bands[x].max()) if len(bands) else 100.0
        axes[0].set_xlim(0, min(100.0, 10 * math.ceil(reach / 10 + 0.05)))  # room to the right, no void
        signal_legend(fig, signals, styles, labels, colours)
        seeds = int(bands["n"].max()) if len(bands) else 0
        band = f"line = mean over seeds, band = {band_label}" if seeds > 1 else "one seed, no band"
        what = "Test accuracy vs " + ("MAC sparsity" if x == "macs_sparsity" else "weight sparsity")
        set_title(fig, f"{what}{f' of {subset}' if subset else ''}\n{band}", data)
    return fig


def _panel(
    ax,
    frame: pd.DataFrame,
    x: str,
    signals: Sequence[str],
    styles: dict[str, object],
    colours: dict[str, str],
) -> None:
    groups = dict(tuple(frame.groupby("signal", sort=False)))
    for z, signal in enumerate(reversed(signals)):  # first in legend is drawn on top
        part = groups.get(signal)
        if part is None or part.empty:
            continue
        part = part.sort_values(x)
        colour = colours[signal]
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
