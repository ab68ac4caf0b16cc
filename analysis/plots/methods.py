"""The taxonomy against the methods it cites: each method's headline in weights and in MACs,
with intervals, one panel per network."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from analysis.palette import style
from analysis.plots._base import new_figure, set_title

__all__ = ["method_headlines", "KIND_COLOURS"]

KIND_COLOURS = {
    "best taxonomy cell": "#332288",  # Tol muted indigo
    "literature alias": "#44AA99",  # teal
    "outside the taxonomy": "#CC6677",  # rose: references, voting, search protocols' signals
}
"""Colour of each kind of method (the table's ``kind`` column)."""

_NEEDED = ("network", "method", "kind", "w_geo", "w_low", "w_high", "m_geo", "m_low", "m_high")


def method_headlines(frame: pd.DataFrame, *, weights: str = "", macs: str = "", data: str = "") -> Figure:
    """Dots with 95 % whiskers: the weights headline (filled circle) and the MACs headline
    (open diamond) of every method, top to bottom in the frame's order, one panel per network;
    a dotted line marks each network's best taxonomy cell (weights).

    Parameters
    ----------
    frame : DataFrame
        One row per (network, method): ``network``, ``method`` (the row label), ``kind`` (a
        key of :data:`KIND_COLOURS`), ``w_geo``/``w_low``/``w_high`` and ``m_geo``/``m_low``/
        ``m_high`` (geomean over seeds and its interval, weights and MACs).
    weights, macs : str
        The two headlines in words (axis label).
    data : str
        The data the figure is about (second title line).
    """
    missing = [c for c in _NEEDED if c not in frame]
    if missing:
        raise ValueError(f"method_headlines: `frame` lacks columns {missing}")
    if frame.empty or not np.isfinite(frame["w_geo"].to_numpy(dtype=float)).any():
        raise ValueError("method_headlines: no method has a headline to draw")
    methods = list(dict.fromkeys(frame["method"]))
    networks = list(dict.fromkeys(frame["network"]))
    y = {m: i for i, m in enumerate(methods)}
    with style():
        fig = new_figure(4.2 * len(networks) + 3.5, 0.32 * len(methods) + 2.2)
        axes = np.atleast_1d(fig.subplots(1, len(networks), sharey=True, squeeze=False)).ravel()
        for ax, network in zip(axes, networks, strict=True):
            _panel(ax, frame[frame["network"] == network], y)
            ax.set_title(network, fontsize=11)
            ax.set_xlabel("sparsity (%)")
        axes[0].set_yticks(range(len(methods)), labels=methods)
        axes[0].set_ylim(len(methods) - 0.5, -0.5)
        fig.legend(handles=_legend(weights, macs), loc="outside lower center", ncols=3, frameon=False)
        set_title(fig, "Taxonomy vs the methods it cites: headline with 95 % intervals over seeds", data)
    return fig


def _panel(ax, part: pd.DataFrame, y: dict[str, int]) -> None:  # noqa: ANN001 - a matplotlib Axes
    rows = np.array([y[m] for m in part["method"]], dtype=float)
    colours = [KIND_COLOURS.get(k, "#555555") for k in part["kind"]]
    for offset, (geo, low, high), marker, fill in (
        (-0.14, ("w_geo", "w_low", "w_high"), "o", True),
        (0.14, ("m_geo", "m_low", "m_high"), "D", False),
    ):
        value = part[geo].to_numpy(dtype=float)
        err = np.vstack([value - part[low].to_numpy(dtype=float), part[high].to_numpy(dtype=float) - value])
        ax.errorbar(
            value,
            rows + offset,
            xerr=np.clip(np.nan_to_num(err), 0, None),
            fmt="none",
            ecolor="#333333",
            capsize=2,
            linewidth=0.9,
            zorder=2,
        )
        ax.scatter(
            value,
            rows + offset,
            marker=marker,
            s=30,
            zorder=3,
            linewidths=1.2,
            facecolors=colours if fill else "white",
            edgecolors=colours,
        )
    best = part.loc[part["kind"] == "best taxonomy cell", "w_geo"]
    if len(best) and np.isfinite(float(best.iloc[0])):
        ax.axvline(float(best.iloc[0]), color=KIND_COLOURS["best taxonomy cell"], linestyle=":", zorder=1)
    ax.grid(axis="y", visible=False)


def _legend(weights: str, macs: str) -> list[Line2D]:
    grey = "#333333"
    handles = [
        Line2D([], [], marker="o", linestyle="", color=grey, label=weights or "weights"),
        Line2D([], [], marker="D", linestyle="", color=grey, markerfacecolor="white", label=macs or "MACs"),
    ]
    handles += [
        Line2D([], [], marker="s", linestyle="", color=c, markersize=8, label=kind)
        for kind, c in KIND_COLOURS.items()
    ]
    return handles
