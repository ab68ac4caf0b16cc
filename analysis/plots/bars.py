"""Bar charts with intervals: component effects and oracle rank correlations."""

from __future__ import annotations

from collections.abc import Collection, Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from analysis.palette import FAMILIES, family_colour, family_of, style
from analysis.plots._base import new_figure, set_title, unique_labels
from analysis.plots.heatmaps import AXIS_ORDER

__all__ = ["component_effect_bars", "oracle_correlation_bars"]

_NEUTRAL = "#4477AA"  # Tol bright blue: options of input/reduction/scaling (not families)
_COMPONENTS = ("input", "pointwise", "reduction", "scaling")


def component_effect_bars(
    effects: pd.DataFrame,
    *,
    unit: str = "percentage points of sparsity at 5-point drop",
    data: str = "",
) -> Figure:
    """One panel per component: each option's effect with its 95 % interval, zero line.

    Parameters
    ----------
    effects : DataFrame
        Columns ``component``, ``option``, ``effect``, ``ci_low``, ``ci_high`` (and
        optionally ``n_pairs``), as from :func:`analysis.effects.component_effects`.
        Options without an estimate (NaN) are left out; a component with none gets a
        panel that says it is not estimable.
    unit : str
        What an effect is measured in (x-axis label).
    data : str
        The data the figure is about (second title line).
    """
    missing = [c for c in ("component", "option", "effect", "ci_low", "ci_high") if c not in effects]
    if missing:
        raise ValueError(f"component_effect_bars: `effects` lacks columns {missing}")
    present = list(dict.fromkeys(effects["component"]))
    components = [c for c in _COMPONENTS if c in present] + [c for c in present if c not in _COMPONENTS]
    finite = effects[np.isfinite(effects["effect"].to_numpy(dtype=float))]
    if finite.empty:
        raise ValueError("component_effect_bars: no finite effect to draw (no matched sets)")
    parts = {c: _ordered(finite[finite["component"] == c], c) for c in components}
    heights = [max(len(p), 1) for p in parts.values()]
    with style():
        fig = new_figure(9.0, 0.36 * sum(heights) + 1.0 * len(components) + 1.2)
        axes = np.atleast_1d(fig.subplots(len(components), 1, sharex=True, height_ratios=heights)).ravel()
        for ax, (component, part) in zip(axes, parts.items(), strict=True):
            ax.set_ylabel(component, fontsize=11, fontweight="bold")
            ax.tick_params(labelbottom=True)  # tick labels on every panel, not only the last
            ax.axvline(0, color="black", linewidth=1.0, zorder=1)
            ax.grid(axis="y", visible=False)
            if part.empty:  # every option NaN: say so instead of dropping the component
                ax.set_yticks([])
                ax.text(
                    0.5,
                    0.5,
                    "not estimable: no matched sets link its options",
                    transform=ax.transAxes,
                    ha="center",
                    va="center",
                    fontsize=10,
                    style="italic",
                    color="#555555",
                    bbox={"facecolor": "white", "edgecolor": "none", "pad": 3},
                    zorder=4,
                )
                continue
            y = np.arange(len(part))
            colours = [
                family_colour(o) if component == "pointwise" else _NEUTRAL for o in part["option"].astype(str)
            ]
            ax.barh(y, part["effect"], color=colours, height=0.65, zorder=2)
            _whiskers(ax, y, part["effect"], part["ci_low"], part["ci_high"], capsize=3, linewidth=1.1)
            ax.set_yticks(y, labels=[_option_label(part, i) for i in range(len(part))])
            ax.set_ylim(len(part) - 0.5, -0.5)
        axes[-1].set_xlabel(f"effect: {unit}\nwhiskers = 95 % interval")
        set_title(fig, "Component effects: each option vs the others, other components held fixed", data)
    return fig


def _whiskers(ax, y, value, low, high, *, capsize: float, linewidth: float) -> None:  # noqa: ANN001
    """Black interval whiskers on horizontal bars; a missing bound draws no whisker."""
    err = np.vstack([value - low, high - value])
    ax.errorbar(
        value,
        y,
        xerr=np.clip(np.nan_to_num(err), 0, None),
        fmt="none",
        ecolor="black",
        capsize=capsize,
        linewidth=linewidth,
        zorder=3,
    )


def _ordered(part: pd.DataFrame, component: str) -> pd.DataFrame:
    known = AXIS_ORDER.get(component, ())
    rank = {o: i for i, o in enumerate(known)}
    key = part["option"].map(lambda o: rank.get(o, len(rank)))
    return part.assign(_k=key).sort_values(["_k", "option"]).drop(columns="_k").reset_index(drop=True)


def _option_label(part: pd.DataFrame, i: int) -> str:
    row = part.iloc[i]
    if "n_pairs" in part and pd.notna(row["n_pairs"]):
        return f"{row['option']} (n={int(row['n_pairs'])})"
    return str(row["option"])


def _correlation_panel(ax: Axes, y: np.ndarray, part: pd.DataFrame, fills: list, edges: list) -> None:
    """One measure's bars with their interval whiskers, a zero line and room for negatives."""
    ax.barh(
        y,
        np.nan_to_num(part["value"].to_numpy(dtype=float)),
        color=fills,
        edgecolor=edges,
        linewidth=0.8,
        height=0.7,
        zorder=2,
    )
    _whiskers(ax, y, part["value"], part["ci_low"], part["ci_high"], capsize=2, linewidth=0.9)
    ax.axvline(0, color="black", linewidth=1.0, zorder=1)
    ax.set_xlim(min(-0.1, float(np.nanmin(part["ci_low"].to_numpy(dtype=float), initial=0)) - 0.05), 1.0)
    ax.set_xlabel("rank correlation (1 = oracle's order)")
    ax.grid(axis="y", visible=False)


def oracle_correlation_bars(
    quality: pd.DataFrame,
    *,
    highlight: Collection[str] = (),
    order: Sequence[str] | None = None,
    total: int | None = None,
    data: str = "",
) -> Figure:
    """Spearman and Kendall correlation of each signal's ranking with the oracle.

    Parameters
    ----------
    quality : DataFrame
        Long: one row per (signal, measure) with columns ``signal``, ``measure``
        (``spearman``/``kendall``), ``value``, ``ci_low``, ``ci_high``. The caller picks
        the signals (around 40 stay readable).
    highlight : collection of str
        Signals drawn in full colour with bold labels (top signals, aliases); the others
        are drawn pale.
    order : sequence of str, optional
        Top-to-bottom order of the signals (default: by Spearman, best first).
    total : int, optional
        How many signals there are in all, when ``quality`` shows a subset (title).
    data : str
        The data the figure is about (second title line).
    """
    missing = [c for c in ("signal", "measure", "value", "ci_low", "ci_high") if c not in quality]
    if missing:
        raise ValueError(f"oracle_correlation_bars: `quality` lacks columns {missing}")
    measures = [m for m in ("spearman", "kendall") if m in set(quality["measure"])]
    if order is None:
        first = quality[quality["measure"] == measures[0]].sort_values("value", ascending=False)
        order = list(dict.fromkeys(first["signal"]))
    signals = [s for s in order if s in set(quality["signal"])]
    labels = unique_labels(signals)
    marked = set(highlight)
    y = np.arange(len(signals))
    fills = [to_rgba(family_colour(family_of(s)), 1.0 if s in marked else 0.45) for s in signals]
    edges = ["black" if s in marked else "none" for s in signals]
    with style():
        fig = new_figure(11.0, 0.27 * len(signals) + 2.0)
        axes = np.atleast_1d(fig.subplots(1, len(measures), sharey=True, squeeze=False)).ravel()
        for ax, measure in zip(axes, measures, strict=True):
            part = quality[quality["measure"] == measure].set_index("signal").reindex(signals)
            _correlation_panel(ax, y, part, fills, edges)
            ax.set_title("Spearman ρ" if measure == "spearman" else "Kendall τ", fontsize=11)
        axes[0].set_yticks(y, labels=[labels[s] for s in signals])
        axes[0].invert_yaxis()
        for text, s in zip(axes[0].get_yticklabels(), signals, strict=True):
            if s in marked:
                text.set_fontweight("bold")
        fams = {family_of(s) for s in signals}
        handles = [Patch(facecolor=family_colour(f), label=f) for f in FAMILIES if f in fams]
        handles.append(Patch(facecolor="white", edgecolor="black", label="bold, outlined = top / alias"))
        fig.legend(handles=handles, loc="outside right center", title="family (pointwise)", frameon=False)
        shown = (
            f"{len(signals)} of {total} signals"
            if total and total > len(signals)
            else f"{len(signals)} signals"
        )
        set_title(
            fig,
            f"Rank quality: correlation with the oracle loss change ({shown}); whiskers = 95 % interval",
            data,
        )
    return fig
