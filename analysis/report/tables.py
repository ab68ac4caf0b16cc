"""The report's numbers, computed once from the store through the public analysis API.

Every function returns plain frames or dicts and appends to ``notes`` what it had to
skip and why, so that a thin store degrades to a note in the documents instead of an
error.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from analysis import effects, frames, metrics, rank_quality, stats
from analysis.metrics.draws import SPREAD
from study.store import Store
from taxonomy.errors import PrunetaxError

if TYPE_CHECKING:
    from analysis.report.builder import Comparison

__all__ = [
    "REFERENCES",
    "CURVE_TOP",
    "CD_TOP",
    "is_ref",
    "store_root",
    "load",
    "seed_counts",
    "top_table",
    "compare_over_tasks",
    "component_effects",
    "oracle_quality",
    "bands",
    "curve_signals",
    "components",
]

REFERENCES = ("random", "oracle")
CURVE_TOP = 5  # best signals overall drawn in the curve plots (plus aliases and references)
CD_TOP = 15  # signals in the critical-difference diagram


def is_ref(signals: pd.Series) -> pd.Series:
    """Which rows are the ``random``/``oracle`` references (ranked for scale, never highlighted)."""
    return signals.isin(REFERENCES)


# ----------------------------------------------------------------------------- loading


def store_root(store: str | Path | Store) -> Path:
    """The store folder; a missing one fails here with the command that creates it."""
    root = store.root if isinstance(store, Store) else Path(store)
    if not root.is_dir():
        raise PrunetaxError(
            f"store `{root}` does not exist; pass the folder that holds trials/ and steps/ "
            "(e.g. results/store), or run `prunetax run` first."
        )
    return root


def load(root: Path) -> dict[str, object]:
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
    return {
        "trials": trials,
        "failed": failed,
        "older_versions": everything.attrs.get("older_versions", 0),
        "steps": steps,
        "scores": scores,
        "oracle": oracle,
    }


# ----------------------------------------------------------------------------- rankings


def seed_counts(frame: pd.DataFrame, keys: list[str]) -> pd.Series:
    """Distinct seeds (base_seed, seed) per ``keys`` group: seeds, never tasks x seeds or draws."""
    seeds = [c for c in ("base_seed", "seed") if c in frame]
    return frame.drop_duplicates([*keys, *seeds]).groupby(keys, observed=True).size()


_SPREAD = ["n_draws", "draw_median", "draw_low", "draw_high"]


def top_table(
    ranking: pd.DataFrame, pooled: pd.DataFrame, m: pd.DataFrame, spread: pd.DataFrame, top: int
) -> pd.DataFrame:
    """The overall ranking joined with the numbers pooled over every task and seed;
    ``n_seeds`` counts distinct seeds (``n_tasks`` the tasks); drawn signals (``random``) get
    the median and 10-90 % range over all their draws."""
    keep = ["signal", "geomean", "mean", "std", "ci_low", "ci_high", "dist"]
    table = ranking.merge(pooled[keep], on="signal", how="left")
    table = table.merge(seed_counts(m, ["signal"]).rename("n_seeds"), on="signal", how="left")
    if len(spread):
        table = table.merge(spread[["signal", *_SPREAD]], on="signal", how="left")
    table = table.rename(columns={"overall_rank": "rank"})
    cols = [
        "rank",
        "signal",
        "alias",
        "family",
        "mean_rank",
        "n_tasks",
        "n_wins",
        *keep[1:],
        "n_seeds",
        *_SPREAD,
    ]
    return table[[c for c in cols if c in table]].head(top).reset_index(drop=True)


def curve_signals(ranking: pd.DataFrame, present: set[str]) -> list[str]:
    """The best few taxonomy signals overall, the literature aliases, then the references."""
    top = [s for s in ranking["signal"] if s not in REFERENCES][:CURVE_TOP]
    aliases = [s for s in ranking.loc[ranking["alias"].astype(str) != "", "signal"] if s not in top]
    return [s for s in dict.fromkeys([*top, *aliases, *REFERENCES]) if s in present]


def components(frame: pd.DataFrame, value: str = "geomean") -> pd.DataFrame:
    """Taxonomy signals with their four components named as the heatmaps label them."""
    cols = {
        "sig_input": "input",
        "sig_pointwise": "pointwise",
        "sig_reduction": "reduction",
        "sig_scaling": "scaling",
    }
    cells = frame[frame["sig_pointwise"].notna() & ~is_ref(frame["signal"])]
    return cells.rename(columns=cols)[["signal", *cols.values(), value]]


# ----------------------------------------------------------------------------- statistics


def compare_over_tasks(c: Comparison, hib: bool, top: int, notes: list[str]) -> dict[str, object]:
    """Friedman, Wilcoxon-Holm (top vs the best, top vs random), Nemenyi + CD, all on the
    comparison's ranking matrix (the geomeans its mean ranks come from)."""
    wide = c.wide
    if wide.shape[0] < 2:
        notes.append(
            f"one block only ({', '.join(c.tasks)}): Friedman, Wilcoxon-Holm and the CD diagram "
            "need at least two blocks (tasks, or independent repeats) and are skipped."
        )
        return {}
    dropped = wide.attrs.get("dropped_treatments", [])
    if dropped:
        notes.append(
            f"{len(dropped)} signals are missing from some block and are left out of the ranks, the "
            "Friedman/Wilcoxon tests and the CD diagram (complete blocks only)."
        )
    if wide.shape[1] < 2:
        notes.append("fewer than 2 signals run on every task: no test across tasks.")
        return {}
    order = list(c.mean_ranks.index)
    out: dict[str, object] = {
        "wide": wide,
        **_friedman(wide, order, hib, notes),
        **_wilcoxon(wide, order, hib, top),
    }
    if wide.shape[0] < 6:
        notes.append(
            f"only {wide.shape[0]} blocks: a two-sided Wilcoxon signed-rank p-value cannot fall "
            f"below {2 / 2 ** wide.shape[0]:.3g}, so no pairwise difference can be significant yet."
        )
    return out


def _friedman(wide: pd.DataFrame, order: list[str], hib: bool, notes: list[str]) -> dict[str, object]:
    """Friedman's test and what the CD diagram needs; Nemenyi among the drawn signals only,
    because the full matrix costs seconds per hundred signals."""
    if wide.shape[1] < 3:
        notes.append("fewer than 3 signals in every task: Friedman's test and the CD diagram are skipped.")
        return {}
    shown = order[:CD_TOP]
    return {
        "friedman": stats.friedman(wide, higher_is_better=hib),
        "nemenyi": stats.nemenyi(wide, treatments=shown),
        "cd": stats.critical_difference(wide.shape[1], wide.shape[0]),
    }


def _wilcoxon(wide: pd.DataFrame, order: list[str], hib: bool, top: int) -> dict[str, pd.DataFrame]:
    """The top signals against the table's best non-reference signal and against ``random``."""
    leaders = [s for s in order if s not in REFERENCES][:top]
    if not leaders:
        return {}
    out = {"vs_best": stats.wilcoxon_holm(wide[leaders], control=leaders[0], higher_is_better=hib)}
    if "random" in wide:
        vs = ["random", *leaders]
        out["vs_random"] = stats.wilcoxon_holm(wide[vs], control="random", higher_is_better=hib)
    return out


# ----------------------------------------------------------------------------- effects, oracle, curves


def component_effects(
    m: pd.DataFrame, tasks: list[str], metric: str, notes: list[str]
) -> dict[str, pd.DataFrame]:
    """Component effects over ``tasks`` (the leading label's: ``overall``) and per one of those
    tasks, and the reduction x scaling interaction over them; their warnings become notes
    (a report has no console)."""
    taxonomy = m[~is_ref(m["signal"]) & m["sig_pointwise"].notna()]
    if taxonomy.empty:
        notes.append("no taxonomy signals (only references): component effects skipped.")
        return {}
    head = taxonomy[taxonomy["task"].isin(tasks)]
    out: dict[str, pd.DataFrame] = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if len(tasks) > 1 and len(head):
            out["overall"] = effects.component_effects(head, metric)
        for task, part in head.groupby("task", sort=True):
            out[str(task)] = effects.component_effects(part, metric)
        if len(head):
            out["interaction"] = effects.interaction(head, metric)
    for w in {str(c.message) for c in caught}:
        notes.append(f"component effects: {w}")
    return out


def oracle_quality(data: dict[str, object], notes: list[str]) -> dict[str, object]:
    """Rank quality of every signal against the oracle, if the store has both rank tables."""
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
    summary = rank_quality.rank_quality_summary(rq)
    return {"rq": rq, "summary": summary, "by_step": rank_quality.rank_quality_by_step(rq)}


def bands(steps: pd.DataFrame, trials: pd.DataFrame, x: str) -> pd.DataFrame:
    """The curves on the 0..100 grid, kept where every trial of the (task, signal) still has
    a point: for a signal run once per seed, the mean over seeds and the seeds' min-max band;
    for a drawn signal (``random``), the median over every draw and seed and their 10-90 %
    band (``drawn`` says which)."""
    c = metrics.curves(steps, trials, x=x)
    keys = ["task", "signal", x]
    g = c.groupby(keys, observed=True, sort=False)["test_acc"]
    b = g.agg(["mean", "median", "min", "max", "count"])
    b["q_low"], b["q_high"] = g.quantile(SPREAD[0]), g.quantile(SPREAD[1])
    b = b.reset_index().rename(columns={"count": "n"})
    sizes = trials.groupby(["task", "signal"], observed=True).size().rename("_trials")
    drawn = (sizes > seed_counts(trials, ["task", "signal"]).reindex(sizes.index)).rename("drawn")
    b = b.merge(pd.concat([sizes, drawn], axis=1).reset_index(), on=["task", "signal"], how="left")
    b["mean"] = b["median"].where(b["drawn"], b["mean"])
    b["low"] = b["q_low"].where(b["drawn"], b["min"])
    b["high"] = b["q_high"].where(b["drawn"], b["max"])
    b = b[(b["n"] == b["_trials"]) & (b["n"] > 0)]
    return b[[*keys, "mean", "low", "high", "n", "drawn"]].reset_index(drop=True)
