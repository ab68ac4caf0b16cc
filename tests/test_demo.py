"""``prunetax demo``: a small demo end to end (Ray, report), reruns that only rebuild the
report, bad options; and (slow) an interrupted demo resumes to the same numbers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from study.cli import main
from study.store import Store

SMALL = [
    "--models",
    "digits_cnn",
    "--seeds",
    "2",
    "--signals",
    "l1_filter",
    "best_gradient",
    "random",
    "oracle",
    "--retrain-signals",
    "random",
    "--mean-replacement-signals",
    "l1_filter",
    "--channels-per-step",
    "0.2",
]


def test_the_default_demo_is_the_papers_protocol(tmp_path):
    """One unit per step, five independent repeats, every distinct signal with random and the
    oracle, stopping at the largest headline drop; a coarser step is labelled."""
    import argparse

    from study.cli import demo
    from study.sweep.plan import make_plan
    from study.sweep.spec import parse_spec

    parser = argparse.ArgumentParser()
    demo.add(parser.add_subparsers())
    args = parser.parse_args(["demo", "--out", str(tmp_path)])
    text = demo.spec_text(args)
    spec = parse_spec(text, str(tmp_path / "demo.toml"), base=tmp_path)
    runs = {run.protocol.name: run for run in reversed(spec.runs)}  # the first of each protocol
    greedy = runs["sensitivity"].protocol
    assert greedy.channels_per_step == 1 and greedy.stop_drop == 10
    assert spec.base_seeds == (0, 1, 2, 3, 4) and spec.seeds is None and spec.random_draws >= 5
    assert {"retrain", "fisher_cost", "myopic", "best_of_n"} <= set(runs)
    assert any(getattr(run.protocol, "mean_replacement", False) for run in spec.runs)
    plan = make_plan(spec)
    sens = [t for t in plan.trials if t.protocol.name == "sensitivity"]
    signals = {t.signal for t in sens}
    assert {"oracle", "random", "activation_voting"} <= signals and len(signals) > 400
    coarse = parser.parse_args(["demo", "--out", str(tmp_path), "--channels-per-step", "0.1"])
    assert "COARSE" in demo.spec_text(coarse)


@pytest.mark.ray
def test_small_demo_end_to_end_then_report_only(ray_cluster, model_cache, tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--cache-dir", str(model_cache), *SMALL]) == 0
    printed = capsys.readouterr().out
    assert "Top" in printed and "report:" in printed
    trials = Store(out / "store").load("trials")
    assert set(trials["model"]) == {"digits_cnn"} and (trials["status"] == "ok").all()
    assert set(trials["protocol"]) == {"sensitivity", "retrain", "fisher_cost", "myopic", "best_of_n"}
    assert len(Store(out / "store").load("oracle")) > 0
    assert (out / "report" / "index.html").is_file() and (out / "demo.toml").is_file()
    assert list((out / "report" / "figures").glob("curves*.png"))
    assert main(["demo", "--out", str(out), "--cache-dir", str(model_cache), *SMALL]) == 0
    assert "regenerating the report only" in capsys.readouterr().out


def test_bad_demo_options_write_nothing(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--channels-per-step", "2.5"]) == 2
    assert "channels_per_step" in capsys.readouterr().err
    assert main(["demo", "--out", str(out), "--seeds", "1"]) == 2
    assert "at least 2" in capsys.readouterr().err
    assert main(["demo", "--out", str(out), "--signals", "taylor_f0"]) == 2
    assert "taylor_fo" in capsys.readouterr().err
    assert not out.exists()


def _demo_cmd(out: Path, cache: Path) -> list[str]:
    return [
        str(Path(sys.executable).with_name("prunetax")),
        "demo",
        "--out",
        str(out),
        "--cache-dir",
        str(cache),
        *SMALL,
    ]


@pytest.mark.slow
@pytest.mark.ray
def test_interrupted_demo_resumes_to_the_same_numbers(model_cache, tmp_path):
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    ref, cut = tmp_path / "ref", tmp_path / "cut"
    subprocess.run(_demo_cmd(ref, model_cache), check=True, env=env, stdout=subprocess.DEVNULL)
    proc = subprocess.Popen(
        _demo_cmd(cut, model_cache),
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None:
        done = (
            list((cut / "store" / "trials").glob("*.parquet")) if (cut / "store" / "trials").is_dir() else []
        )
        if len(done) >= 6:
            break
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    # Ray's worker processes outlive a killed driver for a moment and may still store the trial
    # they were running (atomically): count once the store has stopped changing
    stored, still = -1, 0
    while still < 3 and time.time() < deadline + 60:
        now = len(Store(cut / "store").load("trials"))  # a file may hold several trials of a unit
        still = still + 1 if now == stored else 0
        stored = now
        time.sleep(2)
    assert 0 < stored < len(Store(ref / "store").load("trials"))
    result = subprocess.run(_demo_cmd(cut, model_cache), check=True, env=env, capture_output=True, text=True)
    assert f"{stored} stored ok" in result.stdout  # stored trials are not redone
    for table in ("trials", "steps"):
        a, b = Store(ref / "store").load(table), Store(cut / "store").load(table)
        assert set(a["run_key"]) == set(b["run_key"])
    keys = ["run_key", "step"]
    drop = ["t_stats", "t_score", "t_prune", "t_retrain", "t_eval"]
    a = Store(ref / "store").load("steps").drop(columns=drop).sort_values(keys).reset_index(drop=True)
    b = Store(cut / "store").load("steps").drop(columns=drop).sort_values(keys).reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)
    # every number of the report is the same; only the store's path differs
    ref_md = (ref / "report" / "summary.md").read_text().replace(str(ref), "<demo>")
    assert ref_md == (cut / "report" / "summary.md").read_text().replace(str(cut), "<demo>")
