"""What every section shares: the numbers computed once, the document and the renderer."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from analysis import metrics
from analysis.report.document import Document
from analysis.report.figures import Renderer
from analysis.report.formatting import metric_label
from analysis.report.tables import REFERENCES, top_table

__all__ = ["Builder", "Comparison"]


@dataclass
class Comparison:
    """The signals of one protocol compared over its tasks (model x dataset blocks).

    Ranks are only averaged over tasks run under the same protocol: a signal run only under
    ``sensitivity`` and one run under ``retrain`` as well were never measured against the
    same competitors, so one mean rank over both would not compare like with like.
    """

    protocol: str
    tasks: list[str]
    m: pd.DataFrame  # this protocol's trial metrics
    ranking: pd.DataFrame  # metrics.overall_ranking over its tasks
    pooled: pd.DataFrame  # metrics.summarise pooled over its tasks and seeds
    top_table: pd.DataFrame


class Builder:
    """Computes the summaries once; the sections then add blocks and figures in order."""

    def __init__(
        self, root: Path, data: dict, m: pd.DataFrame, metric: str, top: int, renderer: Renderer
    ) -> None:
        self.root, self.data, self.m, self.metric, self.top = root, data, m, metric, top
        self.renderer, self.out = renderer, renderer.out
        self.hib = not metric.startswith("retrain_steps")
        self.label = metric_label(metric)
        self.notes: list[str] = []
        self.doc = Document()
        self.quality: pd.DataFrame | None = None  # the oracle section's summary, for the aliases table
        trials = data["trials"]
        self.tasks = sorted(trials["task"].unique())
        self.seeds = int(trials.groupby(["task", "signal"]).size().max())
        self.n_signals = trials["signal"].nunique()
        self._summaries(m, metric, top)

    def _summaries(self, m: pd.DataFrame, metric: str, top: int) -> None:
        """Per task, then per protocol; the protocol with the most signals is the headline
        comparison (``ranking``, ``pooled``, ``top_table``: what the CLI prints)."""
        self.by_task = metrics.summarise(m, metric, by=("task",), higher_is_better=self.hib)
        self.comparisons = [self._compare(str(p), part, top) for p, part in _by_protocol(m)]
        head = self.comparisons[0]
        self.ranking, self.pooled, self.top_table = head.ranking, head.pooled, head.top_table
        leaders = [s for s in self.ranking["signal"] if s not in REFERENCES][:top]
        aliased = self.ranking.loc[self.ranking["alias"].astype(str) != "", "signal"]
        self.highlight = set(leaders) | set(aliased)

    def _compare(self, protocol: str, part: pd.DataFrame, top: int) -> Comparison:
        tasks = sorted(part["task"].unique())
        ranking = metrics.overall_ranking(self.by_task[self.by_task["task"].isin(tasks)])
        pooled = metrics.summarise(part, self.metric, by=(), higher_is_better=self.hib)
        return Comparison(protocol, tasks, part, ranking, pooled, top_table(ranking, pooled, top))

    @property
    def multi_protocol(self) -> bool:
        """Whether the store holds several protocols (each then ranked under its own heading)."""
        return len(self.comparisons) > 1

    def where(self, task: str | None = None, comparison: Comparison | None = None) -> str:
        """The 'on what data' line of a figure title: one task, one protocol's tasks, or all."""
        n_signals = self.n_signals
        if task:
            scope = task
        elif comparison is not None and self.multi_protocol:
            n = len(comparison.tasks)
            scope = f"{n} `{comparison.protocol}` task{'s' * (n > 1)}"
            n_signals = comparison.m["signal"].nunique()
        else:
            scope = f"{len(self.tasks)} task{'s' * (len(self.tasks) > 1)}"
        seeds = f"{self.seeds} seed{'s' * (self.seeds > 1)}"
        return f"{scope} · {n_signals} signals × {seeds} · store `{self.root.name}`"

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


def _by_protocol(m: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """The metrics split by protocol, the one with the most signals (then tasks) first."""
    if "protocol" not in m:
        return [("all", m)]
    parts = list(m.groupby("protocol", sort=True, observed=True))
    return sorted(parts, key=lambda kv: (-kv[1]["signal"].nunique(), -kv[1]["task"].nunique(), kv[0]))
