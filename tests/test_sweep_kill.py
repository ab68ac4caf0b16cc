"""Kill test: SIGKILL the sweep driver at random points, resume each time, and prove the
final store equals an uninterrupted run's (same run_keys, identical steps rows, no
duplicates, nothing partial visible to readers). Slow: run with ``-m slow``."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from study.store import Store

SPEC = """
[sweep]
name = "kill"
store = "{store}"
cache_dir = "{cache}"
models = ["tiny_cnn"]
base_seeds = [0]
seeds = [0, 1, 2]
signals = ["aliases", "random", "oracle", {{ input = "weight", pointwise = "taylor", distinct = true }}]
signals_per_unit = 3

[resources]
cpus_per_trial = 1

[[runs]]
protocol = "sensitivity"
channels_per_step = 8
"""

TIMING = ["t_stats", "t_score", "t_prune", "t_retrain", "t_eval"]


def _start(spec: Path) -> subprocess.Popen:
    cli = Path(sys.executable).with_name("prunetax")
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    return subprocess.Popen(
        [str(cli), "sweep", str(spec)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        env=env,
    )


def _count(store: Path) -> int:
    folder = store / "trials"
    return len(list(folder.glob("*.parquet"))) if folder.is_dir() else 0


def _kill_session(proc: subprocess.Popen) -> None:
    """SIGKILL the driver, then whatever Ray processes it left in its session."""
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    time.sleep(0.5)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def _run(spec: Path, timeout: float = 600) -> None:
    proc = _start(spec)
    try:
        assert proc.wait(timeout=timeout) == 0
    finally:
        if proc.poll() is None:
            _kill_session(proc)


def _steps(store: Path):
    steps = Store(store).load("steps").drop(columns=TIMING)
    return steps.sort_values(["run_key", "step"]).reset_index(drop=True)


@pytest.mark.slow
@pytest.mark.ray
def test_killed_and_resumed_sweep_equals_uninterrupted_run(model_cache, tmp_path):
    rng = random.Random(1234)
    ref_spec, cut_spec = tmp_path / "ref.toml", tmp_path / "cut.toml"
    ref_store, cut_store = tmp_path / "ref", tmp_path / "cut"
    ref_spec.write_text(textwrap.dedent(SPEC).format(store=ref_store, cache=model_cache))
    cut_spec.write_text(textwrap.dedent(SPEC).format(store=cut_store, cache=model_cache))
    _run(ref_spec)
    total = _count(ref_store)
    assert total >= 30

    kills = 0
    while kills < 3:
        before = _count(cut_store)
        if before >= total:
            break
        target = min(total - 1, before + rng.randint(2, 8))
        proc = _start(cut_spec)
        deadline = time.time() + 300
        while _count(cut_store) < target and proc.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        time.sleep(rng.uniform(0, 1.0))  # land anywhere: mid-trial, mid-write, between units
        if proc.poll() is None:
            _kill_session(proc)
            kills += 1
    assert kills == 3
    _run(cut_spec)

    ref, cut = Store(ref_store).load("trials"), Store(cut_store).load("trials")
    assert cut["run_key"].is_unique and (cut["status"] == "ok").all()
    assert set(ref["run_key"]) == set(cut["run_key"])
    a, b = _steps(ref_store), _steps(cut_store)
    assert not b.duplicated(["run_key", "step"]).any()
    assert a.equals(b)
    for table in ("trials", "steps"):  # every file a reader can see is a complete Parquet file
        for f in (cut_store / table).glob("*.parquet"):
            pq.read_metadata(f)
