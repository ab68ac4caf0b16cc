"""Sections on the study's design and validity: what was run (protocol labels, the unit-score
aggregation), the spread of ``random``, the test set's noise, the paper's findings checked
on the store, how the rankings move between aggregations, rank quality along the
oracle's trajectory and the store's data integrity."""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis import design
from analysis import findings as paper
from analysis.report import figures, tables
from analysis.report.builder import Builder, Comparison
from analysis.report.formatting import fmt
from study.store import health

__all__ = [
    "design_table",
    "what_was_run",
    "random_draws",
    "noise_table",
    "findings",
    "aggregation",
    "oracle_trajectory",
    "integrity",
]


def design_table(b: Builder) -> pd.DataFrame:
    """One row per protocol label: tasks, signals, seeds, trials, draws of random, aggregation."""
    trials = b.data["trials"]
    rows = []
    for c in b.comparisons:
        t = trials[trials["protocol_label"] == c.protocol]
        seeds = tables.seed_counts(c.m, ["task", "signal"])
        draws = t[t["signal"] == "random"].groupby(["task", "base_seed", "seed"]).size()
        rows.append(
            {
                "protocol label": f"`{c.protocol}`",
                "tasks": str(len(c.tasks)),
                "signals": str(c.m["signal"].nunique()),
                "seeds per signal and task": _range(seeds),
                "trials": str(len(t)),
                "random draws per seed": _range(draws) if len(draws) else "–",
                "aggregation": ", ".join(f"`{a}`" for a in sorted(set(design.aggregations(t)))),
            }
        )
    return pd.DataFrame(rows)


def _range(counts: pd.Series) -> str:
    lo, hi = int(counts.min()), int(counts.max())
    return f"{lo}–{hi}" if lo != hi else f"{hi}"


def what_was_run(b: Builder) -> None:
    """What was run, per protocol label, and the unit-score aggregation stated in words."""
    b.doc.heading(2, "What was run")
    b.doc.table(design_table(b))
    used = sorted(set(design.aggregations(b.data["trials"])))
    words = "; ".join(f"`{a}`: {design.AGGREGATION_TEXT.get(a, 'as recorded')}" for a in used)
    b.doc.para(
        f"Unit-score aggregation (how a coupled unit, e.g. channels joined by a residual add, gets one "
        f"score): {words}. The default is `{design.DEFAULT_AGGREGATION}`; any other aggregation is a "
        "protocol variant with its own label. On a network without coupled units every aggregation "
        "scores alike. A label with `coarse (k units per step)` prunes k units per greedy step instead of "
        "the paper's one, which reorders signals: compare it with the one-unit label, not across."
    )


def random_draws(b: Builder, c: Comparison) -> None:
    """Under a ranking table: how `random` was drawn and its spread over all draws."""
    shown = set(c.top_table["signal"])
    for row in c.spread.itertuples():
        where = " (the table's last column)" if row.signal in shown else ""
        b.doc.para(
            f"`{row.signal}` ran {int(row.n_draws)} independent trajectories in all (several draws per "
            f"seed). In the ranks and tests its value for a seed is the median over that seed's draws; "
            f"over all draws its {b.metric} has median {fmt(row.draw_median)}, 10–90 % range "
            f"[{fmt(row.draw_low)}, {fmt(row.draw_high)}] and min–max [{fmt(row.draw_min)}, "
            f"{fmt(row.draw_max)}]{where}."
        )


def noise_table(b: Builder) -> None:
    """The binomial standard error of test accuracy at the reference, per network."""
    noise = design.accuracy_noise(b.data["trials"])
    b.doc.heading(3, "Test-set noise")
    known = noise["n_test"].notna()
    b.doc.para(
        "The test set's binomial standard error at the reference accuracy, SE = 100·√(p(1−p)/n_test) "
        "points, per network: accuracy differences smaller than it are not differences, and a curve's "
        "crossing of reference − d points is uncertain by about that much."
        + ("" if known.all() else " n_test = unknown: the store does not record the test-set size.")
    )
    b.doc.table(
        pd.DataFrame(
            {
                "network": noise["model"] + "/" + noise["dataset"],
                "reference accuracy (%)": noise["reference_acc"].map(lambda v: fmt(v, 2)),
                "n_test": [fmt(int(n)) if np.isfinite(n) else "unknown" for n in noise["n_test"]],
                "SE (points)": [fmt(v, 2) if np.isfinite(v) else "unknown" for v in noise["se"]],
            }
        )
    )


def findings(b: Builder) -> None:
    """The four findings of SPEC §4, each with its statistic, verdict and numbers."""
    head = b.comparisons[0]
    b.doc.heading(2, "The paper's findings, checked on this store")
    b.doc.para(
        f"Each finding of Persand et al. tested on the `{head.protocol}` trials ({len(head.tasks)} "
        f"task{'s' * (len(head.tasks) > 1)}; taxonomy signals only, equivalent signals counted once, seeds "
        "averaged within a task). The p-values of findings 1, 3 and 4 are Holm-adjusted together; matched "
        "cells of one task share its network, so with few tasks read them as descriptive."
    )
    result = paper.findings(head.m, b.metric, higher_is_better=b.hib)
    b.doc.table(
        pd.DataFrame(
            {
                "#": [str(i) for i in range(1, len(result) + 1)],
                "finding": [f.claim for f in result],
                "verdict": [f.verdict for f in result],
                "numbers behind it": [f.summary for f in result],
            }
        )
    )
    for i, f in enumerate(result, 1):
        b.doc.para(f"Finding {i}, {f.claim}. Statistic: {f.statistic}. Verdict rule: {f.rule}.")
    b.findings = result


def _movers(b: Builder, task_a: str, task_b: str) -> pd.DataFrame | None:
    """The top 10 and the aliases of two tasks, ranked among the signals both ran."""
    a = b.by_task[b.by_task["task"] == task_a].set_index("signal")
    z = b.by_task[b.by_task["task"] == task_b].set_index("signal")
    common = a.index.intersection(z.index)
    if len(common) < 2:
        return None
    asc = not b.hib
    ra = a.loc[common, "geomean"].rank(ascending=asc, method="average")
    rz = z.loc[common, "geomean"].rank(ascending=asc, method="average")
    taxonomy = [s for s in common if s not in tables.REFERENCES]
    top = set(ra[taxonomy].nsmallest(10).index) | set(rz[taxonomy].nsmallest(10).index)
    named = {s for s in common if str(a.loc[s, "alias"]) or s in tables.REFERENCES}
    shown = sorted(top | named, key=lambda s: (ra[s], s))
    return pd.DataFrame(
        {
            "signal": [f"`{s}`" for s in shown],
            "alias": [str(a.loc[s, "alias"]) for s in shown],
            "rank (default)": [fmt(ra[s], 1 if ra[s] % 1 else 0) for s in shown],
            "rank (sum)": [fmt(rz[s], 1 if rz[s] % 1 else 0) for s in shown],
            "moved": [f"{ra[s] - rz[s]:+g}" for s in shown],
            "geomean (default)": [fmt(a.loc[s, "geomean"]) for s in shown],
            "geomean (sum)": [fmt(z.loc[s, "geomean"]) for s in shown],
        }
    )


def aggregation(b: Builder) -> None:
    """How the literature aliases and the top 10 move between the default aggregation and
    ``sum``, on every network with trials under both."""
    trials = b.data["trials"]
    agg = design.aggregations(trials)
    base = design.protocol_labels(trials.assign(aggregation=design.DEFAULT_AGGREGATION))
    pairs = []
    for (model, dataset, label), part in trials.assign(_base=base, _agg=agg).groupby(
        ["model", "dataset", "_base"], sort=True
    ):
        kinds = dict(part.groupby("_agg")["protocol_label"].first())
        if design.DEFAULT_AGGREGATION in kinds and "sum" in kinds:
            net = f"{model}/{dataset}"
            pairs.append((net, label, f"{net}/{kinds[design.DEFAULT_AGGREGATION]}", f"{net}/{kinds['sum']}"))
    if not pairs:
        return
    b.doc.heading(2, "Default aggregation against `sum`")
    b.doc.para(
        f"Networks whose signals ran under both the default `{design.DEFAULT_AGGREGATION}` aggregation and "
        "`sum` (a coupled unit's score = the sum of its members'). Ranks are taken among the signals run "
        "under both, by the geomean over seeds; shown: the top 10 under either and every literature alias "
        "and reference. moved = rank (default) − rank (sum): positive = better under `sum`."
    )
    for net, label, task_a, task_b in pairs:
        b.doc.heading(3, f"{net}, `{label}`")
        table = _movers(b, task_a, task_b)
        if table is None:
            b.doc.para("Fewer than two signals ran under both aggregations.")
            continue
        b.doc.table(table)


def oracle_trajectory(b: Builder, by_step: pd.DataFrame) -> None:
    """Spearman with the oracle at step 0 against later steps of the oracle's trajectory."""
    if by_step["step"].nunique() < 2:
        return
    b.doc.heading(3, "Along the oracle's own trajectory")
    figures.oracle_steps(b, by_step)
    steps = sorted(by_step["step"].unique())
    picks = list(dict.fromkeys([steps[0], steps[len(steps) // 3], steps[2 * len(steps) // 3], steps[-1]]))
    for (model, dataset), part in by_step.groupby(["model", "dataset"], sort=True):
        wide = part.pivot_table(index="signal", columns="step", values="spearman")
        signals = [s for s in b.ranking["signal"] if s in b.highlight and s in wide.index]
        if not signals:
            continue
        wide = wide.loc[signals]
        frame = pd.DataFrame({"signal": [f"`{s}`" for s in signals]})
        for k in picks:
            frame[f"ρ at step {k}"] = [fmt(v, 3) for v in wide.get(k, pd.Series(np.nan, index=signals))]
        later = wide[[k for k in wide.columns if k != steps[0]]].mean(axis=1)
        frame["mean of later steps"] = [fmt(v, 3) for v in later]
        frame["change"] = [fmt(v, 3) for v in later - wide.get(steps[0], np.nan)]
        b.doc.para(
            f"{model}/{dataset}: Spearman ρ with the oracle (mean over seeds) at step 0 and later steps."
        )
        b.doc.table(frame)


def integrity(b: Builder) -> None:
    """Files the reader skipped or found damaged, ok trials without steps, rank jobs without
    scores and trials a quarantine invalidated (:func:`study.store.health`)."""
    report = health(b.root)
    b.doc.heading(2, "Data integrity")
    b.doc.para(
        f"{report.files_checked} store files checked (footers and key columns; `prunetax store verify` "
        "checks the checksums). Files that could not be read or do not belong are skipped by every table "
        "here; ok trials whose steps are missing are left out of every ranking; trials a quarantine "
        "invalidated await a rerun of the sweep."
    )
    lists = (
        ("Skipped or damaged files", ["file", "reason"], [(f"`{p}`", r) for p, r in report.damaged]),
        ("Ok trials without steps", ["run_key"], [(f"`{k}`",) for k in report.trials_without_steps]),
        (
            "Rank-quality jobs without scores",
            ["run_key"],
            [(f"`{k}`",) for k in report.rank_jobs_without_scores],
        ),
        ("Invalidated trials", ["run_key"], [(f"`{k}`",) for k in report.invalidated]),
    )
    for title, columns, rows in lists:
        b.doc.para(f"{title}: {len(rows) if rows else 'none'}.")
        if rows:
            b.doc.table(pd.DataFrame(rows, columns=columns))
    if not report.ok:
        b.notes.append(
            "the store is not healthy (see Data integrity): "
            + "; ".join(report.lines()[:3])
            + ("; ..." if len(report.lines()) > 3 else "")
        )
