"""The report's numbers as its documents show them: strings, units, short labels.

Both documents render the same string frames, so Markdown and HTML can never disagree
on a digit.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from analysis.plots import short_label

__all__ = [
    "metric_label",
    "fmt",
    "fmt_p",
    "draws_cell",
    "summary_display",
    "wilcoxon_display",
    "effects_display",
    "interaction_display",
    "quality_display",
    "stability_display",
    "aliases_display",
]


def metric_label(metric: str) -> str:
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


def fmt(value: object, digits: int = 1) -> str:
    """One cell: ``–`` for missing, yes/no, integers as such, floats to ``digits``."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.{digits}f}"
    return str(value)


def fmt_p(value: float) -> str:
    """A p-value: two significant digits, scientific below 1e-4."""
    return "–" if not np.isfinite(value) else f"{value:.2g}" if value >= 1e-4 else f"{value:.1e}"


def _interval(low: pd.Series, high: pd.Series, digits: int = 1) -> list[str]:
    return [
        "–" if not np.isfinite(lo) else f"[{fmt(lo, digits)}, {fmt(hi, digits)}]"
        for lo, hi in zip(low, high, strict=True)
    ]


def draws_cell(median: float, low: float, high: float, n: float) -> str:
    """A drawn signal's spread: median [10-90 % range] over its draws (``–`` if none)."""
    if not np.isfinite(median):
        return "–"
    return f"{fmt(median)} [{fmt(low)}, {fmt(high)}] ({fmt(int(n))} draws)"


def summary_display(frame: pd.DataFrame, *, rank_col: str = "rank") -> pd.DataFrame:
    """A summary/top frame as the report shows it (strings, one decimal, CI and mean ± std);
    a drawn signal (``random``) also shows the median and 10-90 % range over its draws."""
    out = pd.DataFrame()
    out["rank"] = frame[rank_col].map(lambda r: fmt(r, 1 if float(r) % 1 else 0))
    out["signal"] = frame["signal"].map(lambda s: f"`{s}`")
    out["alias"] = frame["alias"].fillna("").astype(str) if "alias" in frame else ""
    if "mean_rank" in frame:
        out["mean rank"] = frame["mean_rank"].map(lambda v: fmt(v, 2))
        out["tasks"] = frame["n_tasks"].map(fmt)
        out["wins"] = frame["n_wins"].map(fmt)
    out["geomean"] = frame["geomean"].map(fmt)
    out["mean ± std"] = [f"{fmt(m)} ± {fmt(s)}" for m, s in zip(frame["mean"], frame["std"], strict=True)]
    out["95% CI"] = _interval(frame["ci_low"], frame["ci_high"])
    out["dist"] = frame["dist"].map(fmt)
    out["seeds"] = frame["n_seeds"].map(fmt)
    if "draw_median" in frame and frame["draw_median"].notna().any():
        cols = [frame[c].astype(float) for c in ("draw_median", "draw_low", "draw_high", "n_draws")]
        out["draws: median [10–90 %]"] = [draws_cell(*v) for v in zip(*cols, strict=True)]
    return out


def wilcoxon_display(table: pd.DataFrame) -> pd.DataFrame:
    """One row per comparison against the control named in the heading (labels short:
    the literature alias where there is one, else the abbreviated components)."""
    label = lambda s: f"`{short_label(s)}`" if s else "–"
    return pd.DataFrame(
        {
            "vs": table["b"].map(label),
            "blocks": table["n"].map(fmt),
            "mean diff (control − vs)": table["mean_diff"].map(lambda v: fmt(v, 2)),
            "p": table["pvalue"].map(fmt_p),
            "p (Holm)": table["p_holm"].map(fmt_p),
            "significant": table["significant"].map(fmt),
            "better": table["better"].map(label),
        }
    )


def effects_display(effects: pd.DataFrame) -> pd.DataFrame:
    """Component effects with their bootstrap interval and the matched sets behind them."""
    return pd.DataFrame(
        {
            "component": effects["component"],
            "option": effects["option"],
            "effect": effects["effect"].map(lambda v: fmt(v, 2)),
            "95% CI": _interval(effects["ci_low"], effects["ci_high"], 2),
            "matched sets": effects["n_pairs"].map(fmt),
        }
    )


def interaction_display(inter: pd.DataFrame) -> pd.DataFrame:
    """The reduction x scaling table, its corner cell naming both axes."""
    shown = inter.map(fmt).reset_index()
    return shown.rename(columns={"reduction": "reduction \\ scaling"})


def quality_display(summary: pd.DataFrame) -> pd.DataFrame:
    """Spearman and Kendall agreement with the oracle, with intervals over seeds."""

    def ci(col: str) -> list[str]:
        lo, hi = summary[f"{col}_ci_low"], summary[f"{col}_ci_high"]
        return ["–" if not np.isfinite(a) else f"[{a:.2f}, {b:.2f}]" for a, b in zip(lo, hi, strict=True)]

    return pd.DataFrame(
        {
            "signal": summary["signal"].map(lambda s: f"`{s}`"),
            "label": summary["signal"].map(short_label),
            "Spearman ρ": summary["spearman"].map(lambda v: fmt(v, 3)),
            "ρ 95% CI": ci("spearman"),
            "Kendall τ": summary["kendall"].map(lambda v: fmt(v, 3)),
            "τ 95% CI": ci("kendall"),
            "seeds": summary["n_seeds"].map(fmt),
        }
    )


def stability_display(table: pd.DataFrame) -> pd.DataFrame:
    """Kendall's W per task (:func:`analysis.stats.rank_stability`)."""
    return pd.DataFrame(
        {
            "task": table["task"],
            "Kendall W": table["kendall_w"].map(lambda v: fmt(v, 3)),
            "seeds": table["n_seeds"].map(fmt),
            "signals": table["n_signals"].map(fmt),
            "p": table["pvalue"].map(fmt_p),
        }
    )


def aliases_display(
    rows: pd.DataFrame, n_ranked: int, pooled: pd.DataFrame, rho: pd.Series, spread: pd.DataFrame
) -> pd.DataFrame:
    """Named signals among all ``n_ranked``: rank, pooled headline, the spread over draws of
    a drawn signal (``random``), oracle agreement."""
    out = pd.DataFrame(
        {
            "name": [a if a else s for a, s in zip(rows["alias"], rows["signal"], strict=True)],
            "signal": rows["signal"].map(lambda s: f"`{s}`"),
            "overall rank": [f"{r} of {n_ranked}" for r in rows["overall_rank"]],
            "mean rank": rows["mean_rank"].map(lambda v: fmt(v, 2)),
            "geomean": rows["signal"].map(pooled["geomean"]).map(fmt),
            "dist": rows["signal"].map(pooled["dist"]).map(fmt),
            "Spearman ρ (oracle)": rows["signal"].map(rho).map(lambda v: fmt(v, 3)),
        }
    )
    if len(spread):
        s = spread.set_index("signal")
        cols = [
            rows["signal"].map(s[c]).astype(float)
            for c in ("draw_median", "draw_low", "draw_high", "n_draws")
        ]
        out.insert(5, "draws: median [10–90 %]", [draws_cell(*v) for v in zip(*cols, strict=True)])
    return out
