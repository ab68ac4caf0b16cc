"""Rank quality along the oracle's own trajectory: the job follows the oracle greedily and
scores every signal over the units still active, every k steps."""

from __future__ import annotations

import pandas as pd

from study.environment import Environment
from study.rankings import RankJob, run_rank_job


def test_the_job_follows_the_oracle_and_records_every_k_steps(model_cache):
    job = RankJob("tiny_cnn", "digits", 0, 0, ("l1_filter", "random"), every=1, stop_drop=3.0)
    scores, oracle = map(pd.DataFrame, run_rank_job(job, Environment(model_cache)))
    steps = sorted(oracle["step"].unique())
    assert steps[0] == 0 and steps == list(range(len(steps))) and len(steps) > 2
    for k in steps[:-1]:
        now, after = oracle[oracle.step == k], oracle[oracle.step == k + 1]
        gone = set(now["unit"]) - set(after["unit"])
        assert len(gone) == 1 and len(after) == len(now) - 1  # one unit per step
        (unit,) = gone
        assert (
            now.set_index("unit").loc[unit, "loss_change"] == now["loss_change"].min()
        )  # the oracle's choice
    per_step = scores.groupby(["step", "signal"]).size().unstack()
    assert (per_step["weight-value-l1-none"] == oracle.groupby("step").size()).all()  # the active units only
    assert set(scores["signal"]) == {"weight-value-l1-none", "random"}
    # every 2 steps along the same trajectory (stopped sooner: a prefix of it)
    again = RankJob("tiny_cnn", "digits", 0, 0, ("l1_filter", "random"), every=2, stop_drop=1.0)
    _, o2 = run_rank_job(again, Environment(model_cache))
    even = sorted({r["step"] for r in o2})
    assert even[0] == 0 and even == [s for s in steps if s % 2 == 0][: len(even)]
    for r in o2:  # the same oracle measurements at the steps both recorded
        row = oracle[(oracle.step == r["step"]) & (oracle.unit == r["unit"])]
        assert float(row["loss_change"].iloc[0]) == r["loss_change"]
