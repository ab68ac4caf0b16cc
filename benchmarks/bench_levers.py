"""The demo's one-unit-per-step levers, before and after, measured side by side in one run.

One repeat of the demo's sensitivity run (the paper's greedy loop, one unit per step) on
a fixed sample of distinct signals plus ``random`` and the ``oracle``, in this process and
one thread, under four configurations run in turn:

- ``before``: the wave-1 default network (``tiny_cnn``, 80 units), trajectories run to
  ``stop_acc = 50`` and every trajectory evaluated on its own;
- ``+stop_drop``: stop once accuracy is 10 points below the reference (every headline
  drop, 1/2/5/10 points, is still read exactly);
- ``+merge``: trajectories that reach the same network state are evaluated once;
- ``+right-size``: the demo's ``digits_cnn`` (40 units, 98.6 % on digits).

Each row gives trajectory-steps, wall time, trajectory-steps per second and the wall time
per trial (what the demo's length follows); the first three configurations prune the same
network, so their per-trial times compare directly, and stop_drop and merge are exact
(tests/test_trajectory.py, tests/test_rank_trajectory.py). The order is repeated
``--rounds`` times, interleaved, and the medians reported.

    .venv/bin/python benchmarks/bench_levers.py [--signals 40] [--rounds 1]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path

import torch
from results_table import append_rows

from study.environment import Environment
from study.execute import _run_unit
from study.protocols import greedy
from study.sweep.plan import make_plan
from study.sweep.spec import parse_spec

CONFIGS = (
    ("before", "tiny_cnn", "stop_acc = 50", False),
    ("+stop_drop", "tiny_cnn", "stop_drop = 10", False),
    ("+merge", "tiny_cnn", "stop_drop = 10", True),
    ("+right-size", "digits_cnn", "stop_drop = 10", True),
)


def _unit(model: str, stop: str, signals: list[str], cache: str, store: str) -> list:
    """The work unit of one repeat of the demo's sensitivity run on ``signals``."""
    listed = ", ".join(f'"{s}"' for s in signals)
    text = f"""
[sweep]
store = "{store}"
cache_dir = "{cache}"
models = ["{model}"]
base_seeds = [0]
signals = [{listed}, "random", "oracle"]
signals_per_unit = 1000
random_draws = 5
[[runs]]
protocol = "sensitivity"
{stop}
"""
    plan = make_plan(parse_spec(text))
    (unit,) = plan.units
    return unit


def _sample(model: str, n: int, cache: str, store: str) -> list[str]:
    """Every k-th distinct signal of ``model`` (a fixed spread over the space)."""
    plan = make_plan(
        parse_spec(
            f'[sweep]\nstore = "{store}"\ncache_dir = "{cache}"\nmodels = ["{model}"]\n'
            'base_seeds = [0]\nsignals = ["distinct"]\n[[runs]]\nprotocol = "sensitivity"\n'
        )
    )
    ids = sorted(t.signal for t in plan.trials)
    return ids[:: max(1, len(ids) // n)][:n]


def measure(label: str, model: str, stop: str, merge: bool, signals: list[str], env, cache, store) -> dict:
    unit = _unit(model, stop, signals, cache, store)
    greedy.MERGE_STATES = merge
    try:
        t0 = time.perf_counter()
        records = _run_unit(unit, env)
        wall = time.perf_counter() - t0
    finally:
        greedy.MERGE_STATES = True
    steps = sum(len(r.steps) for r in records)
    return {
        "config": label,
        "model": model,
        "trials": len(records),
        "trajectory_steps": steps,
        "wall_s": round(wall, 2),
        "steps_per_s": round(steps / wall, 2),
        "s_per_trial": round(wall / len(records), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", default="results/models")
    parser.add_argument("--signals", type=int, default=40, help="distinct signals sampled (default 40)")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--out", default="results/benchmarks/levers.csv")
    args = parser.parse_args()
    torch.set_num_threads(1)
    cache = str(Path(args.cache).absolute())
    store = str(Path("/tmp/prunetax-bench-levers-unused"))  # the plan needs one; nothing is written
    env = Environment(cache)
    signals = _sample("tiny_cnn", args.signals, cache, store)
    runs: dict[str, list[dict]] = {c[0]: [] for c in CONFIGS}
    for _ in range(args.rounds):
        for label, model, stop, merge in CONFIGS:
            runs[label].append(measure(label, model, stop, merge, signals, env, cache, store))
            print(runs[label][-1], flush=True)
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    rows = []
    base = statistics.median(r["s_per_trial"] for r in runs["before"])
    print(f"\n{len(signals)} distinct signals + random (5 draws) + oracle, one repeat, one thread")
    head = ("config", "model", "steps", "wall s", "steps/s", "s/trial", "speedup")
    print("{:<12} {:<11} {:>6} {:>7} {:>8} {:>8} {:>8}".format(*head))
    for label, model, _, _ in CONFIGS:
        keys = ("trajectory_steps", "wall_s")
        med = {k: statistics.median(r[k] for r in runs[label]) for k in keys}
        per_trial = statistics.median(r["s_per_trial"] for r in runs[label])
        rate = med["trajectory_steps"] / med["wall_s"]
        print(
            f"{label:<12} {model:<11} {med['trajectory_steps']:>6.0f} {med['wall_s']:>7.1f} {rate:>8.1f} "
            f"{per_trial:>8.3f} {base / per_trial:>7.1f}x"
        )
        rows.append(
            {
                "time": stamp,
                "host": platform.node(),
                "bench": "levers",
                "config": label,
                "model": model,
                "trials": len(signals) + 6,
                **med,
                "steps_per_s": round(rate, 2),
                "s_per_trial": per_trial,
                "speedup_per_trial": round(base / per_trial, 2),
            }
        )
    append_rows(Path(args.out), rows)
    print(f"appended to {args.out}")


if __name__ == "__main__":
    main()
