"""The report agrees with itself: every mean rank printed in summary.md equals the data of
the critical-difference diagram (``figures/mean_ranks__<label>.csv``), which is also what
Friedman's test ranks and what the CD figure draws; the Wilcoxon control is the table's
best signal; the paper's protocol leads; test caveats are printed.

On a real report folder: ``PRUNETAX_CHECK_REPORT=results/demo/report pytest
tests/test_report_consistency.py`` (or ``python -m analysis.report.consistency DIR``)."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis import stats
from analysis.design import label_order, protocol_labels
from analysis.frames import load_steps, load_trials
from analysis.metrics import collapse_draws, summarise, trial_metrics
from analysis.report.consistency import check_report, rank_tables
from tests.synthetic_store import rich_report


@pytest.fixture(scope="module")
def rich():
    return rich_report()


def test_every_printed_mean_rank_agrees_with_the_cd_data(rich):
    _, report = rich
    assert check_report(report.out_dir) == []
    tables = rank_tables(report.summary_md.read_text(encoding="utf-8"))
    named = {csv for csv, _ in tables}
    assert named == {
        f"mean_ranks__{s}.csv" for s in ("sensitivity", "retrain", "sensitivity--aggregation-sum")
    }
    assert sum(len(t) for _, t in tables) >= 30, "the check must cover the tables, not pass vacuously"


def test_the_cross_check_catches_each_kind_of_disagreement(rich, tmp_path):
    _, report = rich
    copy = tmp_path / "report"
    shutil.copytree(report.out_dir, copy)
    csv = copy / "figures" / "mean_ranks__sensitivity.csv"
    data = pd.read_csv(csv)
    second = data.loc[1, "signal"]
    data.loc[1, "mean_rank"] += 0.5  # the table now prints another number than the data
    data.to_csv(csv, index=False)
    problems = check_report(copy)
    assert any(f"`{second}` prints mean rank" in p for p in problems), problems
    assert any(p.startswith("cd_diagram__sensitivity.svg") for p in problems), "the figure's labels too"
    shutil.copy(report.out_dir / "figures" / "mean_ranks__sensitivity.csv", csv)
    md = copy / "summary.md"
    text = md.read_text(encoding="utf-8")
    md.write_text(text.replace("mean_ranks__retrain.csv", "mean_ranks__nowhere.csv", 1), encoding="utf-8")
    assert any("no rank data" in p for p in check_report(copy))


def test_tables_cd_and_friedman_rank_from_one_matrix(rich):
    """The CSV is the mean rank of each signal over the blocks - one per independent repeat of
    each task (random first collapsed to its per-seed median) - exactly what Friedman's test
    ranks."""
    store, report = rich
    m = trial_metrics(load_trials(store), load_steps(store))
    m = collapse_draws(m[m["protocol_label"] == "sensitivity"])
    block = ("task", "seed")
    wide = stats.summary_matrix(summarise(m, "sparsity_at_5", by=block), "geomean", block)
    assert wide.shape[0] == 6  # 2 tasks x 3 repeats
    friedman = stats.friedman(wide, permutations=0)
    data = pd.read_csv(report.out_dir / "figures" / "mean_ranks__sensitivity.csv").set_index("signal")
    assert list(data.index) == list(friedman["mean_ranks"].index)
    np.testing.assert_array_equal(data["mean_rank"], friedman["mean_ranks"])
    assert data["in_cd_diagram"].all() and (data["n_tasks"] == 2).all()


def test_wilcoxon_control_is_the_tables_best_and_caveats_are_printed(rich):
    _, report = rich
    md = report.summary_md.read_text(encoding="utf-8")
    best = next(s for s in report.top["signal"] if s not in ("random", "oracle"))
    assert f"top signals vs the best (`{best}`)" in md
    friedman = re.findall(r"Friedman test over \d+ blocks[^\n]*", md)
    assert friedman and all("Caveat:" in line and "permutation p" in line for line in friedman)


def test_the_papers_protocol_leads_whatever_the_counts():
    """`sensitivity` at one unit per step leads even when another label has more signals and
    tasks (the old rule picked by count, then alphabetically: `oneshot` over `sensitivity`)."""
    rows = []
    for label, signals, tasks, cps in (
        ("oneshot", 9, 3, 1.0),
        ("sensitivity", 4, 2, 0.1),
        ("sensitivity", 3, 2, 1.0),
    ):
        for t in range(tasks):
            for s in range(signals):
                rows.append(
                    dict(protocol=label, task=f"t{t}", signal=f"s{s}", units_per_step=None, initial_units=80)
                    | {"protocol_json": f'{{"name": "{label}", "channels_per_step": {cps}}}'}
                )
    frame = pd.DataFrame(rows)
    frame["protocol_label"] = protocol_labels(frame)
    assert label_order(frame) == ["sensitivity", "oneshot", "sensitivity [coarse (8 units per step)]"]


@pytest.mark.skipif(not os.environ.get("PRUNETAX_CHECK_REPORT"), reason="set PRUNETAX_CHECK_REPORT=DIR")
def test_a_real_report_agrees_with_itself():
    assert check_report(Path(os.environ["PRUNETAX_CHECK_REPORT"])) == []
