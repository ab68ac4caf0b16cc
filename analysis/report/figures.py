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
from analysis.report.tables import CD_TOP, CURVE_TOP, REFERENCES, bands, components, curve_signals

if TYPE_CHECKING:
    from analysis.report.builder import Builder, Comparison

__all__ = [
    "HOW",
    "use_agg",
    "slug",
    "Renderer",
    "rank_data",
    "cd_diagram",
    "accuracy_curves",
    "heatmaps",
    "effect_bars",
    "oracle_bars",
    "rank_similarity",
    "oracle_steps",
]

_log = logging.getLogger("analysis.report")  # one logger for the whole report
_MAX_SIMILARITY = 40  # signals in the clustermap (plus aliases)
_MAX_BARS = 40  # signals in the oracle-correlation bars

HOW = {
    "curves": "Which signals are drawn: the {top} best by mean rank (the ranking rule above, references "
    "excluded), then every literature alias that was run, then `random` and `oracle`. One panel per task. "
    "Each line is a signal's test accuracy averaged over seeds at each sparsity (curves interpolated on a "
    "1 %-step grid, drawn while every seed still has data); the shaded band spans the seeds' minimum to "
    "maximum. `random` is drawn several times per seed: its line is the median over all its draws and its "
    "band their 10–90 % range. Colour = pointwise family (a shade per signal), line style and marker "
    "tell signals of one family apart; random is dashed grey, oracle dotted grey. Further right before "
    "the drop = better: the headline reads off where a curve falls below reference − d points.",
    "heatmap": "Each block fixes the input (block column) and pointwise measure (block row); its cells are "
    "the reduction (rows) × scaling (columns) choices. Colour and number: the geomean headline over "
    "seeds (higher = better), one shared colour scale for every panel. Pale blank cells were not run "
    "(e.g. cells equivalent to another and represented by it).",
    "cd": "Signals on the axis by mean rank over blocks, the ranks of the tables (the ranking rule above; "
    "data: `figures/{csv}`). A thick bar joins signals whose Nemenyi p-value is ≥ 0.05 (no detectable "
    "difference); the scale bar is the critical difference CD. Nemenyi depends on which signals are in "
    "the pool: base claims on the Wilcoxon-Holm tables.",
    "effects": "For each component, the bar is how much choosing that option changes the headline "
    "relative to the average option of that component, comparing signals that agree on the other three "
    "components in the same task (matched sets). Whiskers: 95 % bootstrap interval over matched sets; "
    "bars crossing zero are not distinguishable from the average option. n = matched sets.",
    "oracle": "How well each signal's ranking of units on the unpruned network agrees with the oracle "
    "(measured loss change when the unit is removed): Spearman ρ (left) and Kendall τ (right) over all "
    "units, averaged over seeds, whiskers = 95 % bootstrap interval over seeds. +1 = prunes exactly in "
    "the oracle's order, 0 = unrelated. Bold, outlined bars: the top signals and literature aliases.",
    "steps": "The oracle prunes its least important unit, step after step; at each step every signal "
    "scores the units still active and its ranking is correlated with the oracle's (Spearman ρ over "
    "those units, mean over seeds). Step 0 is the unpruned network (the bars above). A line that falls "
    "means a signal agrees less with the oracle as pruning proceeds. Drawn: the best signals by mean rank "
    "and the literature aliases.",
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


def slug(task: str) -> str:
    """A task, protocol label or model/dataset key as a file-name part."""
    return "".join(c if c.isalnum() or c in "_." else "-" for c in str(task)).strip("-")


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


def rank_data(b: Builder, c: Comparison) -> str:
    """Write the mean ranks of one comparison (what its table prints and its CD diagram
    draws) as ``figures/mean_ranks__<label>.csv``; return that name."""
    name = f"mean_ranks__{c.slug}.csv"
    ranks = c.mean_ranks
    frame = pd.DataFrame(
        {
            "signal": ranks.index,
            "mean_rank": ranks.to_numpy(),
            "n_tasks": len(c.tasks),
            "in_cd_diagram": [i < CD_TOP for i in range(len(ranks))],
        }
    )
    b.renderer.fig_dir.mkdir(parents=True, exist_ok=True)
    frame.to_csv(b.renderer.fig_dir / name, index=False, float_format="%.17g")
    return name


def cd_diagram(b: Builder, result: dict[str, object], c: Comparison, csv: str) -> None:
    """The critical-difference diagram of the best :data:`CD_TOP` signals of a comparison,
    from the same mean ranks as its table (``cd_diagram__<label>``)."""
    ranks = c.mean_ranks
    shown = min(CD_TOP, len(ranks))
    b.draw(
        f"cd_diagram__{c.slug}",
        "cd_diagram",
        dict(
            mean_ranks=ranks,
            pvalues=result["nemenyi"],
            cd=result["cd"],
            top=CD_TOP,
            data=b.where(comparison=c),
        ),
        f"Critical-difference diagram, `{c.protocol}`: the {shown} best of {len(ranks)} signals by mean rank",
        HOW["cd"].format(csv=csv),
    )


def accuracy_curves(b: Builder, c: Comparison) -> None:
    """Accuracy against weight sparsity (and MAC sparsity, for the leading label) of one
    comparison's best signals, aliases and references; only their trials' steps are
    interpolated (a few dozen of the trials)."""
    trials = b.data["trials"]
    trials = trials[trials["protocol_label"] == c.protocol]
    chosen = curve_signals(c.ranking, set(trials["signal"]))
    picked = trials[trials["signal"].isin(chosen)]
    steps = b.data["steps"]
    steps = steps[steps["run_key"].isin(picked["run_key"])]
    ranked = [s for s in c.ranking["signal"] if s in set(chosen) and s not in REFERENCES]
    n_top = min(CURVE_TOP, len(ranked))
    n_alias, n_ref = len(ranked) - n_top, len(chosen) - len(ranked)
    aliases = f"{n_alias} more alias{'es' * (n_alias != 1)}"
    parts = f"the {n_top} best, {aliases}, {n_ref} reference{'s' * (n_ref != 1)}"
    total = c.m["signal"].nunique()
    subset = f"{len(chosen)} of {total} signals ({parts})"
    axes = [("sparsity", "weight sparsity"), ("macs_sparsity", "MAC sparsity")]
    for x, what in axes if c is b.comparisons[0] else axes[:1]:
        b.draw(
            f"curves_{'macs' if x == 'macs_sparsity' else 'weights'}__{c.slug}",
            "accuracy_curves",
            dict(bands=bands(steps, picked, x), x=x, order=chosen, data=b.where(comparison=c), subset=subset),
            f"Test accuracy vs {what}, `{c.protocol}`: {len(chosen)} of {total} signals drawn ({parts})",
            HOW["curves"].format(top=CURVE_TOP),
        )


def heatmaps(b: Builder) -> None:
    """Headline by reduction x scaling: one per protocol label (its tasks pooled, or its one
    task), then one per task of the leading label when it has several."""
    label = f"geomean {b.label}"
    views = []
    for c in b.comparisons:
        if len(c.tasks) > 1:
            views.append(
                (f"pooled__{c.slug}", f"{c.protocol}`, its {len(c.tasks)} tasks pooled", c.pooled, c)
            )
        else:
            views.append((slug(c.tasks[0]), c.tasks[0], b.by_task[b.by_task["task"] == c.tasks[0]], c))
    head = b.comparisons[0]
    if len(head.tasks) > 1:
        views += [(slug(t), t, b.by_task[b.by_task["task"] == t], None) for t in head.tasks]
    for key, what, frame, c in views:
        cells = components(frame)
        if cells.empty:
            b.notes.append(f"no taxonomy signals for `{what}`: heatmap skipped.")
            continue
        pooled = key.startswith("pooled__")
        where = b.where(comparison=c) + " (pooled)" if pooled else b.where(what)
        b.draw(
            f"heatmap__{key}",
            "component_heatmaps",
            dict(table=cells, label=label, data=where),
            f"{label} by reduction × scaling: `{what}`"
            + (f", its {len(c.tasks)} tasks pooled" if pooled else ""),
            HOW["heatmap"],
        )


def effect_bars(b: Builder, key: str, effects: pd.DataFrame | None, what: str, where: str) -> bool:
    """Component-effect bars of ``what`` (a label's tasks, or one task); False when nothing
    is estimable."""
    if effects is None or effects["effect"].notna().sum() == 0:
        b.notes.append(
            f"component effects of {what}: no option has an estimate (no two signals that "
            "differ in one component only); figure skipped."
        )
        return False
    b.draw(
        f"effects__{slug(key)}",
        "component_effect_bars",
        dict(effects=effects, unit=f"difference in {b.label}", data=where),
        f"Component effects on {b.label}: {what}",
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
        f"oracle__{slug(key)}",
        "oracle_correlation_bars",
        dict(quality=long, highlight=b.highlight, total=len(ranked), data=_rank_where(b, key, part)),
        f"Correlation of each signal's unit ranking with the oracle: {key}",
        HOW["oracle"],
    )


def _rank_where(b: Builder, key: str, quality: pd.DataFrame | None) -> str:
    """The data line of a rank-quality figure: the network and its rank-quality runs (seeds)."""
    runs = 0 if quality is None or quality.empty else int(quality["n_seeds"].max())
    runs_text = f"{runs} rank-quality run{'s' * (runs != 1)} (seeds)"
    return f"{key} · unpruned network, {runs_text} · store `{b.root.name}`"


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
    quality = b.quality if b.quality is not None else pd.DataFrame()
    network = quality[(quality["model"] == model) & (quality["dataset"] == dataset)] if len(quality) else None
    b.draw(
        f"similarity__{slug(key)}",
        "rank_similarity_clustermap",
        dict(similarity=sim, highlight=b.highlight, data=_rank_where(b, key, network)),
        f"Rank similarity between signals: {key} ({len(chosen)} of {len(scored)} scored signals)",
        HOW["similarity"],
    )


def oracle_steps(b: Builder, by_step: pd.DataFrame) -> None:
    """Spearman with the oracle along its own trajectory: the top signals by mean rank and the
    literature aliases (the highlighted ones) present at several steps."""
    present = set(by_step["signal"])
    order = [s for s in b.ranking["signal"] if s in b.highlight and s in present]
    total = by_step["signal"].nunique()
    b.draw(
        "oracle_steps",
        "rank_quality_steps",
        dict(by_step=by_step, signals=order, data=f"store `{b.root.name}` · mean over seeds"),
        f"Spearman ρ with the oracle along the oracle's trajectory: {len(order)} of {total} scored signals "
        "(the best by mean rank and the literature aliases)",
        HOW["steps"],
    )
