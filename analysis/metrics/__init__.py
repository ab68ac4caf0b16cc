"""Per-trial headline metrics, across-seed aggregates and interpolated curves (SPEC §4).

Curves follow :mod:`study.curves`: anchored at (0, reference), steps without a test
evaluation skipped, linear interpolation between logged points. :func:`trial_metrics`
recomputes them for every trial at once with grouped numpy operations (2 million steps
rows take a few seconds), so changing the drops or the reference needs no new trials.

The modules: :mod:`~analysis.metrics.anchored` turns steps rows into many anchored curves
at once; :mod:`~analysis.metrics.per_trial` reads the headline metrics off them;
:mod:`~analysis.metrics.interpolated` puts them on a common grid;
:mod:`~analysis.metrics.draws` turns the draws of ``random`` into one value per seed (their
median) and a spread; :mod:`~analysis.metrics.across_seeds` aggregates seeds and ranks signals.
"""

from __future__ import annotations

from analysis.metrics.across_seeds import (
    GEOMEAN_SHIFT,
    bootstrap_ci,
    geometric_mean,
    overall_ranking,
    ranking_blocks,
    summarise,
)
from analysis.metrics.draws import collapse_draws, draw_spread
from analysis.metrics.interpolated import curves
from analysis.metrics.per_trial import DEFAULT_DROPS, trial_metrics

__all__ = [
    "trial_metrics",
    "geometric_mean",
    "bootstrap_ci",
    "summarise",
    "overall_ranking",
    "ranking_blocks",
    "curves",
    "collapse_draws",
    "draw_spread",
    "DEFAULT_DROPS",
    "GEOMEAN_SHIFT",
]
