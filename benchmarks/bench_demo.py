"""Performance of the demo's pruning loop, measured side by side in one run.

(a) One greedy step of a trial, split into statistics / scoring / pruning / evaluation,
    against the bare passes that step must run: a plain forward+backward of the model on
    the eval batches (the saliency data) and a plain forward on the test and eval
    examples (the evaluation). Overhead ratio = harness time per step / bare time.
(b) Scoring every signal of the space from one statistics pass versus one pass (collect
    + score) per signal, on the unpruned network.
(c) Sweep throughput: trials per minute of a demo-shaped sweep through Ray Tune (a
    sample of distinct signals on both demo networks, the demo's protocol), and of the
    full demo store when one exists (``--demo-store``).

    .venv/bin/python benchmarks/bench_demo.py [--device cuda] [--out results/benchmarks/demo.csv]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import torch
import torch.nn.functional as F
from results_table import append_rows


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _time(fn) -> float:  # noqa: ANN001
    _sync()
    t0 = time.perf_counter()
    fn()
    _sync()
    return time.perf_counter() - t0


def _median_ms(fn, repeat: int) -> float:  # noqa: ANN001
    fn()  # warm-up
    return 1000 * statistics.median(_time(fn) for _ in range(repeat))


def _paired_median_ms(a, b, repeat: int) -> tuple[float, float]:  # noqa: ANN001
    """Medians of a and b timed alternately, so load on this shared machine hits both alike."""
    a(), b()  # warm-up
    ta, tb = [], []
    for _ in range(repeat):
        ta.append(_time(a))
        tb.append(_time(b))
    return 1000 * statistics.median(ta), 1000 * statistics.median(tb)


def _setup(model: str, cache: str, device: str, signal: str):  # noqa: ANN202
    from study.base_model import load_base
    from study.environment import Environment
    from study.execute import make_setup
    from study.protocols import make_protocol
    from study.trial import TrialSpec

    base = load_base(model, "digits", 0, Environment(cache, device=device))
    return make_setup(TrialSpec(model, "digits", signal, make_protocol(stop_drop=10.0)), base)


def step_overhead(model: str, signal: str, cache: str, device: str, repeat: int) -> dict:
    """(a): a harness step vs the bare passes it needs."""
    from study.trajectory import Branch, Run
    from taxonomy.spec import parse

    setup = _setup(model, cache, device, signal)
    runner = Run(setup, [parse(signal)], "pooled", "output")
    branch = Branch(runner.root.active.clone(), list(runner.trajectories))
    parts: dict[str, list[float]] = {"stats": [], "score": [], "prune": [], "eval": []}

    def harness() -> None:
        timing: dict = {}
        runner.load(branch)
        runner.scores(branch.members, timing)
        t0 = time.perf_counter()
        runner.ws.load(branch.active, None, object())  # re-apply the masks, as a prune does
        timing["prune"] = time.perf_counter() - t0
        runner.evaluate(timing)
        for k in parts:
            parts[k].append(timing.get(k, 0.0))

    from study.collect import _passes_for, _with_values
    from taxonomy.statistics import Needs

    net, passes = setup.model, _passes_for(_with_values(Needs.of([parse(signal)])))
    backward, forward = any(p.grad for p in passes), any(p.data for p in passes)
    x = torch.cat([b[0] for b in setup.eval_batches])
    y = torch.cat([b[1] for b in setup.eval_batches])

    def bare() -> None:
        """The passes the step needs: saliency forward(+backward) as the signal requires, evaluation."""
        if backward:
            net.zero_grad(set_to_none=True)
            F.cross_entropy(net(x), y, reduction="sum").backward()
        with torch.inference_mode():
            if forward and not backward:
                net(x)
            net(runner.eval_x)

    t_harness, t_bare = _paired_median_ms(harness, bare, repeat)
    split = {f"{k}_ms": round(1000 * statistics.median(v[1:]), 2) for k, v in parts.items()}
    return {
        "measure": "a_step_overhead",
        "model": model,
        "signal": signal,
        "harness_ms": round(t_harness, 2),
        "bare_ms": round(t_bare, 2),
        "ratio": round(t_harness / t_bare, 3),
        **split,
    }


def all_vs_one(model: str, cache: str, device: str) -> dict:
    """(b): every cell from one statistics pass vs one pass per cell."""
    from study.unit_scores import Workspace
    from taxonomy.bank import score
    from taxonomy.spec import all_cells
    from taxonomy.statistics import Needs

    setup = _setup(model, cache, device, "random")
    ws = Workspace(setup.model, setup.groups)
    cells = all_cells()

    def together() -> None:
        score(cells, ws.collector.collect(setup.eval_batches, Needs.of(cells)))

    def one_by_one() -> None:
        for c in cells:
            score([c], ws.collector.collect(setup.eval_batches, Needs.of([c])))

    t_all = _median_ms(together, 3)
    t_each = _median_ms(one_by_one, 1)
    return {
        "measure": "b_all_vs_one",
        "model": model,
        "signals": len(cells),
        "all_ms": round(t_all, 1),
        "one_by_one_ms": round(t_each, 1),
        "ratio": round(t_each / t_all, 1),
    }


def sweep_throughput(cache: str, device: str, signals: int) -> dict:
    """(c): trials per minute of a demo-shaped sweep through Ray Tune."""
    from study.sweep.plan import make_plan
    from study.sweep.runner import run_plan
    from study.sweep.spec import parse_spec

    work = Path(tempfile.mkdtemp(prefix="bench-demo-"))
    try:
        text = f"""
[sweep]
store = "{work / "store"}"
cache_dir = "{cache}"
models = ["tiny_cnn", "tiny_resnet"]
base_seeds = [0]
signals = [{{ distinct = true }}]
signals_per_unit = {max(1, signals // 2)}
device = "{device}"
[resources]
gpus_per_trial = {0.5 if device.startswith("cuda") else 0}
[[runs]]
protocol = "sensitivity"
channels_per_step = 0.1
stop_acc = 50
"""
        spec = parse_spec(text)
        plan = make_plan(spec)
        keep = {s.run_key for s in plan.todo[:: max(1, len(plan.todo) // (2 * signals))][: 2 * signals]}
        plan.todo = [t for t in plan.todo if t.run_key in keep]
        from study.sweep.plan import _units

        plan.units = _units(plan.todo, spec.signals_per_unit)
        result = run_plan(plan, printer=lambda _: None)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    n = result.ok + result.failed
    return {
        "measure": "c_sweep_throughput",
        "trials": n,
        "wall_s": round(result.wall_s, 1),
        "trials_per_min": round(60 * n / result.wall_s, 1),
    }


def demo_throughput(store: str) -> dict | None:
    from study.store import load

    trials = load(store, "trials", columns=["started_at", "finished_at", "status"])
    if trials.empty:
        return None
    span = (trials["finished_at"].max() - trials["started_at"].min()).total_seconds()
    return {
        "measure": "c_demo_store_throughput",
        "trials": len(trials),
        "wall_s": round(span, 1),
        "trials_per_min": round(60 * len(trials) / span, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--cache", default="results/models")
    parser.add_argument("--repeat", type=int, default=31)
    parser.add_argument("--sweep-signals", type=int, default=40, help="signals per network in (c)")
    parser.add_argument("--demo-store", default="results/demo/store")
    parser.add_argument("--out", default="results/benchmarks/demo.csv")
    parser.add_argument("--skip-sweep", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    torch.set_num_threads(1)
    from study.train import TrainConfig, load_or_train

    for model in ("tiny_cnn", "tiny_resnet"):
        load_or_train(TrainConfig(model, "digits", 0), args.cache, args.device)
    rows = []
    for model in ("tiny_cnn", "tiny_resnet"):
        for signal in ("best_gradient", "best_weight"):
            rows.append(step_overhead(model, signal, args.cache, args.device, args.repeat))
        rows.append(all_vs_one(model, args.cache, args.device))
    if not args.skip_sweep:
        rows.append(sweep_throughput(args.cache, args.device, args.sweep_signals))
    if Path(args.demo_store).is_dir() and (row := demo_throughput(args.demo_store)):
        rows.append(row)
    stamp = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "host": platform.node(),
        "device": args.device if not args.device.startswith("cuda") else torch.cuda.get_device_name(),
    }
    for row in rows:
        print(" | ".join(f"{k}={v}" for k, v in row.items()))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    append_rows(out, [{**stamp, **r} for r in rows])
    print(f"appended {len(rows)} rows to {out}")


if __name__ == "__main__":
    main()
