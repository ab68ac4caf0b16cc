"""What every section shares: the numbers computed once, the document and the renderer."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from analysis import metrics, stats
from analysis.design import label_order
from analysis.report.document import Document
from analysis.report.figures import Renderer, slug
from analysis.report.formatting import metric_label
from analysis.report.tables import REFERENCES, seed_counts, top_table

__all__ = ["Builder", "Comparison", "RANKING_RULE"]

RANKING_RULE = (
    "One rule ranks signals in every table, diagram and test of this report. Trials are grouped by "
    "protocol label (the protocol plus any non-default parameter, e.g. `sensitivity [aggregation=sum]`): "
    "labels are different experiments and are ranked apart. Signals are ranked within blocks. When every "
    'repeat is independent (its own data split, base model and evaluation batches: `seeds = "base"`), '
    "a block is one repeat of one task (model × dataset × label) and a signal's value in it is its "
    "headline; otherwise a block is a task and the value is the geometric mean of the headline over its "
    "seeds. (`random`: per seed, the median over its draws first.) Within a block, signals are ranked by "
    "that value, 1 = best, ties sharing the average rank, among the signals with a value in every block "
    "of the label. A signal's mean rank is the mean of those ranks over the label's blocks; signals "
    "missing from some block get none and are listed after the rest. The overall tables, the "
    "critical-difference diagrams, Friedman's test and the Wilcoxon-Holm tables (whose control is the "
    "best-ranked signal other than `random` and `oracle`) all use these values and ranks."
)
"""The ranking rule, stated once in the introduction of every report."""


@dataclass
class Comparison:
    """The signals of one protocol label compared over its tasks (model x dataset blocks).

    Ranks are only averaged over tasks of the same label: a signal run only under
    ``sensitivity`` and one run under ``retrain`` as well were never measured against the
    same competitors, and two variants of one protocol are different experiments.
    """

    protocol: str  # the protocol label
    tasks: list[str]
    block: tuple[str, ...]  # what a block of the ranks and tests is (metrics.ranking_blocks)
    m: pd.DataFrame  # this label's trial metrics, one row per seed (draws collapsed)
    raw: pd.DataFrame  # the same with every draw of `random`
    by_task: pd.DataFrame  # metrics.summarise per task
    ranking: pd.DataFrame  # metrics.overall_ranking over its tasks
    pooled: pd.DataFrame  # metrics.summarise pooled over its tasks and seeds
    top_table: pd.DataFrame
    wide: pd.DataFrame  # blocks x complete signals: the geomean each rank is taken from
    spread: pd.DataFrame  # metrics.draw_spread pooled over its tasks

    @property
    def slug(self) -> str:
        """The label as a file-name part (figures, CSV data)."""
        return slug(self.protocol)

    @property
    def mean_ranks(self) -> pd.Series:
        """The complete signals' mean ranks (tables and CD diagram), best first."""
        ranks = self.ranking.dropna(subset=["mean_rank"]).set_index("signal")["mean_rank"]
        return ranks.rename("mean_rank")


class Builder:
    """Computes the summaries once; the sections then add blocks and figures in order."""

    def __init__(
        self, root: Path, data: dict, m: pd.DataFrame, metric: str, top: int, renderer: Renderer
    ) -> None:
        self.root, self.data, self.metric, self.top = root, data, metric, top
        self.raw = m  # one row per trial (every draw of random)
        self.m = metrics.collapse_draws(m)  # one row per seed: what ranks and tests use
        self.renderer, self.out = renderer, renderer.out
        self.hib = not metric.startswith("retrain_steps")
        self.label = metric_label(metric)
        self.notes: list[str] = []
        self.doc = Document()
        self.quality: pd.DataFrame | None = None  # the oracle section's summary, for the aliases table
        self.findings: list = []  # the findings section's analysis.findings.Finding list
        self.tasks = sorted(self.m["task"].unique())
        self.seeds = int(seed_counts(self.m, ["task", "signal"]).max())
        self.n_signals = self.m["signal"].nunique()
        self._summaries(top)

    def _summaries(self, top: int) -> None:
        """Per task, then per protocol label; the paper's protocol leads (``ranking``,
        ``pooled``, ``top_table``: what the CLI prints)."""
        self.by_task = metrics.summarise(self.m, self.metric, by=("task",), higher_is_better=self.hib)
        labels = label_order(self.m)
        self.comparisons = [self._compare(label, top) for label in labels]
        self.tasks = [t for c in self.comparisons for t in c.tasks]  # the leading label's tasks first
        head = self.comparisons[0]
        self.ranking, self.pooled, self.top_table = head.ranking, head.pooled, head.top_table
        leaders = [s for s in self.ranking["signal"] if s not in REFERENCES][:top]
        aliased = self.ranking.loc[self.ranking["alias"].astype(str) != "", "signal"]
        self.highlight = set(leaders) | set(aliased)

    def _compare(self, label: str, top: int) -> Comparison:
        part = self.m[self.m["protocol_label"] == label]
        raw = self.raw[self.raw["protocol_label"] == label]
        tasks = sorted(part["task"].unique())
        by_task = self.by_task[self.by_task["task"].isin(tasks)]
        block = metrics.ranking_blocks(part)
        by_block = (
            by_task
            if block == ("task",)
            else metrics.summarise(part, self.metric, by=block, higher_is_better=self.hib)
        )
        ranking = metrics.overall_ranking(by_block, higher_is_better=self.hib, block=block)
        if block != ("task",):  # n_tasks counts tasks, not repeats; n_wins counts blocks won
            ranking["n_tasks"] = ranking["signal"].map(
                part.groupby("signal", observed=True)["task"].nunique()
            )
        pooled = metrics.summarise(part, self.metric, by=(), higher_is_better=self.hib)
        spread = metrics.draw_spread(raw, self.metric, by=())
        table = top_table(ranking, pooled, part, spread, top)
        wide = stats.summary_matrix(by_block, "geomean", block)
        return Comparison(label, tasks, block, part, raw, by_task, ranking, pooled, table, wide, spread)

    @property
    def multi_protocol(self) -> bool:
        """Whether the store holds several protocol labels (each ranked under its own heading)."""
        return len(self.comparisons) > 1

    def where(self, task: str | None = None, comparison: Comparison | None = None) -> str:
        """The 'on what data' line of a figure title: one task (or model/dataset), one label's
        tasks, or all."""
        if task:
            scope, frame = task, self.m[self.m["task"] == task]
            if frame.empty:  # a model/dataset key: every label's trials on that network
                frame = self.m[self.m["model"].astype(str) + "/" + self.m["dataset"].astype(str) == task]
        elif comparison is not None:
            n = len(comparison.tasks)
            scope, frame = f"{n} {comparison.protocol} task{'s' * (n > 1)}", comparison.m
        else:
            scope, frame = f"{len(self.tasks)} task{'s' * (len(self.tasks) > 1)}", self.m
        counts = seed_counts(frame, ["task", "signal"])
        lo, hi = (int(counts.min()), int(counts.max())) if len(counts) else (0, 0)
        seeds = f"{lo}–{hi}" if lo != hi else f"{hi}"
        return f"{scope} · {seeds} seed{'s' * (hi > 1)} per signal and task · store `{self.root.name}`"

    def draw(self, name: str, plot: str, kwargs: dict, title: str, how: str) -> None:
        """Render ``analysis.plots.<plot>(**kwargs)`` as figure ``name``; place it in the documents."""
        self.renderer.submit(name, plot, kwargs)
        self.doc.figure(name, title, how)

    def write(self) -> tuple[Path, Path]:
        """Write ``summary.md`` and ``index.html``: figures that failed become notes, and the
        notes go right under the introduction."""
        failed = self.renderer.failed
        for name, error in failed.items():  # a plot that refused its data: no figure, a note
            self.notes.append(f"figure `{name}` skipped: {error}")
        self.doc.blocks = [b for b in self.doc.blocks if not (b[0] == "figure" and b[1][0] in failed)]
        self.doc.blocks.insert(2, ("notes", self.notes))
        self.out.mkdir(parents=True, exist_ok=True)
        summary_md, index_html = self.out / "summary.md", self.out / "index.html"
        summary_md.write_text(self.doc.markdown(), encoding="utf-8")
        index_html.write_text(self.doc.html(f"prunetax report: {self.root.name}"), encoding="utf-8")
        return summary_md, index_html
