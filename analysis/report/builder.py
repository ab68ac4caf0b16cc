"""What every section shares: the numbers computed once, the document and the renderer."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from analysis import metrics
from analysis.report.document import Document
from analysis.report.figures import Renderer
from analysis.report.formatting import metric_label
from analysis.report.tables import REFERENCES, top_table

__all__ = ["Builder"]


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
        self.by_task = metrics.summarise(m, metric, by=("task",), higher_is_better=self.hib)
        self.pooled = metrics.summarise(m, metric, by=(), higher_is_better=self.hib)
        self.ranking = metrics.overall_ranking(self.by_task)
        self.top_table = top_table(self.ranking, self.pooled, top)
        leaders = [s for s in self.ranking["signal"] if s not in REFERENCES][:top]
        aliased = self.ranking.loc[self.ranking["alias"].astype(str) != "", "signal"]
        self.highlight = set(leaders) | set(aliased)

    def where(self, task: str | None = None) -> str:
        """The 'on what data' line of a figure title."""
        scope = task if task else f"{len(self.tasks)} task{'s' * (len(self.tasks) > 1)}"
        seeds = f"{self.seeds} seed{'s' * (self.seeds > 1)}"
        return f"{scope} · {self.n_signals} signals × {seeds} · store `{self.root.name}`"

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
