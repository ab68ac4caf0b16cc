"""The report: one call turns a results store into figures, ``summary.md`` and ``index.html``.

:func:`build_report` reads each table of the store once, computes every number through
the public analysis API (:mod:`analysis.frames`, :mod:`analysis.metrics`,
:mod:`analysis.stats`, :mod:`analysis.effects`, :mod:`analysis.rank_quality`), draws every
figure with :mod:`analysis.plots` and writes::

    <out>/index.html        self-contained page (inline CSS, no scripts, no network):
                            tables as HTML, figures as <img> with *relative* paths
                            (figures/<name>.png; the SVG is linked next to each)
    <out>/summary.md        the same tables in Markdown
    <out>/figures/*.png|svg every figure, PNG (150 dpi) and SVG
    <out>/figures/mean_ranks__<label>.csv
                            the mean ranks each ranking table prints and its CD diagram
                            draws (one per protocol label; checked by
                            :func:`analysis.report.consistency.check_report`)

Missing pieces degrade to a note in both documents (no rank tables: no oracle plots; one
seed: no bands or stability; one task: no Friedman/Wilcoxon/CD). An empty or missing
store raises :class:`~taxonomy.errors.PrunetaxError`.

The modules: :mod:`~analysis.report.builder` computes the summaries once (one comparison
per protocol label, the paper's protocol first) and states the ranking rule,
:mod:`~analysis.report.tables` computes the numbers, :mod:`~analysis.report.formatting`
turns them into the strings shown, :mod:`~analysis.report.sections` and
:mod:`~analysis.report.study_sections` lay out the documents,
:mod:`~analysis.report.figures` draws and saves the figures, :mod:`~analysis.report.markdown`
and :mod:`~analysis.report.html` render the two documents, and
:mod:`~analysis.report.consistency` reads a written report back and checks that it agrees
with itself.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from analysis import metrics
from analysis.design import accuracy_noise
from analysis.report.builder import Builder
from analysis.report.figures import Renderer, use_agg
from analysis.report.sections import SECTIONS
from analysis.report.tables import REFERENCES, load, store_root
from study.store import Store
from taxonomy.errors import PrunetaxError, invalid

__all__ = ["build_report", "ReportResult", "REFERENCES"]

_log = logging.getLogger(__name__)


@dataclass
class ReportResult:
    """What :func:`build_report` wrote.

    Attributes
    ----------
    out_dir, index_html, summary_md : Path
        The report folder and its two documents.
    figures : dict
        Figure name -> [PNG path, SVG path], in the order they appear in the report.
    top : DataFrame
        The headline comparison's top table: the signals of the leading protocol label (the
        paper's ``sensitivity`` at one unit per step and default parameters when present),
        ranked by the report's rule (mean within-task rank of the geomean over seeds);
        ``geomean``, ``mean``, ``std``, ``ci_low``, ``ci_high``, ``dist`` pooled over its
        tasks and seeds, ``n_tasks``, ``n_seeds`` (distinct seeds) and, for ``random``, the
        median and 10-90 % range over its draws (``draw_*``).
    protocol : str
        That protocol label (``"all"`` for a store without a protocol column).
    protocols : int
        How many protocol labels the store holds (each is ranked apart in the documents).
    labels : list of str
        Every protocol label, in report order (the leading one first).
    noise : DataFrame
        Per network: reference accuracy, ``n_test`` and the binomial standard error ``se``
        of test accuracy (points; :func:`analysis.design.accuracy_noise`).
    findings : list
        The paper's findings checked on the leading label (:mod:`analysis.findings`).
    notes : list of str
        What was skipped and why.
    """

    out_dir: Path
    index_html: Path
    summary_md: Path
    figures: dict[str, list[Path]] = field(default_factory=dict)
    top: pd.DataFrame = field(default_factory=pd.DataFrame)
    protocol: str = ""
    protocols: int = 1
    labels: list[str] = field(default_factory=list)
    noise: pd.DataFrame = field(default_factory=pd.DataFrame)
    findings: list = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def figure_paths(self) -> list[Path]:
        """Every figure file written (PNG and SVG)."""
        return [p for paths in self.figures.values() for p in paths]


def build_report(
    store: str | Path | Store,
    out_dir: str | Path,
    metric: str = "sparsity_at_5",
    top: int = 10,
) -> ReportResult:
    """Write the full report of a results store: figures, ``summary.md`` and ``index.html``.

    Parameters
    ----------
    store
        Store root (the folder holding ``trials/``, ``steps/``, ...) or a
        :class:`~study.store.Store`.
    out_dir
        Report folder (created; files in it are overwritten).
    metric
        Headline column of :func:`analysis.metrics.trial_metrics` (``sparsity_at_5``,
        ``sparsity_at_1``, ``macs_sparsity_at_5``, ``auc``, ``retrain_steps_at_5``, ...;
        ``retrain_steps_*`` rank lower as better).
    top
        Rows of the top tables; also how many signals are compared in the Wilcoxon tables
        and highlighted in the rank-quality figures.

    Returns
    -------
    ReportResult
        Paths of everything written, the overall top table and the notes on skipped parts.

    Raises
    ------
    PrunetaxError
        For a missing or empty store, a store without successful trials, an unknown
        ``metric`` or ``top < 1``.
    """
    _check_arguments(metric, top)
    root = store_root(store)
    use_agg()
    clock = time.perf_counter()
    data = load(root)
    m = metrics.trial_metrics(data["trials"], data["steps"])
    builder = Builder(root, data, m, metric, int(top), Renderer(Path(out_dir)))
    _log.info("load + metrics + summaries: %.1f s", time.perf_counter() - clock)
    for section in SECTIONS:
        clock = time.perf_counter()
        section(builder)
        _log.info("%s: %.1f s", section.__name__, time.perf_counter() - clock)
    summary_md, index_html = builder.write()
    return ReportResult(
        out_dir=builder.out,
        index_html=index_html,
        summary_md=summary_md,
        figures=builder.renderer.done,
        top=builder.top_table,
        protocol=builder.comparisons[0].protocol,
        protocols=len(builder.comparisons),
        labels=[c.protocol for c in builder.comparisons],
        noise=accuracy_noise(data["trials"]),
        findings=builder.findings,
        notes=list(builder.notes),
    )


def _check_arguments(metric: str, top: int) -> None:
    """Fail before touching the store: a headline the metrics do not compute, or no rows."""
    if int(top) < 1:
        raise PrunetaxError(f"`top` must be >= 1; got {top!r}.")
    heads = ("sparsity_at", "macs_sparsity_at", "retrain_steps_at")
    choices = [f"{h}_{d:g}" for h in heads for d in metrics.DEFAULT_DROPS] + ["auc", "final_sparsity"]
    if metric not in choices:
        raise invalid("metric", metric, choices)
