"""The report's sections in reading order: headings, prose and tables.

Each section takes the :class:`~analysis.report.builder.Builder`, adds its blocks and
asks :mod:`analysis.report.figures` for its figures; :func:`analysis.report.build_report`
runs them in the order of :data:`SECTIONS` and logs the time of each. The sections on
the study's design and validity (test noise, the paper's findings, aggregation, data
integrity) live in :mod:`analysis.report.study_sections`.
"""

from __future__ import annotations

import pandas as pd

from analysis import metrics, stats
from analysis.report import costs_section, dynamic_section, figures, methods_section, study_sections, tables
from analysis.report.builder import RANKING_RULE, Builder
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
    """What the store holds, how the headline is read off each run, and the ranking rule."""
    trials, failed = b.data["trials"], b.data["failed"]
    labels = [c.protocol for c in b.comparisons]
    b.doc.heading(1, f"prunetax report: {b.root.name}")
    b.doc.para(
        f"Store `{b.root}`: {len(trials)} ok trials ({failed} failed or invalidated, left out) of "
        f"{b.n_signals} signals on {len(b.tasks)} tasks (model × dataset × protocol label), under "
        f"{len(labels)} protocol label{'s' * (len(labels) > 1)}: {', '.join(f'`{x}`' for x in labels)}; "
        f"`{labels[0]}` leads every section. Headline metric `{b.metric}`: {b.label}, read off each run's "
        "test accuracy curve anchored at (0 %, reference accuracy) and linearly interpolated. Across seeds: "
        "geometric mean (the paper's aggregate, shifted by 1 point so zeros are allowed), mean ± std, "
        "and a 95 % percentile-bootstrap interval of the geomean over seeds; dist = the best signal's "
        "geomean − this signal's. Figures are PNG files referenced by relative path (figures/), each "
        "with an SVG version linked; this page loads nothing from the network."
    )
    older = b.data.get("older_versions", 0)
    if older:
        b.notes.append(
            f"{older} trials computed by an older engine version (`trials.trial_version`) are left out; "
            "their signals are rerun under the current version by the sweep (docs/store.md)."
        )
    b.doc.heading(2, "How signals are ranked")
    b.doc.para(RANKING_RULE)
    study_sections.what_was_run(b)


def ranking_tables(b: Builder) -> None:
    """The overall top table of each protocol label (the paper's protocol first), the test
    set's noise next to the first, then the top of each task."""
    for i, c in enumerate(b.comparisons):
        seeds = tables.seed_counts(c.m, ["task", "signal"])
        b.doc.heading(2, f"Overall ranking: `{c.protocol}` (top {b.top})")
        b.doc.para(
            f"{len(c.ranking)} signals of {len(c.tasks)} task{'s' * (len(c.tasks) > 1)} "
            f"({', '.join(c.tasks)}), {_range(seeds)} seeds per signal and task, ranked by the rule above "
            "(mean rank: data in "
            f"`figures/{figures.rank_data(b, c)}`). tasks = tasks the signal ran on, wins = blocks "
            f"({' × '.join(c.block)}) where it is best; geomean, mean ± std, 95% CI and dist pool those "
            "tasks and their seeds; seeds counts distinct seeds. References (`random`, `oracle`) are "
            "ranked with the signals for scale."
        )
        b.doc.table(summary_display(c.top_table), anchor="top-table" if i == 0 else "")
        study_sections.random_draws(b, c)
        if i == 0:
            study_sections.noise_table(b)
    b.doc.heading(2, f"Top {b.top} per task")
    spread = metrics.draw_spread(b.raw, b.metric, by=("task",))
    for task in b.tasks:
        b.doc.heading(3, task)
        part = b.by_task[b.by_task["task"] == task].sort_values("rank").head(b.top)
        if len(spread):
            part = part.merge(spread.drop(columns="task")[spread["task"] == task], on="signal", how="left")
        b.doc.table(summary_display(part))


def _range(counts: pd.Series) -> str:
    lo, hi = int(counts.min()), int(counts.max())
    return f"{lo}–{hi}" if lo != hi else f"{hi}"


def statistics(b: Builder) -> None:
    """Per protocol label: Friedman over its blocks, Wilcoxon-Holm tables, the CD diagram."""
    b.doc.heading(2, "Statistical comparison across tasks")
    b.doc.para(
        "Blocks are the ranking rule's: one independent repeat of one task when repeats are independent "
        "(each has its own data split, base model and evaluation batches, so repeats are replications of "
        "the experiment, as datasets are in Demšar's comparisons), else one task (seeds that share a base "
        "model are summarised within their task first: as blocks they would be pseudo-replication). The "
        "values are the ranking rule's, so these tests, the tables and the CD diagrams rank alike. "
        "Conclusions generalise to new repeats of these networks on this data, not to other networks."
    )
    for c in b.comparisons:
        b.doc.heading(3, f"`{c.protocol}`")
        notes: list[str] = []
        result = tables.compare_over_tasks(c, b.hib, b.top, notes)
        b.notes.extend(f"`{c.protocol}`: {n}" for n in notes)
        if not result:
            b.doc.para(_SKIPPED)
            continue
        if "friedman" in result:
            b.doc.para(_friedman_text(result["friedman"]))
        if "vs_best" in result:
            best = result["vs_best"]["a"].iloc[0] if len(result["vs_best"]) else ""
            b.doc.heading(4, f"Wilcoxon signed-rank + Holm: top signals vs the best (`{best}`)")
            b.doc.para(
                "The control is the table's best-ranked signal other than the references. Paired over "
                "blocks; p (Holm) corrects for the number of comparisons in the table."
            )
            b.doc.table(wilcoxon_display(result["vs_best"]))
        if "vs_random" in result:
            b.doc.heading(4, "Wilcoxon signed-rank + Holm: top signals vs `random`")
            b.doc.table(wilcoxon_display(result["vs_random"]))
        if "nemenyi" in result:
            figures.cd_diagram(b, result, c, f"mean_ranks__{c.slug}.csv")


def _friedman_text(f: dict[str, object]) -> str:
    text = (
        f"Friedman test over {f['n_blocks']} blocks and {f['n_treatments']} signals: "
        f"χ² = {f['statistic']:.2f}, p = {fmt_p(f['pvalue'])}; Iman-Davenport F = {f['iman_davenport']:.2f}, "
        f"p = {fmt_p(f['iman_davenport_pvalue'])}; permutation p (signals shuffled within each block) = "
        f"{fmt_p(f['pvalue_permutation'])}. "
    )
    if f["caveat"]:
        text += f"Caveat: {f['caveat']}. "
    return text + (
        "A small p says the signals do not all rank alike; which pairs differ is for the Wilcoxon-Holm "
        "tests below."
    )


def curves(b: Builder) -> None:
    """Accuracy against weight and MAC sparsity, per protocol label."""
    b.doc.heading(2, "Accuracy against sparsity")
    for c in b.comparisons:
        b.doc.heading(3, f"`{c.protocol}`")
        figures.accuracy_curves(b, c)


def heatmaps(b: Builder) -> None:
    """The headline over the reduction x scaling grid of each input and pointwise measure."""
    b.doc.heading(2, "Headline by reduction × scaling")
    figures.heatmaps(b)


def effects(b: Builder) -> None:
    """Component-effect bars (the leading label's tasks, then per task), the first one's
    table and the reduction x scaling interaction."""
    b.doc.heading(2, "Component effects")
    head = b.comparisons[0]
    found = tables.component_effects(b.m, head.tasks, b.metric, b.notes)
    if not found:
        b.doc.para(_SKIPPED)
        return
    views = [("overall", f"`{head.protocol}` (its {len(head.tasks)} tasks pooled)", b.where(comparison=head))]
    views = views if len(head.tasks) > 1 else []
    views += [(t, f"`{t}`", b.where(t)) for t in head.tasks]
    first = True
    for key, what, where in views:
        if figures.effect_bars(b, key, found.get(key), what, where) and first:
            b.doc.table(effects_display(found[key]))
            first = False
    inter = found.get("interaction")
    if inter is not None and inter.size:
        b.doc.heading(3, f"Reduction × scaling: mean headline over the other components (`{head.protocol}`)")
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
    """Per model/dataset: agreement with the oracle (bars, best and worst) and rank similarity;
    then agreement along the oracle's own trajectory when the store has later steps."""
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
    study_sections.oracle_trajectory(b, found["by_step"])


def aliases(b: Builder) -> None:
    """Where the named literature signals and the references stand, per protocol label."""
    b.doc.heading(2, "Literature signals and references")
    quality = b.quality if b.quality is not None else pd.DataFrame(columns=["signal", "spearman"])
    rho = quality.groupby("signal")["spearman"].mean() if len(quality) else pd.Series(dtype=float)
    for c in b.comparisons:
        ranking = c.ranking
        rows = ranking[(ranking["alias"].astype(str) != "") | tables.is_ref(ranking["signal"])]
        b.doc.heading(3, f"`{c.protocol}`")
        if rows.empty:
            b.doc.para("No literature alias or reference signal was run.")
            continue
        b.doc.para(
            f"Where the paper's and the literature's named signals stand among all {len(ranking)} "
            f"signals of `{c.protocol}` (overall rank and mean rank by the rule above, data in "
            f"`figures/mean_ranks__{c.slug}.csv`; geomean and dist pooled over its tasks and seeds; "
            "`random`: also the median and 10–90 % range over all its draws)."
        )
        b.doc.table(aliases_display(rows, len(ranking), c.pooled.set_index("signal"), rho, c.spread))


SECTIONS = (
    intro,
    study_sections.integrity,
    ranking_tables,
    statistics,
    study_sections.findings,
    curves,
    heatmaps,
    effects,
    study_sections.aggregation,
    stability,
    oracle,
    aliases,
    methods_section.methods,
    costs_section.sections,
    dynamic_section.dynamic_selection,
)
"""Every section, in the order the documents show them."""
