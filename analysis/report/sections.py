"""The report's sections in reading order: headings, prose and tables.

Each section takes the :class:`~analysis.report.builder.Builder`, adds its blocks and
asks :mod:`analysis.report.figures` for its figures; :func:`analysis.report.build_report`
runs them in the order of :data:`SECTIONS` and logs the time of each.
"""

from __future__ import annotations

import pandas as pd

from analysis import stats
from analysis.report import figures, tables
from analysis.report.builder import Builder
from analysis.report.formatting import (
    aliases_display,
    effects_display,
    fmt_p,
    interaction_display,
    quality_display,
    stability_display,
    summary_display,
    wilcoxon_display,
)

__all__ = [
    "SECTIONS",
    "intro",
    "ranking_tables",
    "statistics",
    "curves",
    "heatmaps",
    "effects",
    "stability",
    "oracle",
    "aliases",
]

_SKIPPED = "Skipped: see the notes at the top."


def intro(b: Builder) -> None:
    """What the store holds and how the headline is read off each run."""
    trials, failed = b.data["trials"], b.data["failed"]
    b.doc.heading(1, f"prunetax report: {b.root.name}")
    b.doc.para(
        f"Store `{b.root}`: {len(trials)} trials ({failed} failed, left out) of {b.n_signals} "
        f"signals on {len(b.tasks)} tasks ({', '.join(b.tasks)}), up to {b.seeds} seeds per "
        f"signal and task. Headline metric `{b.metric}`: {b.label}, read off each run's test "
        "accuracy curve anchored at (0 %, reference accuracy) and linearly interpolated. Across seeds: "
        "geometric mean (the paper's aggregate, shifted by 1 point so zeros are allowed), mean ± std, "
        "and a 95 % percentile-bootstrap interval of the geomean over seeds; dist = the best signal's "
        "geomean − this signal's. Figures are PNG files referenced by relative path (figures/), each "
        "with an SVG version linked; this page loads nothing from the network."
    )


def ranking_tables(b: Builder) -> None:
    """The overall top table of each protocol (the headline comparison first), then the
    top of each task."""
    multi = b.multi_protocol
    for i, c in enumerate(b.comparisons):
        scope = f": `{c.protocol}` protocol" if multi else ""
        b.doc.heading(2, f"Overall ranking{scope} (top {b.top})")
        b.doc.para(
            f"{len(c.ranking)} signals ordered by their mean rank over the {len(c.tasks)} "
            f"task{'s' * (len(c.tasks) > 1)} of {_protocol_phrase(c.protocol)} (within a task, "
            "signals are ranked by the geomean over seeds, 1 = best; a signal missing from a task "
            "comes after those run on all); wins = tasks where the signal is best. geomean, "
            "mean ± std, 95% CI, dist and n seeds pool those tasks and their seeds. References "
            "(`random`, `oracle`) are ranked with the signals for scale."
            + (" Protocols are ranked apart: their tasks compare different sets of signals." * multi)
        )
        b.doc.table(summary_display(c.top_table), anchor="top-table" if i == 0 else "")
    b.doc.heading(2, f"Top {b.top} per task")
    for task in b.tasks:
        b.doc.heading(3, task)
        part = b.by_task[b.by_task["task"] == task].sort_values("rank").head(b.top)
        b.doc.table(summary_display(part))


def _protocol_phrase(protocol: str) -> str:
    return "the store" if protocol == "all" else f"the `{protocol}` protocol"


def statistics(b: Builder) -> None:
    """Per protocol: Friedman over its task blocks, Wilcoxon-Holm tables, the CD diagram."""
    b.doc.heading(2, "Statistical comparison across tasks")
    multi = b.multi_protocol
    level = 3 + multi
    for c in b.comparisons:
        if multi:
            b.doc.heading(3, f"`{c.protocol}` protocol")
        notes: list[str] = []
        result = tables.compare_over_tasks(c.m, b.metric, b.hib, b.top, notes)
        b.notes.extend(f"`{c.protocol}` protocol: {n}" if multi else n for n in notes)
        if not result:
            b.doc.para(_SKIPPED)
            continue
        if "friedman" in result:
            b.doc.para(_friedman_text(result["friedman"]))
        best = result["vs_best"]["a"].iloc[0] if len(result["vs_best"]) else ""
        b.doc.heading(level, f"Wilcoxon signed-rank + Holm: top signals vs the best (`{best}`)")
        b.doc.para("Paired over tasks; p (Holm) corrects for the number of comparisons in the table.")
        b.doc.table(wilcoxon_display(result["vs_best"]))
        if "vs_random" in result:
            b.doc.heading(level, "Wilcoxon signed-rank + Holm: top signals vs `random`")
            b.doc.table(wilcoxon_display(result["vs_random"]))
        if "nemenyi" in result:
            figures.cd_diagram(b, result, c)


def _friedman_text(f: dict[str, object]) -> str:
    return (
        f"Friedman test over {f['n_blocks']} task blocks and {f['n_treatments']} signals "
        f"(seeds averaged within a task first): χ² = {f['statistic']:.2f}, p = {fmt_p(f['pvalue'])}; "
        f"Iman-Davenport F = {f['iman_davenport']:.2f}, p = {fmt_p(f['iman_davenport_pvalue'])}. "
        "A small p says the signals do not all rank alike; which pairs differ is for the "
        "Wilcoxon-Holm tests below."
    )


def curves(b: Builder) -> None:
    """Accuracy against weight and MAC sparsity."""
    b.doc.heading(2, "Accuracy against sparsity")
    b.doc.para(
        f"The {tables.CURVE_TOP} best signals overall (by mean rank), every literature alias that was run, "
        "and the `random` and `oracle` references, one panel per task."
    )
    figures.accuracy_curves(b)


def heatmaps(b: Builder) -> None:
    """The headline over the reduction x scaling grid of each input and pointwise measure."""
    b.doc.heading(2, "Headline by reduction × scaling")
    figures.heatmaps(b)


def effects(b: Builder) -> None:
    """Component-effect bars (overall, then per task), the first one's table and the
    reduction x scaling interaction."""
    b.doc.heading(2, "Component effects")
    found = tables.component_effects(b.m, b.metric, b.notes)
    if not found:
        b.doc.para(_SKIPPED)
        return
    keys = ["overall", *b.tasks] if len(b.tasks) > 1 else b.tasks
    for key in keys:
        if figures.effect_bars(b, key, found.get(key)) and key == keys[0]:
            b.doc.table(effects_display(found[key]))
    inter = found.get("interaction")
    if inter is not None and inter.size:
        b.doc.heading(3, "Reduction × scaling: mean headline over the other components")
        b.doc.table(interaction_display(inter))


def stability(b: Builder) -> None:
    """Kendall's W of the seeds' rankings per task (needs two seeds)."""
    b.doc.heading(2, "Rank stability across seeds (Kendall's W)")
    if b.seeds < 2:
        b.notes.append("one seed per signal: no seed bands, intervals or rank stability.")
        b.doc.para("Skipped: one seed.")
        return
    table = stats.rank_stability(b.m, b.metric)
    b.doc.para(
        "Per task, each seed ranks the signals; W = 1 when every seed gives the same ranking, "
        "0 when the seeds agree no more than chance (p: χ² test of no agreement)."
    )
    b.doc.table(stability_display(table))


def oracle(b: Builder) -> None:
    """Per model/dataset: agreement with the oracle (bars, best and worst) and rank similarity."""
    b.doc.heading(2, "Rank quality against the oracle")
    found = tables.oracle_quality(b.data, b.notes)
    if not found:
        b.doc.para(_SKIPPED)
        return
    b.quality = found["summary"]
    for (model, dataset), part in b.quality.groupby(["model", "dataset"], sort=True):
        key = f"{model}/{dataset}"
        b.doc.heading(3, key)
        figures.oracle_bars(b, key, part)
        ranked = part.sort_values("spearman", ascending=False)
        k = min(5, len(ranked))
        b.doc.para(f"Best {k} and worst {k} signals by Spearman ρ (global ranking, mean over seeds).")
        b.doc.table(quality_display(pd.concat([ranked.head(k), ranked.tail(k)]).drop_duplicates()))
        figures.rank_similarity(b, key, model, dataset)


def aliases(b: Builder) -> None:
    """Where the named literature signals and the references stand, per protocol."""
    b.doc.heading(2, "Literature signals and references")
    quality = b.quality if b.quality is not None else pd.DataFrame(columns=["signal", "spearman"])
    rho = quality.groupby("signal")["spearman"].mean() if len(quality) else pd.Series(dtype=float)
    multi = b.multi_protocol
    for c in b.comparisons:
        ranking = c.ranking
        rows = ranking[(ranking["alias"].astype(str) != "") | tables.is_ref(ranking["signal"])]
        if multi:
            b.doc.heading(3, f"`{c.protocol}` protocol")
        if rows.empty:
            b.doc.para("No literature alias or reference signal was run.")
            continue
        b.doc.para(
            f"Where the paper's and the literature's named signals stand among all {len(ranking)} "
            f"signals of {_protocol_phrase(c.protocol)} (overall rank by mean rank over its tasks; "
            "geomean and dist pooled over those tasks and seeds)."
        )
        b.doc.table(aliases_display(rows, len(ranking), c.pooled.set_index("signal"), rho))


SECTIONS = (intro, ranking_tables, statistics, curves, heatmaps, effects, stability, oracle, aliases)
"""Every section, in the order the documents show them."""
