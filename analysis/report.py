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

Missing pieces degrade to a note in both documents (no rank tables: no oracle plots; one
seed: no bands or stability; one task: no Friedman/Wilcoxon/CD). An empty or missing
store raises :class:`~taxonomy.errors.PrunetaxError`.
"""

from __future__ import annotations

import logging
import math
import re
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from analysis import effects as effects_mod
from analysis import frames, metrics, rank_quality, stats
from analysis.plots import short_label
from study.store import Store
from taxonomy.errors import PrunetaxError

__all__ = ["build_report", "ReportResult", "REFERENCES"]

REFERENCES = ("random", "oracle")
_log = logging.getLogger(__name__)
_CURVE_TOP = 5  # best signals overall drawn in the curve plots (plus aliases and references)
_MAX_SIMILARITY = 40  # signals in the clustermap (plus aliases)
_MAX_BARS = 40  # signals in the oracle-correlation bars
_CD_TOP = 15  # signals in the critical-difference diagram


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
        The overall top table (signals ranked by mean within-task rank; ``geomean``,
        ``mean``, ``std``, ``ci_low``, ``ci_high``, ``dist``, ``n_seeds`` pooled over all
        tasks and seeds).
    notes : list of str
        What was skipped and why.
    """

    out_dir: Path
    index_html: Path
    summary_md: Path
    figures: dict[str, list[Path]] = field(default_factory=dict)
    top: pd.DataFrame = field(default_factory=pd.DataFrame)
    notes: list[str] = field(default_factory=list)

    @property
    def figure_paths(self) -> list[Path]:
        """Every figure file written (PNG and SVG)."""
        return [p for paths in self.figures.values() for p in paths]


# ----------------------------------------------------------------------------- loading


def _root(store: str | Path | Store) -> Path:
    root = store.root if isinstance(store, Store) else Path(store)
    if not root.is_dir():
        raise PrunetaxError(
            f"store `{root}` does not exist; pass the folder that holds trials/ and steps/ "
            "(e.g. results/store), or run `prunetax run` first."
        )
    return root


def _load(root: Path) -> dict[str, object]:
    """Every table once: trials (all statuses), steps (the curve columns), rank tables."""
    everything = frames.load_trials(root, status=None)
    if everything.empty:
        raise PrunetaxError(
            f"store `{root}` holds no trials (its trials/ table is empty or missing); "
            "run `prunetax run` or `prunetax sweep` into it first."
        )
    trials = everything[everything["status"] == "ok"].reset_index(drop=True)
    if trials.empty:
        raise PrunetaxError(
            f"store `{root}` holds {len(everything)} trials but none with status 'ok'; "
            "see their `error` column (prunetax run prints it) and rerun them."
        )
    steps = frames.load_steps(root, columns=["sparsity", "macs_sparsity", "test_acc", "retrain_steps"])
    scores, oracle = frames.load_rank_tables(root)
    failed = len(everything) - len(trials)
    return {"trials": trials, "failed": failed, "steps": steps, "scores": scores, "oracle": oracle}


# ----------------------------------------------------------------------------- numbers


def _is_ref(signals: pd.Series) -> pd.Series:
    return signals.isin(REFERENCES)


def _top_table(ranking: pd.DataFrame, pooled: pd.DataFrame, top: int) -> pd.DataFrame:
    keep = ["signal", "geomean", "mean", "std", "ci_low", "ci_high", "dist", "n_seeds"]
    table = ranking.merge(pooled[keep], on="signal", how="left")
    table = table.rename(columns={"overall_rank": "rank"})
    cols = ["rank", "signal", "alias", "family", "mean_rank", "n_tasks", "n_wins", *keep[1:]]
    return table[[c for c in cols if c in table]].head(top).reset_index(drop=True)


def _statistics(m: pd.DataFrame, metric: str, hib: bool, top: int, notes: list[str]) -> dict[str, object]:
    """Friedman, Wilcoxon-Holm (top vs best, top vs random), Nemenyi + CD over task blocks."""
    out: dict[str, object] = {}
    n_tasks = m["task"].nunique()
    if n_tasks < 2:
        notes.append(
            f"one task only ({m['task'].iloc[0]}): Friedman, Wilcoxon-Holm and the CD diagram "
            "need at least two tasks (blocks) and are skipped."
        )
        return out
    try:
        wide = stats.block_matrix(m, metric)
    except PrunetaxError as err:
        notes.append(f"task-block statistics skipped: {err}")
        return out
    dropped = wide.attrs.get("dropped_treatments", [])
    if dropped:
        notes.append(
            f"{len(dropped)} signals are missing from some task and are left out of the "
            "Friedman/Wilcoxon/CD comparison (complete blocks only)."
        )
    out["wide"] = wide
    if wide.shape[1] < 3:
        notes.append("fewer than 3 signals in every task: Friedman's test and the CD diagram are skipped.")
    else:
        out["friedman"] = stats.friedman(wide, higher_is_better=hib)
        shown = list(out["friedman"]["mean_ranks"].index[:_CD_TOP])
        out["nemenyi"] = _nemenyi_among(out["friedman"]["mean_ranks"], wide.shape[0], shown)
        out["cd"] = stats.critical_difference(wide.shape[1], wide.shape[0])
    ranks = wide.rank(axis=1, ascending=not hib).mean().sort_values()
    best = next((s for s in ranks.index if s not in REFERENCES), ranks.index[0])
    leaders = [s for s in ranks.index if s not in REFERENCES][:top]
    contenders = list(dict.fromkeys([best, *leaders]))
    out["vs_best"] = stats.wilcoxon_holm(wide[contenders], control=best, higher_is_better=hib)
    if "random" in wide:
        vs = ["random", *leaders]
        out["vs_random"] = stats.wilcoxon_holm(wide[vs], control="random", higher_is_better=hib)
    if wide.shape[0] < 6:
        notes.append(
            f"only {wide.shape[0]} task blocks: a two-sided Wilcoxon signed-rank p-value cannot fall "
            f"below {2 / 2 ** wide.shape[0]:.3g}, so no pairwise difference can be significant yet."
        )
    return out


def _nemenyi_among(mean_ranks: pd.Series, n_blocks: int, shown: list[str]) -> pd.DataFrame:
    """Nemenyi p-values between the ``shown`` signals, in the comparison of *all* signals.

    The same formula as ``scikit_posthocs.posthoc_nemenyi_friedman`` (used by
    :func:`analysis.stats.nemenyi`): q = |R_i - R_j| / sqrt(k(k+1)/(6N)) with k = every
    compared signal, p = studentized-range survival of q·sqrt(2). Only the pairs the CD
    diagram draws are evaluated: the full k x k matrix costs seconds per hundred signals.
    """
    import scipy.stats as ss

    k = len(mean_ranks)
    r = mean_ranks.reindex(shown).to_numpy(dtype=float)
    q = np.abs(r[:, None] - r[None, :]) / np.sqrt(k * (k + 1.0) / (6.0 * n_blocks))
    upper = np.triu_indices(len(shown), 1)
    p = np.ones((len(shown), len(shown)))
    p[upper] = ss.studentized_range.sf(q[upper] * np.sqrt(2.0), k, np.inf)
    p.T[upper] = p[upper]
    return pd.DataFrame(p, index=shown, columns=shown)


def _effects(m: pd.DataFrame, metric: str, notes: list[str]) -> dict[str, pd.DataFrame]:
    """Component effects overall and per task, and the reduction x scaling interaction."""
    taxonomy = m[~_is_ref(m["signal"]) & m["sig_pointwise"].notna()]
    if taxonomy.empty:
        notes.append("no taxonomy signals (only references): component effects skipped.")
        return {}
    out: dict[str, pd.DataFrame] = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out["overall"] = effects_mod.component_effects(taxonomy, metric)
        for task, part in taxonomy.groupby("task", sort=True):
            out[str(task)] = effects_mod.component_effects(part, metric)
        out["interaction"] = effects_mod.interaction(taxonomy, metric)
    for w in {str(c.message) for c in caught}:
        notes.append(f"component effects: {w}")
    return out


def _rank_quality(data: dict[str, object], notes: list[str]) -> dict[str, object]:
    scores, oracle = data["scores"], data["oracle"]
    if scores.empty or oracle.empty:
        missing = " and ".join(t for t, f in (("scores", scores), ("oracle", oracle)) if f.empty)
        notes.append(
            f"no rank tables ({missing} empty): oracle rank quality and rank similarity are "
            "skipped; run `prunetax scores` and the oracle job to get them."
        )
        return {}
    rq = rank_quality.rank_quality(scores, oracle)
    if rq.empty:
        notes.append("the scores and oracle tables share no units: rank quality skipped.")
        return {}
    return {"rq": rq, "summary": rank_quality.rank_quality_summary(rq)}


def _bands(steps: pd.DataFrame, trials: pd.DataFrame, x: str) -> pd.DataFrame:
    """Mean and min-max band over seeds of the interpolated curves, on the 0..100 grid,
    kept where every seed of the (task, signal) still has a point."""
    c = metrics.curves(steps, trials, x=x)
    keys = ["task", "signal", x]
    b = c.groupby(keys, observed=True, sort=False)["test_acc"].agg(["mean", "min", "max", "count"])
    b = b.reset_index().rename(columns={"min": "low", "max": "high", "count": "n"})
    seeds = trials.groupby(["task", "signal"], observed=True).size().rename("_seeds").reset_index()
    b = b.merge(seeds, on=["task", "signal"], how="left")
    return b[(b["n"] == b["_seeds"]) & (b["n"] > 0)].drop(columns="_seeds")


def _curve_signals(ranking: pd.DataFrame, present: set[str]) -> list[str]:
    """The best few taxonomy signals overall, the literature aliases, then the references."""
    top = [s for s in ranking["signal"] if s not in REFERENCES][:_CURVE_TOP]
    aliases = [s for s in ranking.loc[ranking["alias"].astype(str) != "", "signal"] if s not in top]
    return [s for s in dict.fromkeys([*top, *aliases, *REFERENCES]) if s in present]


# ----------------------------------------------------------------------------- documents


def _metric_label(metric: str) -> str:
    """Words and unit of a metric column (``sparsity_at_5`` -> weight sparsity at 5-point drop (%))."""
    head, _, drop = metric.rpartition("_at_")
    words = {
        "sparsity": "weight sparsity at {d}-point accuracy drop (%)",
        "macs_sparsity": "MAC sparsity at {d}-point accuracy drop (%)",
        "retrain_steps": "retraining steps up to the {d}-point drop (steps)",
    }
    if head in words:
        return words[head].format(d=drop)
    if metric == "auc":
        return "area under the accuracy-sparsity curve (mean accuracy, %)"
    return metric


def _fmt(value: object, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.{digits}f}"
    return str(value)


def _p(value: float) -> str:
    return "–" if not np.isfinite(value) else f"{value:.2g}" if value >= 1e-4 else f"{value:.1e}"


class _Doc:
    """A report as a list of blocks, rendered to Markdown and to offline HTML."""

    def __init__(self) -> None:
        self.blocks: list[tuple[str, object]] = []

    def heading(self, level: int, text: str) -> None:
        self.blocks.append(("h", (level, text)))

    def para(self, text: str) -> None:
        self.blocks.append(("p", text))

    def notes(self, items: list[str]) -> None:
        if items:
            self.blocks.append(("notes", list(items)))

    def table(self, frame: pd.DataFrame, anchor: str = "") -> None:
        self.blocks.append(("table", (frame.astype(str), anchor)))

    def figure(self, name: str, title: str, how: str) -> None:
        self.blocks.append(("figure", (name, title, how)))

    def markdown(self) -> str:
        out = []
        for kind, body in self.blocks:
            if kind == "h":
                out.append(f"{'#' * body[0]} {body[1]}")
            elif kind == "p":
                out.append(str(body))
            elif kind == "notes":
                out.append("\n".join(f"- **Note:** {n}" for n in body))
            elif kind == "table":
                out.append(_md_table(body[0]))
            else:
                name, title, how = body
                out.append(f"![{title}](figures/{name}.png)\n\n*{title}* ([SVG](figures/{name}.svg)). {how}")
        return "\n\n".join(out) + "\n"

    def html(self, title: str) -> str:
        from html import escape

        body = []
        for kind, block in self.blocks:
            if kind == "h":
                level, text = block
                body.append(f"<h{level} id='{_slug(text)}'>{_inline_code(escape(text))}</h{level}>")
            elif kind == "p":
                body.append(f"<p>{_inline_code(escape(str(block)))}</p>")
            elif kind == "notes":
                items = "".join(f"<li>{_inline_code(escape(n))}</li>" for n in block)
                body.append(f"<ul class='notes'>{items}</ul>")
            elif kind == "table":
                frame, anchor = block
                table = _CODE.sub(r"<code>\1</code>", frame.to_html(index=False, border=0, classes="data"))
                if anchor:
                    table = table.replace("<table ", f"<table id='{anchor}' ", 1)
                body.append(f"<div class='scroll'>{table}</div>")
            else:
                name, text, how = block
                body.append(
                    f"<figure><img src='figures/{name}.png' alt='{escape(text)}'>"
                    f"<figcaption><b>{escape(text)}</b> (<a href='figures/{name}.svg'>SVG</a>). "
                    f"<i>How to read:</i> {_inline_code(escape(how))}</figcaption></figure>"
                )
        return _HTML.format(title=escape(title), css=_CSS, body="\n".join(body))


def _md_table(frame: pd.DataFrame) -> str:
    def cell(v: str) -> str:
        return v.replace("|", "\\|").replace("\n", " ")

    head = "| " + " | ".join(cell(str(c)) for c in frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    rows = ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([head, rule, *rows])


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")


_CODE = re.compile(r"`([^`<>]*)`")


def _inline_code(text: str) -> str:
    """Markdown-style `code` spans -> <code> (the text is already HTML-escaped)."""
    parts = text.split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;margin:0 auto;
max-width:1250px;padding:1em 2em;color:#222;line-height:1.45}
h1{font-size:1.7em}h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:2em}
table.data{border-collapse:collapse;font-size:.88em;margin:.5em 0 1em}
table.data th,table.data td{border-bottom:1px solid #ddd;padding:.25em .6em;text-align:right}
table.data th{background:#f4f4f4}table.data td:has(code){text-align:left}
.scroll{overflow-x:auto}figure{margin:1em 0 2.5em}figure img{max-width:100%;height:auto;
border:1px solid #eee}figcaption{font-size:.92em;color:#333;max-width:60em}
ul.notes{background:#fff8e1;border-left:4px solid #f0b400;padding:.6em 1em .6em 2em}
code{font-size:.92em;background:#f4f4f4;padding:0 .2em}
"""

_HTML = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy"
 content="default-src 'none'; img-src 'self' file: data:; style-src 'unsafe-inline'">
<title>{title}</title>
<style>{css}</style></head>
<body>
{body}
</body></html>
"""


# ----------------------------------------------------------------------------- tables


def _display(frame: pd.DataFrame, *, rank_col: str = "rank") -> pd.DataFrame:
    """A summary/top frame as the report shows it (strings, one decimal, CI and mean ± std)."""
    out = pd.DataFrame()
    out["rank"] = frame[rank_col].map(lambda r: _fmt(r, 1 if float(r) % 1 else 0))
    out["signal"] = frame["signal"].map(lambda s: f"`{s}`")
    out["alias"] = frame["alias"].fillna("").astype(str) if "alias" in frame else ""
    if "mean_rank" in frame:
        out["mean rank"] = frame["mean_rank"].map(lambda v: _fmt(v, 2))
        out["wins"] = frame["n_wins"].map(_fmt)
    out["geomean"] = frame["geomean"].map(_fmt)
    out["mean ± std"] = [f"{_fmt(m)} ± {_fmt(s)}" for m, s in zip(frame["mean"], frame["std"], strict=True)]
    out["95% CI"] = [
        "–" if not np.isfinite(lo) else f"[{_fmt(lo)}, {_fmt(hi)}]"
        for lo, hi in zip(frame["ci_low"], frame["ci_high"], strict=True)
    ]
    out["dist"] = frame["dist"].map(_fmt)
    out["n seeds"] = frame["n_seeds"].map(_fmt)
    return out


def _wilcoxon_display(table: pd.DataFrame) -> pd.DataFrame:
    """One row per comparison against the control named in the heading (labels short:
    the literature alias where there is one, else the abbreviated components)."""
    label = lambda s: f"`{short_label(s)}`" if s else "–"
    return pd.DataFrame(
        {
            "vs": table["b"].map(label),
            "tasks": table["n"].map(_fmt),
            "mean diff (control − vs)": table["mean_diff"].map(lambda v: _fmt(v, 2)),
            "p": table["pvalue"].map(_p),
            "p (Holm)": table["p_holm"].map(_p),
            "significant": table["significant"].map(_fmt),
            "better": table["better"].map(label),
        }
    )


def _effects_display(effects: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "component": effects["component"],
            "option": effects["option"],
            "effect": effects["effect"].map(lambda v: _fmt(v, 2)),
            "95% CI": [
                "–" if not np.isfinite(lo) else f"[{_fmt(lo, 2)}, {_fmt(hi, 2)}]"
                for lo, hi in zip(effects["ci_low"], effects["ci_high"], strict=True)
            ],
            "matched sets": effects["n_pairs"].map(_fmt),
        }
    )


def _quality_display(summary: pd.DataFrame) -> pd.DataFrame:
    def ci(col: str) -> list[str]:
        lo, hi = summary[f"{col}_ci_low"], summary[f"{col}_ci_high"]
        return ["–" if not np.isfinite(a) else f"[{a:.2f}, {b:.2f}]" for a, b in zip(lo, hi, strict=True)]

    return pd.DataFrame(
        {
            "signal": summary["signal"].map(lambda s: f"`{s}`"),
            "label": summary["signal"].map(short_label),
            "Spearman ρ": summary["spearman"].map(lambda v: _fmt(v, 3)),
            "ρ 95% CI": ci("spearman"),
            "Kendall τ": summary["kendall"].map(lambda v: _fmt(v, 3)),
            "τ 95% CI": ci("kendall"),
            "seeds": summary["n_seeds"].map(_fmt),
        }
    )


# ----------------------------------------------------------------------------- the report

_HOW = {
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


def _use_agg() -> None:
    """Draw off-screen unless pyplot was already set up (a notebook keeps its backend)."""
    if "matplotlib.pyplot" not in sys.modules:
        import matplotlib

        matplotlib.use("Agg")


def _components(frame: pd.DataFrame, value: str = "geomean") -> pd.DataFrame:
    cols = {
        "sig_input": "input",
        "sig_pointwise": "pointwise",
        "sig_reduction": "reduction",
        "sig_scaling": "scaling",
    }
    cells = frame[frame["sig_pointwise"].notna() & ~_is_ref(frame["signal"])]
    return cells.rename(columns=cols)[["signal", *cols.values(), value]]


def _slug_task(task: str) -> str:
    return "".join(c if c.isalnum() or c in "_." else "-" for c in str(task))


def _render(name: str, plot: str, kwargs: dict, fig_dir: Path) -> list[Path] | str:
    """Draw and save one figure; the error text if the plot refuses its data."""
    from analysis import plots

    try:
        fig = getattr(plots, plot)(**kwargs)
    except ValueError as err:
        return str(err)
    return plots.save(fig, fig_dir, name)


class _Renderer:
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


class _Builder:
    """Computes once, then writes the sections in order (one method per section)."""

    def __init__(self, root: Path, data: dict, m: pd.DataFrame, metric: str, top: int, renderer: _Renderer):
        self.root, self.data, self.m, self.metric, self.top = root, data, m, metric, top
        self.renderer, self.out = renderer, renderer.out
        self.hib = not metric.startswith("retrain_steps")
        self.label = _metric_label(metric)
        self.notes: list[str] = []
        self.doc = _Doc()
        trials = data["trials"]
        self.tasks = sorted(trials["task"].unique())
        self.seeds = int(trials.groupby(["task", "signal"]).size().max())
        self.n_signals = trials["signal"].nunique()
        self.by_task = metrics.summarise(m, metric, by=("task",), higher_is_better=self.hib)
        self.pooled = metrics.summarise(m, metric, by=(), higher_is_better=self.hib)
        self.ranking = metrics.overall_ranking(self.by_task)
        self.top_table = _top_table(self.ranking, self.pooled, top)
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

    # -- sections ---------------------------------------------------------------------

    def intro(self) -> None:
        trials, failed = self.data["trials"], self.data["failed"]
        self.doc.heading(1, f"prunetax report: {self.root.name}")
        self.doc.para(
            f"Store `{self.root}`: {len(trials)} trials ({failed} failed, left out) of {self.n_signals} "
            f"signals on {len(self.tasks)} tasks ({', '.join(self.tasks)}), up to {self.seeds} seeds per "
            f"signal and task. Headline metric `{self.metric}`: {self.label}, read off each run's test "
            "accuracy curve anchored at (0 %, reference accuracy) and linearly interpolated. Across seeds: "
            "geometric mean (the paper's aggregate, shifted by 1 point so zeros are allowed), mean ± std, "
            "and a 95 % percentile-bootstrap interval of the geomean over seeds; dist = the best signal's "
            "geomean − this signal's. Figures are PNG files referenced by relative path (figures/), each "
            "with an SVG version linked; this page loads nothing from the network."
        )

    def ranking_tables(self) -> None:
        self.doc.heading(2, f"Overall ranking (top {self.top})")
        self.doc.para(
            "Signals ordered by their mean rank over tasks (within a task, signals are ranked by the "
            "geomean over seeds, 1 = best); wins = tasks where the signal is best. geomean, mean ± std, "
            "95% CI, dist and n seeds pool every task and seed. References (`random`, `oracle`) are "
            "ranked with the signals for scale."
        )
        self.doc.table(_display(self.top_table), anchor="top-table")
        self.doc.heading(2, f"Top {self.top} per task")
        for task in self.tasks:
            self.doc.heading(3, task)
            part = self.by_task[self.by_task["task"] == task].sort_values("rank").head(self.top)
            self.doc.table(_display(part))

    def statistics(self) -> None:
        self.doc.heading(2, "Statistical comparison across tasks")
        result = _statistics(self.m, self.metric, self.hib, self.top, self.notes)
        if not result:
            self.doc.para("Skipped: see the notes at the top.")
            return
        wide = result["wide"]
        if "friedman" in result:
            f = result["friedman"]
            self.doc.para(
                f"Friedman test over {f['n_blocks']} task blocks and {f['n_treatments']} signals "
                f"(seeds averaged within a task first): χ² = {f['statistic']:.2f}, p = {_p(f['pvalue'])}; "
                f"Iman-Davenport F = {f['iman_davenport']:.2f}, p = {_p(f['iman_davenport_pvalue'])}. "
                "A small p says the signals do not all rank alike; which pairs differ is for the "
                "Wilcoxon-Holm tests below."
            )
        best = result["vs_best"]["a"].iloc[0] if len(result["vs_best"]) else ""
        self.doc.heading(3, f"Wilcoxon signed-rank + Holm: top signals vs the best (`{best}`)")
        self.doc.para("Paired over tasks; p (Holm) corrects for the number of comparisons in the table.")
        self.doc.table(_wilcoxon_display(result["vs_best"]))
        if "vs_random" in result:
            self.doc.heading(3, "Wilcoxon signed-rank + Holm: top signals vs `random`")
            self.doc.table(_wilcoxon_display(result["vs_random"]))
        if "nemenyi" in result:
            ranks = result["friedman"]["mean_ranks"]
            shown = min(_CD_TOP, len(ranks))
            self.draw(
                "cd_diagram",
                "cd_diagram",
                dict(
                    mean_ranks=ranks,
                    pvalues=result["nemenyi"],
                    cd=result["cd"],
                    top=_CD_TOP,
                    data=self.where(),
                ),
                f"Critical-difference diagram ({shown} of {wide.shape[1]} signals)",
                _HOW["cd"],
            )

    def curves(self) -> None:
        self.doc.heading(2, "Accuracy against sparsity")
        trials = self.data["trials"]
        chosen = _curve_signals(self.ranking, set(trials["signal"]))
        picked = trials[trials["signal"].isin(chosen)]
        steps = self.data["steps"]
        steps = steps[steps["run_key"].isin(picked["run_key"])]  # a few dozen of the trials
        self.doc.para(
            f"The {_CURVE_TOP} best signals overall (by mean rank), every literature alias that was run, "
            "and the `random` and `oracle` references, one panel per task."
        )
        for x, what in (("sparsity", "weight sparsity"), ("macs_sparsity", "MAC sparsity")):
            self.draw(
                f"curves_{'macs' if x == 'macs_sparsity' else 'weights'}",
                "accuracy_curves",
                dict(bands=_bands(steps, picked, x), x=x, order=chosen, data=self.where()),
                f"Test accuracy vs {what}, one panel per task",
                _HOW["curves"],
            )

    def heatmaps(self) -> None:
        self.doc.heading(2, "Headline by reduction × scaling")
        label = f"geomean {self.label}"
        views = [("overall", self.pooled, self.where() + " (pooled)")] if len(self.tasks) > 1 else []
        views += [(t, self.by_task[self.by_task["task"] == t], self.where(t)) for t in self.tasks]
        for key, frame, where in views:
            cells = _components(frame)
            if cells.empty:
                self.notes.append(f"no taxonomy signals for `{key}`: heatmap skipped.")
                continue
            self.draw(
                f"heatmap__{_slug_task(key)}",
                "component_heatmaps",
                dict(table=cells, label=label, data=where),
                f"{label} by reduction × scaling: {key}",
                _HOW["heatmap"],
            )

    def effects(self) -> None:
        self.doc.heading(2, "Component effects")
        found = _effects(self.m, self.metric, self.notes)
        if not found:
            self.doc.para("Skipped: see the notes at the top.")
            return
        unit = f"difference in {self.label}"
        for key in ["overall", *self.tasks] if len(self.tasks) > 1 else self.tasks:
            if key not in found or found[key]["effect"].notna().sum() == 0:
                self.notes.append(
                    f"component effects of `{key}`: no option has an estimate (no two signals that "
                    "differ in one component only); figure skipped."
                )
                continue
            where = self.where() if key == "overall" else self.where(key)
            self.draw(
                f"effects__{_slug_task(key)}",
                "component_effect_bars",
                dict(effects=found[key], unit=unit, data=where),
                f"Component effects on {self.label}: {key}",
                _HOW["effects"],
            )
            if key == ("overall" if len(self.tasks) > 1 else self.tasks[0]):
                self.doc.table(_effects_display(found[key]))
        inter = found.get("interaction")
        if inter is not None and inter.size:
            self.doc.heading(3, "Reduction × scaling: mean headline over the other components")
            shown = inter.map(_fmt).reset_index()
            self.doc.table(shown.rename(columns={"reduction": "reduction \\ scaling"}))

    def stability(self) -> None:
        self.doc.heading(2, "Rank stability across seeds (Kendall's W)")
        if self.seeds < 2:
            self.notes.append("one seed per signal: no seed bands, intervals or rank stability.")
            self.doc.para("Skipped: one seed.")
            return
        table = stats.rank_stability(self.m, self.metric)
        self.doc.para(
            "Per task, each seed ranks the signals; W = 1 when every seed gives the same ranking, "
            "0 when the seeds agree no more than chance (p: χ² test of no agreement)."
        )
        self.doc.table(
            pd.DataFrame(
                {
                    "task": table["task"],
                    "Kendall W": table["kendall_w"].map(lambda v: _fmt(v, 3)),
                    "seeds": table["n_seeds"].map(_fmt),
                    "signals": table["n_signals"].map(_fmt),
                    "p": table["pvalue"].map(_p),
                }
            )
        )

    def oracle(self) -> None:
        self.doc.heading(2, "Rank quality against the oracle")
        found = _rank_quality(self.data, self.notes)
        if not found:
            self.doc.para("Skipped: see the notes at the top.")
            return
        self.quality = found["summary"]
        for (model, dataset), part in self.quality.groupby(["model", "dataset"], sort=True):
            key = f"{model}/{dataset}"
            self.doc.heading(3, key)
            self._oracle_bars(key, part)
            ranked = part.sort_values("spearman", ascending=False)
            k = min(5, len(ranked))
            self.doc.para(f"Best {k} and worst {k} signals by Spearman ρ (global ranking, mean over seeds).")
            self.doc.table(_quality_display(pd.concat([ranked.head(k), ranked.tail(k)]).drop_duplicates()))
            self._similarity(key, model, dataset)

    def _oracle_bars(self, key: str, part: pd.DataFrame) -> None:
        ranked = part.sort_values("spearman", ascending=False)
        signals = list(ranked["signal"])
        if len(signals) > _MAX_BARS:
            marked = [s for s in signals if s in self.highlight or s in REFERENCES]
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
        self.draw(
            f"oracle__{_slug_task(key)}",
            "oracle_correlation_bars",
            dict(quality=long, highlight=self.highlight, total=len(ranked), data=self.where(key)),
            f"Correlation of each signal's unit ranking with the oracle: {key}",
            _HOW["oracle"],
        )

    def _similarity(self, key: str, model: str, dataset: str) -> None:
        scores = self.data["scores"]
        scores = scores[(scores["model"] == model) & (scores["dataset"] == dataset)]
        scored = set(scores["signal"])
        order = [s for s in self.ranking["signal"] if s in scored and s not in REFERENCES]
        extra = [s for s in scored if s not in self.ranking["signal"].values]
        chosen = [*order[:_MAX_SIMILARITY], *sorted(extra)][:_MAX_SIMILARITY]
        chosen += [s for s in sorted(scored) if (s in self.highlight or s in REFERENCES) and s not in chosen]
        sim = rank_quality.rank_similarity(scores, signals=chosen)
        self.draw(
            f"similarity__{_slug_task(key)}",
            "rank_similarity_clustermap",
            dict(similarity=sim, highlight=self.highlight, data=self.where(key)),
            f"Rank similarity between signals: {key} ({len(chosen)} of {len(scored)} scored signals)",
            _HOW["similarity"],
        )

    def aliases(self) -> None:
        self.doc.heading(2, "Literature signals and references")
        rows = self.ranking[(self.ranking["alias"].astype(str) != "") | _is_ref(self.ranking["signal"])]
        if rows.empty:
            self.doc.para("No literature alias or reference signal was run.")
            return
        pooled = self.pooled.set_index("signal")
        rho = getattr(self, "quality", pd.DataFrame(columns=["signal", "spearman"]))
        rho = rho.groupby("signal")["spearman"].mean() if len(rho) else pd.Series(dtype=float)
        self.doc.para(
            f"Where the paper's and the literature's named signals stand among all {len(self.ranking)} "
            "signals (overall rank by mean rank over tasks; geomean and dist pooled over tasks and seeds)."
        )
        self.doc.table(
            pd.DataFrame(
                {
                    "name": [a if a else s for a, s in zip(rows["alias"], rows["signal"], strict=True)],
                    "signal": rows["signal"].map(lambda s: f"`{s}`"),
                    "overall rank": [f"{r} of {len(self.ranking)}" for r in rows["overall_rank"]],
                    "mean rank": rows["mean_rank"].map(lambda v: _fmt(v, 2)),
                    "geomean": rows["signal"].map(pooled["geomean"]).map(_fmt),
                    "dist": rows["signal"].map(pooled["dist"]).map(_fmt),
                    "Spearman ρ (oracle)": rows["signal"].map(rho).map(lambda v: _fmt(v, 3)),
                }
            )
        )

    def write(self) -> ReportResult:
        figures, failed = self.renderer.done, self.renderer.failed
        for name, error in failed.items():  # a plot that refused its data: no figure, a note
            self.notes.append(f"figure `{name}` skipped: {error}")
        self.doc.blocks = [b for b in self.doc.blocks if not (b[0] == "figure" and b[1][0] in failed)]
        self.doc.blocks.insert(2, ("notes", self.notes))
        self.out.mkdir(parents=True, exist_ok=True)
        summary_md = self.out / "summary.md"
        index_html = self.out / "index.html"
        summary_md.write_text(self.doc.markdown(), encoding="utf-8")
        index_html.write_text(self.doc.html(f"prunetax report: {self.root.name}"), encoding="utf-8")
        return ReportResult(
            out_dir=self.out,
            index_html=index_html,
            summary_md=summary_md,
            figures=figures,
            top=self.top_table,
            notes=list(self.notes),
        )


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
    if int(top) < 1:
        raise PrunetaxError(f"`top` must be >= 1; got {top!r}.")
    heads = ("sparsity_at", "macs_sparsity_at", "retrain_steps_at")
    choices = [f"{h}_{d:g}" for h in heads for d in metrics.DEFAULT_DROPS] + ["auc", "final_sparsity"]
    if metric not in choices:
        from taxonomy.errors import invalid

        raise invalid("metric", metric, choices)
    root = _root(store)
    _use_agg()
    clock = time.perf_counter()
    data = _load(root)
    m = metrics.trial_metrics(data["trials"], data["steps"])
    builder = _Builder(root, data, m, metric, int(top), _Renderer(Path(out_dir)))
    _log.info("load + metrics + summaries: %.1f s", time.perf_counter() - clock)
    for section in (
        builder.intro,
        builder.ranking_tables,
        builder.statistics,
        builder.curves,
        builder.heatmaps,
        builder.effects,
        builder.stability,
        builder.oracle,
        builder.aliases,
    ):
        clock = time.perf_counter()
        section()
        _log.info("%s: %.1f s", section.__name__, time.perf_counter() - clock)
    return builder.write()
