"""Per-trial overhead of sweeps on Ray Tune, measured side by side in one run.

Runs the same 200 short trials (one-shot pruning of the tiny default to one target, so
each trial is a fraction of a second) twice into fresh stores: once with one trial per
Ray Tune trial (Tune's own per-trial cost) and once batched into work units. Overhead
per trial = (sweep wall time - sum of work-unit compute time) / trials, with a one-CPU
Ray so that compute is serial and the subtraction is meaningful.

    .venv/bin/python benchmarks/bench_sweep.py [--trials 200] [--out results/bench_sweep.csv]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import textwrap
from pathlib import Path

from results_table import append_rows

SPEC = """
[sweep]
name = "bench"
store = "{store}"
cache_dir = "{cache}"
models = ["tiny_cnn"]
base_seeds = [0]
seeds = {seeds}
signals = {signals}
signals_per_unit = {per_unit}

[[runs]]
protocol = "oneshot"
targets = [50]
"""


def _signals(n: int) -> str:
    """``n`` cheap signals: data-free weight signals first, then forward-only activation ones."""
    from taxonomy.equivalence import distinct

    cheap = [s.id for s in distinct() if s.pointwise.id in ("value", "apoz")]
    cheap.sort(key=lambda s: not s.startswith("weight"))
    return "[" + ", ".join(f'"{s}"' for s in cheap[:n]) + "]"


def measure(trials: int, per_unit: int, cache: str, workdir: Path) -> dict:
    from study.sweep.plan import make_plan
    from study.sweep.runner import run_plan
    from study.sweep.spec import parse_spec

    seeds = 5 if trials % 5 == 0 else 1
    store = workdir / f"store-{per_unit}"
    text = textwrap.dedent(SPEC).format(
        store=store,
        cache=cache,
        seeds=list(range(seeds)),
        signals=_signals(trials // seeds),
        per_unit=per_unit,
    )
    plan = make_plan(parse_spec(text))
    result = run_plan(plan, printer=lambda _: None)
    n = result.ok + result.failed
    return {
        "trials": n,
        "trials_per_tune_trial": per_unit,
        "tune_trials": result.units,
        "wall_s": round(result.wall_s, 2),
        "compute_s": round(result.compute_s, 2),
        "overhead_per_trial_s": round((result.wall_s - result.compute_s) / n, 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--batched", type=int, default=20, help="trials per work unit in the batched run")
    parser.add_argument("--cache", default="results/models")
    parser.add_argument("--out", help="append the rows to this CSV")
    args = parser.parse_args()

    import os

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    from study.sweep.runner import ray_session
    from study.train import TrainConfig, load_or_train

    load_or_train(TrainConfig("tiny_cnn", "digits", 0), args.cache)
    work = Path(tempfile.mkdtemp(prefix="bench-sweep-"))
    try:
        with ray_session(num_cpus=1):  # one worker: compute is serial, so wall - compute = overhead
            rows = [
                measure(args.trials, 1, args.cache, work),
                measure(args.trials, args.batched, args.cache, work),
            ]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    keys = list(rows[0])
    print("| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    for r in rows:
        print("| " + " | ".join(str(r[k]) for k in keys) + " |")
    if args.out:
        append_rows(Path(args.out), rows)


if __name__ == "__main__":
    main()
