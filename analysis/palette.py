"""One colour-blind-safe palette and one plot style for every figure of prunetax.

A signal's *family* is its pointwise measure (``value``, ``gradient``, ``taylor``, ...)
or ``reference`` for the ``random`` and ``oracle`` baselines. Each family has one colour,
fixed across every plot (curves, CD diagram, bars, clustermap side colours), taken from
Paul Tol's *muted* scheme (distinguishable under the common colour-vision deficiencies,
https://personal.sron.nl/~pault/), with a neutral dark grey for the references. Within a
family, line plots tell signals apart three ways at once: a shade of the family's hue
from dark to light (:func:`signal_colours`), a line style and a marker (:func:`linestyle`),
so even a one-family study never draws five lines of one colour.

Nothing here draws. :func:`style` is a context manager that applies the house style
(seaborn ``whitegrid`` with ticks, readable font sizes) to the figures made inside it;
:func:`apply_style` sets the same rcParams globally, for notebooks.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from taxonomy.components import Pointwise

__all__ = [
    "FAMILIES",
    "FAMILY_COLOURS",
    "MISSING_COLOUR",
    "SEQUENTIAL_CMAP",
    "DIVERGING_CMAP",
    "LINESTYLES",
    "MARKERS",
    "family_colour",
    "family_of",
    "signal_colours",
    "text_colour",
    "linestyle",
    "apply_style",
    "style",
    "style_rc",
]

FAMILIES: tuple[str, ...] = (*(p.id for p in Pointwise), "reference")
"""Every family, in the taxonomy's pointwise order, then the references."""

# Paul Tol "muted": indigo, cyan, teal, green, olive, sand, rose, wine (+ purple spare).
FAMILY_COLOURS: dict[str, str] = {
    "value": "#332288",
    "gradient": "#88CCEE",
    "taylor": "#44AA99",
    "hessian_lm": "#117733",
    "hessian_gn": "#999933",
    "taylor2_lm": "#DDCC77",
    "taylor2_gn": "#CC6677",
    "apoz": "#882255",
    "reference": "#555555",
}
"""Family -> hex colour; the same in every figure."""

OTHER_COLOUR = "#AA4499"  # Tol muted purple: a family this palette does not know (new pointwise)
MISSING_COLOUR = "#EEEEEE"  # a blank cell: no data (paler than Tol's "bad data" grey)
SEQUENTIAL_CMAP = "viridis"  # heatmaps of a score (perceptually uniform, colour-blind safe)
DIVERGING_CMAP = "RdBu_r"  # correlations in [-1, 1]

LINESTYLES: tuple[object, ...] = ("-", "--", "-.", (0, (1, 1.5)))
MARKERS: tuple[str | None, ...] = (None, "o", "s", "^", "D", "v", "P", "X")
"""Signals of one family are told apart by line style, then marker: 4 x 8 = 32 looks."""

_REFERENCE_STYLES = {"random": {"linestyle": "--"}, "oracle": {"linestyle": ":"}}


def family_of(signal: str) -> str:
    """The family of a signal id: its pointwise id, or ``reference`` for random/oracle."""
    parts = str(signal).split("-")
    return parts[1] if len(parts) == 4 else "reference"


def family_colour(family: str) -> str:
    """The colour of ``family`` (a spare purple for a family this palette does not list)."""
    return FAMILY_COLOURS.get(family, OTHER_COLOUR)


def _shade(colour: str, amount: float) -> str:
    """``colour`` with its HLS lightness moved by ``amount`` (-1 darker .. +1 lighter)."""
    import colorsys

    from matplotlib.colors import to_hex, to_rgb

    h, lightness, sat = colorsys.rgb_to_hls(*to_rgb(colour))
    target = lightness + amount * ((1 - lightness) if amount > 0 else lightness)
    return to_hex(colorsys.hls_to_rgb(h, min(max(target, 0.0), 1.0), sat))


def signal_colours(signals: list[str] | tuple[str, ...]) -> dict[str, str]:
    """A colour per signal: its family's hue, in shades from dark to light when a family
    has several signals (in the order given); the references keep their grey (random and
    oracle differ by line style)."""
    members: dict[str, list[str]] = {}
    for s in signals:
        members.setdefault(family_of(s), []).append(s)
    out = {}
    for family, group in members.items():
        base = family_colour(family)
        n = len(group)
        steps = [0.0] * n if n == 1 or family == "reference" else [-0.5 + 0.8 * i / (n - 1) for i in range(n)]
        for s, amount in zip(group, steps, strict=True):
            out[s] = _shade(base, amount)
    return out


def text_colour(colour: str) -> str:
    """A colour legible as text on white: light colours (cyan, sand) darkened, hue kept."""
    from matplotlib.colors import to_hex, to_rgb

    r, g, b = to_rgb(colour)
    if 0.2126 * r + 0.7152 * g + 0.0722 * b < 0.55:
        return colour
    return to_hex((0.6 * r, 0.6 * g, 0.6 * b))


def linestyle(signal: str, index_in_family: int) -> dict[str, object]:
    """``plot`` keywords (linestyle, marker) of the ``index_in_family``-th signal of its
    family; random is dashed and oracle dotted (both in the reference grey)."""
    if signal in _REFERENCE_STYLES:
        return dict(_REFERENCE_STYLES[signal], marker=None)
    k = index_in_family % (len(LINESTYLES) * len(MARKERS))
    return {"linestyle": LINESTYLES[k % len(LINESTYLES)], "marker": MARKERS[k // len(LINESTYLES)]}


def style_rc() -> dict[str, object]:
    """The house style as rcParams: seaborn ``whitegrid`` with ticks, readable font sizes."""
    import seaborn as sns

    rc: dict[str, object] = {**sns.axes_style("whitegrid"), **sns.plotting_context("notebook")}
    rc.update(
        {
            "font.size": 11,
            "axes.titlesize": 12,
            "axes.labelsize": 11,
            "xtick.labelsize": 9.5,
            "ytick.labelsize": 9.5,
            "legend.fontsize": 9.5,
            "legend.title_fontsize": 10,
            "figure.titlesize": 14,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "xtick.bottom": True,
            "ytick.left": True,
            "lines.linewidth": 1.8,
            "figure.facecolor": "white",
        }
    )
    return rc


@contextmanager
def style() -> Iterator[None]:
    """Apply the house style inside a ``with`` block only (no global side effects)."""
    import matplotlib

    with matplotlib.rc_context(style_rc()):
        yield


def apply_style() -> None:
    """Set the house style globally (for notebooks and interactive use)."""
    import matplotlib

    matplotlib.rcParams.update(style_rc())
