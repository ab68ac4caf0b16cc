"""The headline score over reduction x scaling: one heatmap per (input, pointwise) pair."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize, to_rgba
from matplotlib.figure import Figure

from analysis.palette import MISSING_COLOUR, SEQUENTIAL_CMAP, style
from analysis.plots._base import new_figure, set_title
from taxonomy.components import AXES

__all__ = ["component_heatmaps", "AXIS_ORDER"]

AXIS_ORDER: dict[str, tuple[str, ...]] = {axis: tuple(o.id for o in enum) for axis, enum in AXES.items()}
"""Component options in taxonomy order (options found in the data but not here go last)."""

_SCALING_TICKS = {"weights_removed": "w_removed", "l0_active": "l0_act", "macs_removed": "m_removed"}


def _options(frame: pd.DataFrame, axis: str) -> list[str]:
    known = list(AXIS_ORDER[axis])
    extra = sorted(set(frame[axis].dropna()) - set(known))
    return known + extra


def component_heatmaps(
    table: pd.DataFrame,
    *,
    value: str = "geomean",
    label: str = "geomean sparsity at 5-point drop (%)",
    data: str = "",
    fmt: str = ".1f",
) -> Figure:
    """A grid of heatmaps (rows: pointwise, columns: input) of reduction x scaling cells.

    Parameters
    ----------
    table : DataFrame
        One row per taxonomy signal with columns ``input``, ``pointwise``, ``reduction``,
        ``scaling`` and ``value``. Reference signals (no components) are ignored. Cells
        without a row stay blank.
    value : str
        The column to colour by and annotate.
    label : str
        Colour-bar label (the value's meaning and unit).
    data : str
        The data the figure is about (second title line).
    fmt : str
        Format of the cell annotations.
    """
    cols = ["input", "pointwise", "reduction", "scaling"]
    missing = [c for c in (*cols, value) if c not in table.columns]
    if missing:
        raise ValueError(f"component_heatmaps: `table` lacks columns {missing}")
    cells = table.dropna(subset=cols)
    if cells.duplicated(cols).any():
        raise ValueError("component_heatmaps: `table` must have one row per signal (duplicate cells)")
    inputs, pointwise = _options(cells, "input"), _options(cells, "pointwise")
    reductions, scalings = _options(cells, "reduction"), _options(cells, "scaling")
    finite = cells[value].to_numpy(dtype=float)
    finite = finite[np.isfinite(finite)]
    vmin, vmax = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    if vmax <= vmin:
        vmin, vmax = vmin - 0.5, vmax + 0.5
    norm, cmap = Normalize(vmin, vmax), colormaps[SEQUENTIAL_CMAP]
    shape = (len(pointwise), len(inputs), len(reductions), len(scalings))
    grid = np.full(shape, np.nan)
    axes = (("pointwise", pointwise), ("input", inputs), ("reduction", reductions), ("scaling", scalings))
    index = tuple(pd.Index(options).get_indexer(cells[axis]) for axis, options in axes)
    grid[index] = cells[value].to_numpy(dtype=float)
    with style():
        fig = new_figure(
            0.78 * len(scalings) * len(inputs) + 3.4, 0.33 * (len(reductions) + 1) * len(pointwise) + 2.0
        )
        ax = fig.subplots()
        _mosaic(ax, grid, norm, cmap, fmt)
        _labels(ax, pointwise, inputs, reductions, scalings)
        fig.colorbar(
            ScalarMappable(norm=norm, cmap=cmap), ax=ax, location="right", shrink=0.4, aspect=25, label=label
        )
        shown = int(np.isfinite(grid).sum())
        set_title(
            fig,
            f"{label} by reduction × scaling, a block per input × pointwise ({shown} cells; blank = not run)",
            data,
        )
    return fig


def _mosaic(ax, grid: np.ndarray, norm: Normalize, cmap, fmt: str) -> None:
    """All blocks in one mesh: rows = pointwise blocks of reductions, columns = input
    blocks of scalings, one empty row/column between blocks; numbers on finite cells."""
    n_p, n_i, n_r, n_s = grid.shape
    height, width = n_p * (n_r + 1) - 1, n_i * (n_s + 1) - 1
    rgba = np.zeros((height, width, 4))  # gaps between blocks: transparent
    for p, i in np.ndindex(n_p, n_i):
        block = grid[p, i]
        colours = cmap(norm(np.nan_to_num(block, nan=norm.vmin)))
        colours[~np.isfinite(block)] = to_rgba(MISSING_COLOUR)
        y0, x0 = p * (n_r + 1), i * (n_s + 1)
        rgba[y0 : y0 + n_r, x0 : x0 + n_s] = colours
    edges_y, edges_x = np.arange(height + 1), np.arange(width + 1)
    ax.pcolormesh(edges_x, edges_y, rgba, edgecolors="white", linewidth=1.2)
    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)
    cells = [(idx, v) for idx, v in np.ndenumerate(grid) if np.isfinite(v)]
    if cells:
        (p, i, r, c), values = np.array([k for k, _ in cells]).T, np.array([v for _, v in cells])
        xy = np.column_stack([i * (n_s + 1) + c + 0.5, p * (n_r + 1) + r + 0.5])
        rgb = cmap(norm(values))[:, :3] @ np.array([0.2126, 0.7152, 0.0722])
        _numbers(ax, [format(v, fmt) for v in values], xy, np.where(rgb > 0.45, "black", "white"))
    ax.grid(False)
    for spine in ax.spines.values():
        spine.set_visible(False)


def _numbers(ax, texts: list[str], xy: np.ndarray, colours: np.ndarray, size: float = 8.5) -> None:
    """Centred numbers as one collection of glyph outlines: a few hundred ``Text`` artists
    cost seconds per saved format, one ``PathCollection`` a few milliseconds. Each string
    is assembled from per-character outlines (digits have equal advances, no kerning)."""
    from matplotlib.collections import PathCollection
    from matplotlib.path import Path as MPath
    from matplotlib.transforms import Affine2D

    glyphs = _glyphs("".join(set("".join(texts))), size)
    paths = []
    for text in texts:
        verts, codes, x = [], [], 0.0
        for ch in text:
            path, advance = glyphs[ch]
            if len(path.vertices):
                verts.append(path.vertices + (x, 0.0))
                codes.append(path.codes)
            x += advance
        if not verts:
            continue
        v = np.concatenate(verts)
        lo, hi = v.min(axis=0), v.max(axis=0)
        paths.append(MPath(v - (lo + hi) / 2, np.concatenate(codes)))
    points = Affine2D().scale(1 / 72.0) + ax.figure.dpi_scale_trans  # points -> pixels at any dpi
    collection = PathCollection(
        paths, offsets=xy, offset_transform=ax.transData, transform=points, facecolors=colours, zorder=3
    )
    collection.set_edgecolor("none")
    ax.add_collection(collection, autolim=False)


def _glyphs(chars: str, size: float) -> dict[str, tuple[object, float]]:
    """Outline (in points) and advance width of each character, in the current font."""
    from matplotlib.font_manager import FontProperties
    from matplotlib.textpath import TextPath, text_to_path

    prop = FontProperties(size=size)
    out = {}
    for ch in chars:
        width = text_to_path.get_text_width_height_descent(ch, prop, ismath=False)[0]
        out[ch] = (TextPath((0, 0), ch, prop=prop), float(width))
    return out


def _labels(ax, pointwise: list[str], inputs: list[str], reductions: list[str], scalings: list[str]) -> None:
    n_r, n_s = len(reductions), len(scalings)
    ax.set_yticks([p * (n_r + 1) + r + 0.5 for p in range(len(pointwise)) for r in range(n_r)])
    ax.set_yticklabels(reductions * len(pointwise))
    ax.set_xticks([i * (n_s + 1) + c + 0.5 for i in range(len(inputs)) for c in range(n_s)])
    ax.set_xticklabels([_SCALING_TICKS.get(s, s) for s in scalings] * len(inputs), rotation=35, ha="right")
    ax.tick_params(length=0, pad=2)
    for p, name in enumerate(pointwise):
        ax.annotate(
            name,
            xy=(0, p * (n_r + 1) + n_r / 2),
            xycoords=("axes fraction", "data"),
            xytext=(-58, 0),
            textcoords="offset points",
            rotation=90,
            ha="center",
            va="center",
            fontsize=10.5,
            fontweight="bold",
        )
    for i, name in enumerate(inputs):
        ax.text(
            i * (n_s + 1) + n_s / 2,
            -0.4,
            f"input: {name}",
            ha="center",
            va="bottom",
            fontsize=11,
            fontweight="bold",
        )
    ax.set_xlabel("scaling")
    ax.set_ylabel("pointwise measure (bold) · reduction", labelpad=30)
