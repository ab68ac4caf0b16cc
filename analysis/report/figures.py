"""Which figures the report draws, from which data, and how they are saved.

Each function here decides the signals and tasks of one kind of figure and submits it
through :class:`Renderer`, which draws it with :mod:`analysis.plots` and writes PNG and
SVG under ``<out>/figures``. A plot that refuses its data leaves a note, not an error.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from analysis import rank_quality
from analysis.report.tables import CD_TOP, REFERENCES, bands, components, curve_signals

if TYPE_CHECKING:
    from analysis.report.builder import Builder, Comparison

__all__ = [
    "HOW",
    "use_agg",
    "Renderer",
    "cd_diagram",
    "accuracy_curves",
    "heatmaps",
    "effect_bars",
    "oracle_bars",
    "rank_similarity",
]

_log = logging.getLogger("analysis.report")  # one logger for the whole report
_MAX_SIMILARITY = 40  # signals in the clustermap (plus aliases)
_MAX_BARS = 40  # signals in the oracle-correlation bars

HOW = {
    "curves": "One panel per task. Each line is a signal's test accuracy averaged over seeds at each "
    "sparsity (curves interpolated on a 1 %-step grid, drawn while every seed still has data); the "
    "shaded band spans the seeds' minimum to maximum. Colour = pointwise family, line style and "
    "marker tell signals of one family apart; random is dashed grey, oracle dotted grey. Further "
    "right before the drop = better: the headline reads off where a curve falls below reference − d points.",
    "heatmap": "Each block fixes the input (block column) and pointwise measure (block row); its cells are "
    "the reduction (rows) × scaling (columns) choices. Colour and number: the geomean headline over "
    "seeds (higher = better), one shared colour scale for every panel. Pale blank cells were not run "
    "(e.g. cells equivalent to another and represented by it).",
    "cd": "Signals on the axis by mean rank over tasks (1 = best; ranks within a task after averaging "
    "seeds). A thick bar joins signals whose Nemenyi p-value is ≥ 0.05 (no detectable difference); the "
    "scale bar is the critical difference CD. Nemenyi depends on which signals are in the pool: base "
    "claims on the Wilcoxon-Holm tables.",
    "effects": "For each component, the bar is how much choosing that option changes the headline "
    "relative to the average option of that component, comparing signals that agree on the other three "
    "components in the same task (matched sets). Whiskers: 95 % bootstrap interval over matched sets; "
    "bars crossing zero are not distinguishable from the average option. n = matched sets.",
    "oracle": "How well each signal's ranking of units on the unpruned network agrees with the oracle "
    "(measured loss change when the unit is removed): Spearman ρ (left) and Kendall τ (right) over all "
    "units, averaged over seeds, whiskers = 95 % bootstrap interval over seeds. +1 = prunes exactly in "
    "the oracle's order, 0 = unrelated. Bold, outlined bars: the top signals and literature aliases.",
    "similarity": "Spearman correlation between the unit rankings of two signals (averaged over seeds), "
    "rows and columns reordered by hierarchical clustering so that signals that rank alike sit together. "
    "Side colours give the pointwise family; bold labels are the top signals and literature aliases.",
}
"""The "how to read" caption of each kind of figure."""


# ----------------------------------------------------------------------------- saving


def use_agg() -> None:
    """Draw off-screen unless pyplot was already set up (a notebook keeps its backend)."""
    if "matplotlib.pyplot" not in sys.modules:
        import matplotlib

        matplotlib.use("Agg")


def _slug_task(task: str) -> str:
    """A task or model/dataset key as a file-name part."""
    return "".join(c if c.isalnum() or c in "_." else "-" for c in str(task))


def _render(name: str, plot: str, kwargs: dict, fig_dir: Path) -> list[Path] | str:
    """Draw and save one figure; the error text if the plot refuses its data."""
    from analysis import plots

    try:
        fig = getattr(plots, plot)(**kwargs)
    except ValueError as err:
        return str(err)
    return plots.save(fig, fig_dir, name)


class Renderer:
    """Draws and saves the figures as they are submitted; keeps failures for the notes."""

    def __init__(self, out: Path) -> None:
        self.out, self.fig_dir = out, out / "figures"
        self.done: dict[str, list[Path]] = {}
        self.failed: dict[str, str] = {}

    def submit(self, name: str, plot: str, kwargs: dict) -> None:
        clock = time.process_time()
        result = _render(name, plot, kwargs, self.fig_dir)
        if isinstance(result, str):
            self.failed[name] = result
        else:
            self.done[name] = result
        _log.debug("figure %s: %.1f s CPU", name, time.process_time() - clock)


# ----------------------------------------------------------------------------- the figures


def cd_diagram(b: Builder, result: dict[str, object], comparison: Comparison) -> None:
    """The critical-difference diagram of the best :data:`CD_TOP` signals over tasks
    (one per protocol when the store has several: ``cd_diagram__<protocol>``)."""
    ranks = result["friedman"]["mean_ranks"]
    shown = min(CD_TOP, len(ranks))
    protocol = comparison.protocol if b.multi_protocol else ""
    scope = f", `{protocol}` protocol" if protocol else ""
    b.draw(
        f"cd_diagram__{_slug_task(protocol)}" if protocol else "cd_diagram",
        "cd_diagram",
        dict(
            mean_ranks=ranks,
            pvalues=result["nemenyi"],
            cd=result["cd"],
            top=CD_TOP,
            data=b.where(comparison=comparison),
        ),
        f"Critical-difference diagram ({shown} of {result['wide'].shape[1]} signals{scope})",
        HOW["cd"],
    )


def accuracy_curves(b: Builder) -> None:
    """Accuracy against weight and MAC sparsity of the best signals, aliases and references;
    only their trials' steps are interpolated (a few dozen of the trials)."""
    trials = b.data["trials"]
    chosen = curve_signals(b.ranking, set(trials["signal"]))
    picked = trials[trials["signal"].isin(chosen)]
    steps = b.data["steps"]
    steps = steps[steps["run_key"].isin(picked["run_key"])]
    for x, what in (("sparsity", "weight sparsity"), ("macs_sparsity", "MAC sparsity")):
        b.draw(
            f"curves_{'macs' if x == 'macs_sparsity' else 'weights'}",
            "accuracy_curves",
            dict(bands=bands(steps, picked, x), x=x, order=chosen, data=b.where()),
            f"Test accuracy vs {what}, one panel per task",
            HOW["curves"],
        )


def heatmaps(b: Builder) -> None:
    """Headline by reduction x scaling: pooled over tasks (when several), then per task."""
    label = f"geomean {b.label}"
    head = b.comparisons[0]  # pooled over the headline protocol's tasks, never across protocols
    views = [("overall", b.pooled, b.where(comparison=head) + " (pooled)")] if len(head.tasks) > 1 else []
    views += [(t, b.by_task[b.by_task["task"] == t], b.where(t)) for t in b.tasks]
    for key, frame, where in views:
        cells = components(frame)
        if cells.empty:
            b.notes.append(f"no taxonomy signals for `{key}`: heatmap skipped.")
            continue
        b.draw(
            f"heatmap__{_slug_task(key)}",
            "component_heatmaps",
            dict(table=cells, label=label, data=where),
            f"{label} by reduction × scaling: {key}",
            HOW["heatmap"],
        )


def effect_bars(b: Builder, key: str, effects: pd.DataFrame | None) -> bool:
    """Component-effect bars of ``key`` (``overall`` or a task); False when nothing is estimable."""
    if effects is None or effects["effect"].notna().sum() == 0:
        b.notes.append(
            f"component effects of `{key}`: no option has an estimate (no two signals that "
            "differ in one component only); figure skipped."
        )
        return False
    where = b.where() if key == "overall" else b.where(key)
    b.draw(
        f"effects__{_slug_task(key)}",
        "component_effect_bars",
        dict(effects=effects, unit=f"difference in {b.label}", data=where),
        f"Component effects on {b.label}: {key}",
        HOW["effects"],
    )
    return True


def oracle_bars(b: Builder, key: str, part: pd.DataFrame) -> None:
    """Spearman and Kendall bars of one model/dataset; past :data:`_MAX_BARS` signals, the
    best 25, the worst 10 and the highlighted ones."""
    ranked = part.sort_values("spearman", ascending=False)
    signals = list(ranked["signal"])
    if len(signals) > _MAX_BARS:
        marked = [s for s in signals if s in b.highlight or s in REFERENCES]
        signals = [s for s in signals if s in {*signals[:25], *signals[-10:], *marked}]
    long = pd.concat(
        [
            ranked.assign(
                measure=mea,
                value=ranked[mea],
                ci_low=ranked[f"{mea}_ci_low"],
                ci_high=ranked[f"{mea}_ci_high"],
            )
            for mea in ("spearman", "kendall")
        ]
    )
    long = long[long["signal"].isin(signals)][["signal", "measure", "value", "ci_low", "ci_high"]]
    b.draw(
        f"oracle__{_slug_task(key)}",
        "oracle_correlation_bars",
        dict(quality=long, highlight=b.highlight, total=len(ranked), data=b.where(key)),
        f"Correlation of each signal's unit ranking with the oracle: {key}",
        HOW["oracle"],
    )


def rank_similarity(b: Builder, key: str, model: str, dataset: str) -> None:
    """Clustermap of the best-ranked scored signals (at most :data:`_MAX_SIMILARITY`), plus
    the highlighted ones and the references."""
    scores = b.data["scores"]
    scores = scores[(scores["model"] == model) & (scores["dataset"] == dataset)]
    scored = set(scores["signal"])
    order = [s for s in b.ranking["signal"] if s in scored and s not in REFERENCES]
    extra = [s for s in scored if s not in b.ranking["signal"].values]
    chosen = [*order[:_MAX_SIMILARITY], *sorted(extra)][:_MAX_SIMILARITY]
    chosen += [s for s in sorted(scored) if (s in b.highlight or s in REFERENCES) and s not in chosen]
    sim = rank_quality.rank_similarity(scores, signals=chosen)
    b.draw(
        f"similarity__{_slug_task(key)}",
        "rank_similarity_clustermap",
        dict(similarity=sim, highlight=b.highlight, data=b.where(key)),
        f"Rank similarity between signals: {key} ({len(chosen)} of {len(scored)} scored signals)",
        HOW["similarity"],
    )
