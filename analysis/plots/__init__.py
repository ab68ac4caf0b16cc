"""Figures of prunetax: each function takes a tidy, already aggregated frame and returns a
:class:`matplotlib.figure.Figure` (no pyplot state, never shown); :func:`save` writes it
as PNG and SVG. Statistics are computed elsewhere (``analysis.metrics``, ``analysis.stats``,
``analysis.effects``, ``analysis.rank_quality``); the report wires them to these plots.
Colours and style come from :mod:`analysis.palette`.
"""

from analysis.plots._base import FORMATS, alias_of, save, short_label, unique_labels
from analysis.plots.bars import component_effect_bars, oracle_correlation_bars
from analysis.plots.curves import accuracy_curves
from analysis.plots.heatmaps import component_heatmaps
from analysis.plots.methods import method_headlines
from analysis.plots.ranks import cd_diagram, rank_similarity_clustermap
from analysis.plots.steps import rank_quality_steps

__all__ = [
    "FORMATS",
    "accuracy_curves",
    "alias_of",
    "cd_diagram",
    "component_effect_bars",
    "component_heatmaps",
    "method_headlines",
    "oracle_correlation_bars",
    "rank_quality_steps",
    "rank_similarity_clustermap",
    "save",
    "short_label",
    "unique_labels",
]
