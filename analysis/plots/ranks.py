"""Rank pictures: the critical-difference diagram and the rank-similarity clustermap."""

from __future__ import annotations

from collections.abc import Collection

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from analysis.palette import DIVERGING_CMAP, FAMILIES, family_colour, family_of, style, text_colour
from analysis.plots._base import family_legend, new_figure, set_title, unique_labels

__all__ = ["cd_diagram", "rank_similarity_clustermap"]


def cd_diagram(
    mean_ranks: pd.Series,
    pvalues: pd.DataFrame,
    *,
    cd: float | None = None,
    alpha: float = 0.05,
    top: int = 15,
    data: str = "",
) -> Figure:
    """Critical-difference diagram (Demšar 2006) drawn with scikit-posthocs.

    Parameters
    ----------
    mean_ranks : Series
        Mean rank per signal over the blocks (1 = best).
    pvalues : DataFrame
        Pairwise Nemenyi p-values (signals x signals); signals joined by a bar do not
        differ at ``alpha``.
    cd : float, optional
        The critical difference, drawn as a scale bar.
    top : int
        Above this many signals the diagram is unreadable: only the ``top`` best by mean
        rank are drawn (p-values from the full comparison) and the title says so.
    data : str
        The data the figure is about (second title line).
    """
    import scikit_posthocs as sp

    ranks = pd.Series(mean_ranks, dtype=float).dropna().sort_values()
    total = len(ranks)
    if total < 2:
        raise ValueError("cd_diagram needs at least two signals")
    shown = ranks.iloc[:top] if total > top else ranks
    labels = unique_labels(list(shown.index))
    names = [labels[s] for s in shown.index]
    matrix = pvalues.reindex(index=shown.index, columns=shown.index).fillna(1.0).to_numpy(copy=True)
    np.fill_diagonal(matrix, 1.0)
    sig = pd.DataFrame(matrix, index=names, columns=names)
    hue = pd.Series({labels[s]: family_of(s) for s in shown.index})
    palette = {f: family_colour(f) for f in sorted(set(hue))}
    rows = (len(shown) + 1) // 2
    with style():
        fig = new_figure(11.0, 1.9 + 0.36 * rows)
        ax = fig.subplots()
        sp.critical_difference_diagram(
            shown.rename(index=labels),
            sig,
            alpha=alpha,
            ax=ax,
            hue=hue,
            hue_order=[f for f in FAMILIES if f in set(hue)] + sorted(set(hue) - set(FAMILIES)),
            color_palette=palette,
            label_fmt_left="{label} ({rank:.1f})",
            label_fmt_right="({rank:.1f}) {label}",
            label_props={"fontsize": 9.5},
            elbow_props={"linewidth": 1.2},
        )
        ax.set_xlabel("mean rank over blocks (1 = best)")
        ax.xaxis.set_label_position("top")
        ax.grid(False)
        for text in ax.texts:  # labels in a legible shade of their family colour, never clipped
            text.set_color(text_colour(text.get_color()))
            text.set_clip_on(False)  # (so the layout counts their full width)
        if cd is not None:
            _cd_bar(fig, ax, shown, float(cd))
        family_legend(fig, hue.to_numpy())
        subset = f"top {len(shown)} of {total} signals by mean rank" if total > top else f"{total} signals"
        set_title(
            fig,
            f"Critical-difference diagram, {subset}; bars join signals not different "
            f"(Nemenyi, α = {alpha:g})",
            data,
        )
    return fig


def _cd_bar(fig: Figure, ax, ranks: pd.Series, cd: float) -> None:
    """The critical difference as a scale bar above the axis label (offset in points, so
    it clears the tick labels whatever the figure size); cut at the drawn rank range when
    the CD is longer than it (then no drawn pair can differ)."""
    from matplotlib.transforms import offset_copy

    start, span = float(ranks.iloc[0]), float(ranks.iloc[-1] - ranks.iloc[0])
    length = min(cd, span) if span > 0 else cd
    bar = offset_copy(ax.transData, fig=fig, y=44, units="points")
    ax.plot([start, start + length], [0, 0], color="black", linewidth=2, transform=bar, clip_on=False)
    ax.plot([start, start], [-0.15, 0.15], color="black", linewidth=1, transform=bar, clip_on=False)
    text = offset_copy(ax.transData, fig=fig, y=50, units="points")
    label = f"CD = {cd:.2f}" + (" (longer than the range drawn)" if cd > length else "")
    ax.text(start + length / 2, 0, label, ha="center", va="bottom", transform=text, fontsize=10)


def rank_similarity_clustermap(
    similarity: pd.DataFrame,
    *,
    highlight: Collection[str] = (),
    measure: str = "Spearman ρ between score rankings",
    cbar_label: str = "Spearman ρ",
    data: str = "",
) -> Figure:
    """Hierarchically clustered signal x signal similarity (seaborn ``clustermap``).

    Parameters
    ----------
    similarity : DataFrame
        Square, symmetric matrix indexed by signal on both axes, values in [-1, 1]. The
        caller chooses which signals to show (around 40 stay readable). Signals with a
        missing value are dropped (clustering needs a complete matrix).
    highlight : collection of str
        Signals whose labels are drawn in bold (e.g. the top ones and the aliases).
    measure : str
        What the similarity is (title).
    cbar_label : str
        Short colour-bar label.
    data : str
        The data the figure is about (second title line).
    """
    import matplotlib.pyplot as plt  # clustermap makes its own pyplot figure
    import seaborn as sns

    sim = similarity.astype(float)
    keep = sim.index[sim.notna().all(axis=1)].intersection(sim.columns[sim.notna().all(axis=0)])
    sim = sim.loc[keep, keep]
    if len(sim) < 2:
        raise ValueError("rank_similarity_clustermap needs at least two signals with complete rows")
    signals = list(sim.index)
    labels = unique_labels(signals)
    colours = pd.Series({labels[s]: family_colour(family_of(s)) for s in signals}, name="family")
    frame = sim.rename(index=labels, columns=labels)
    size = min(20.0, max(7.0, 0.2 * len(frame) + 3.5))
    with style():
        grid = sns.clustermap(
            frame,
            method="average",
            metric="euclidean",
            cmap=DIVERGING_CMAP,
            vmin=-1,
            vmax=1,
            row_colors=colours,
            col_colors=colours,
            xticklabels=False,  # labelled below: seaborn redraws the figure per labelled heatmap
            yticklabels=False,
            figsize=(size + 2.0, size),
            dendrogram_ratio=0.12,
            colors_ratio=0.02,
            cbar_kws={"orientation": "horizontal", "ticks": [-1, 0, 1]},
            cbar_pos=(0.015, 0.955, 0.09, 0.015),
        )
        fig = grid.figure
        grid.ax_cbar.set_title(cbar_label, fontsize=9)
        grid.ax_cbar.tick_params(labelsize=8)
        plt.close(fig)  # keep the figure, leave pyplot's list
        rows = [frame.index[i] for i in grid.dendrogram_row.reordered_ind]
        cols = [frame.columns[i] for i in grid.dendrogram_col.reordered_ind]
        _tick_labels(grid, rows, cols, highlight, labels)
        _legend_right(fig, grid, families={family_of(s) for s in signals})
        title = f"Rank similarity of {len(frame)} signals ({measure}), clustered (average linkage)"
        fig.suptitle(f"{title}\n{data}" if data else title, fontsize=13, y=1.05)
    return fig


def _tick_labels(
    grid, rows: list[str], cols: list[str], highlight: Collection[str], labels: dict[str, str]
) -> None:
    """Every row and column labelled (clustered order), highlighted ones in bold."""
    ax = grid.ax_heatmap
    size = 9 if len(rows) <= 40 else 7.5
    ax.set_xticks(np.arange(len(cols)) + 0.5, labels=cols, rotation=90, fontsize=size)
    ax.set_yticks(np.arange(len(rows)) + 0.5, labels=rows, rotation=0, fontsize=size, va="center")
    ax.tick_params(length=0)
    bold = {labels[s] for s in highlight if s in labels}
    for text in (*ax.get_xticklabels(), *ax.get_yticklabels()):
        if text.get_text() in bold:
            text.set_fontweight("bold")
    ax.set_xlabel("")
    ax.set_ylabel("")


def _legend_right(fig: Figure, grid, families: set[str]) -> None:
    """Family legend to the right of the heatmap's (right-hand) row labels."""
    from matplotlib.patches import Patch

    order = [f for f in FAMILIES if f in families] + sorted(families - set(FAMILIES))
    handles = [Patch(facecolor=family_colour(f), label=f) for f in order]
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    renderer = FigureCanvasAgg(fig).get_renderer()  # measure the labels (any backend)
    right = max(
        (t.get_window_extent(renderer).x1 for t in grid.ax_heatmap.get_yticklabels()),
        default=grid.ax_heatmap.get_window_extent(renderer).x1,
    )
    x = fig.transFigure.inverted().transform((right, 0))[0] + 0.01
    fig.legend(
        handles=handles,
        title="family (side colours)\nbold = top / alias",
        loc="upper left",
        bbox_to_anchor=(x, grid.ax_heatmap.get_position().y1),
        frameon=False,
    )
