"""Shared plumbing of the plots: labels, figure creation, titles, legends, saving.

Figures are made with :class:`matplotlib.figure.Figure` directly, not through pyplot,
so no backend or global figure list is involved (nothing to ``show`` or close; a figure
is freed when it is no longer referenced) and the plots work the same in scripts, the
report and notebooks (Jupyter displays a returned ``Figure``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import cache
from pathlib import Path

from matplotlib import rc_context
from matplotlib.figure import Figure
from matplotlib.layout_engine import ConstrainedLayoutEngine
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from analysis.palette import FAMILIES, family_colour, family_of, linestyle

__all__ = ["short_label", "alias_of", "save", "new_figure", "set_title", "family_legend", "FORMATS"]

FORMATS = ("png", "svg")
"""The files :func:`save` writes for one figure."""

_INPUT = {"weight": "wt", "activation": "act"}
_SCALING = {"weights_removed": "wr", "l0_active": "l0a", "macs_removed": "mr"}


@cache
def _alias_table() -> dict[str, str]:
    from taxonomy.aliases import ALIASES

    table: dict[str, list[str]] = {}
    for alias in ALIASES.values():
        table.setdefault(alias.spec.id, []).append(alias.name)
    return {sid: "/".join(names) for sid, names in table.items()}


def alias_of(signal_id: str) -> str:
    """The literature alias of a canonical signal id, or ``''`` if it has none."""
    return _alias_table().get(str(signal_id), "")


def short_label(signal_id: str, alias: str | None = None) -> str:
    """A compact label for a signal: its literature alias where it has one, else the
    four components joined by ``·`` with the input and long scalings abbreviated
    (``act·taylor2_gn·abs_sum·wr``). ``random``/``oracle`` and unknown ids pass through."""
    name = alias if alias else alias_of(signal_id)
    if name:
        return name
    parts = str(signal_id).split("-")
    if len(parts) != 4:
        return str(signal_id)
    inp, pointwise, reduction, scaling = parts
    return "·".join((_INPUT.get(inp, inp), pointwise, reduction, _SCALING.get(scaling, scaling)))


def unique_labels(signals: Sequence[str]) -> dict[str, str]:
    """``short_label`` of each signal, made unique (falls back to the full id on a clash)."""
    labels = {s: short_label(s) for s in signals}
    counts: dict[str, int] = {}
    for label in labels.values():
        counts[label] = counts.get(label, 0) + 1
    return {s: (label if counts[label] == 1 else s) for s, label in labels.items()}


def new_figure(width: float, height: float) -> Figure:
    """A white figure with constrained layout (room for outside legends and titles)."""
    return Figure(figsize=(width, height), layout="constrained", facecolor="white")


def set_title(fig: Figure, what: str, data: str = "") -> None:
    """The figure title: what is shown, then (second line) on what data."""
    fig.suptitle(f"{what}\n{data}" if data else what, fontsize=13)


def family_legend(fig: Figure, families: Iterable[str], *, title: str = "family (pointwise)") -> None:
    """A legend of family colours placed outside the axes, on the right."""
    present = set(families)
    order = [f for f in FAMILIES if f in present] + sorted(present - set(FAMILIES))
    handles = [Patch(facecolor=family_colour(f), edgecolor="none", label=f) for f in order]
    fig.legend(handles=handles, loc="outside right center", title=title, frameon=False)


def signal_handles(
    signals: Sequence[str], styles: dict[str, object], labels: dict[str, str], colours: dict[str, str]
) -> list[Line2D]:
    """Legend handles (a shade of the family colour and a style per signal) for line plots."""
    return [Line2D([], [], color=colours[s], markersize=5, label=labels[s], **styles[s]) for s in signals]


_CHARS_PER_INCH = 10.0
"""Legend label characters per inch of figure width (10-11 pt text, with margin)."""
_ENTRY_CHARS = 7
"""A legend entry's line sample and padding, in characters."""


def signal_legend(
    fig: Figure,
    signals: Sequence[str],
    styles: dict[str, object],
    labels: dict[str, str],
    colours: dict[str, str],
) -> None:
    """The line plots' legend, below the panels: one entry per signal, up to four per row, fewer
    when the labels are too long for four to fit the figure's width (they would be cut off)."""
    widest = max((len(labels[s]) for s in signals), default=0) + _ENTRY_CHARS
    fits = int(fig.get_figwidth() * _CHARS_PER_INCH // widest)
    fig.legend(
        handles=signal_handles(signals, styles, labels, colours),
        loc="outside lower center",
        ncols=max(1, min(4, len(signals), fits)),
        title="signal (colour = pointwise family; shade, line style and marker tell a family apart)",
        frameon=False,
    )


def line_styles(signals: Sequence[str]) -> dict[str, object]:
    """Line style and marker of each signal, numbered within its family (:func:`linestyle`)."""
    seen: dict[str, int] = {}
    styles = {}
    for s in signals:
        family = family_of(s)
        styles[s] = linestyle(s, seen.get(family, 0))
        seen[family] = seen.get(family, 0) + 1
    return styles


def save(fig: Figure, out_dir: str | Path, name: str, *, dpi: int = 150) -> list[Path]:
    """Write ``fig`` as ``<out_dir>/<name>.png`` (``dpi``) and ``.svg``; return the paths.

    A figure with constrained layout is laid out once and both files are written from
    that layout (it already keeps titles and outside legends inside the canvas); other
    figures are cropped with ``bbox_inches="tight"``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    engine, screen_dpi = fig.get_layout_engine(), fig.dpi
    frozen = isinstance(engine, ConstrainedLayoutEngine)
    if frozen:
        fig.set_dpi(dpi)  # lay out at the PNG's resolution: text extents do not scale exactly
        engine.execute(fig)
        fig.set_layout_engine(None)  # laid out: no engine, so savefig adds no layout pass
    else:  # crop once, then write both formats with that box
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        box = fig.get_tightbbox(FigureCanvasAgg(fig).get_renderer()).padded(0.1)
    paths = []
    try:
        with rc_context({"svg.fonttype": "none"}):  # SVG text stays text: smaller and faster
            for fmt in FORMATS:
                path = out / f"{name}.{fmt}"
                meta = {"Date": None} if fmt == "svg" else {}  # reproducible SVG bytes
                bbox = None if frozen else box
                fig.savefig(path, dpi=dpi, bbox_inches=bbox, facecolor="white", format=fmt, metadata=meta)
                paths.append(path)
    finally:
        if frozen:
            fig.set_layout_engine(engine)
            fig.set_dpi(screen_dpi)
    return paths
