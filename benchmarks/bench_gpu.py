"""Trajectory-steps per second of the batched engine, and the full ResNet-20 study it implies.

On whatever device is present: ``resnet20`` at 32x32 (random weights, BN statistics of
random CIFAR-shaped data so that channels are alive), 2 x 128 saliency images and a
10,000-image test set. For each M, a work unit of M diverged trajectories (each its own
branch: a few random units already pruned; signals spread over the network's distinct
signals, so every statistics pass of the study occurs in its proportion) advances a few
greedy steps: scores on the saliency images, the argmin unit pruned, the child evaluated
on the test and saliency images, as the greedy loop asks for them. Printed per M: steps
per second of trajectories, the split of a trajectory-step (statistics / scoring /
evaluation), the trajectories per statistics pass the engine used, and the peak memory.
Every M is timed on the same ``--mix`` signals (16; below that, M-trajectory work units run
one after another), so that the rows differ in stacking only, not in the signals drawn.
``lockstep`` is the unbatched engine (one trajectory per pass) for reference; ``auto``
(128 trajectories) lets the engine size its passes from free memory. Then one oracle step
(one gate row per unit) and the projected wall time of the full study: every distinct
signal of resnet20 (pooled), 3 repeats, one unit per step until one unit per group is
left, plus the oracle; ``eval_share`` is the part of a trajectory-step spent evaluating the
test set (every step, as the default ``test_interval = 1``). Larger M are skipped once the
time spent says they would end past ``--budget`` (6 minutes), so a run stays under 8.

Every trajectory here has diverged (the real study shares one branch at first), so the
projection is an upper bound for the taxonomy signals. On a CPU the figures are CPU
figures (there batching does not pay: the work is compute-bound); GPU claims need a GPU run.

    .venv/bin/python benchmarks/bench_gpu.py                       # a GPU: M = 1..256, < 8 minutes
    .venv/bin/python benchmarks/bench_gpu.py --quick               # CPU-sized: M = 1, 2, 4, small data
    .venv/bin/python benchmarks/bench_gpu.py --sizes 1,8 --test 2000 --out results/benchmarks/gpu.csv
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path

import torch
from results_table import append_rows
from torch import nn

TIMINGS = ("stats", "score", "eval")
TRAJECTORIES = {"lockstep": 1, "auto": 128}
"""Trajectories of the work units that are not named by their M."""


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _network(device: torch.device, x: torch.Tensor) -> nn.Module:
    """resnet20 with random weights and BN statistics measured on ``x`` (channels alive)."""
    from study import models

    torch.manual_seed(0)
    net = models.build("resnet20", 3, 10, 32)
    for bn in (m for m in net.modules() if isinstance(m, nn.BatchNorm2d)):
        bn.momentum = None
    with torch.no_grad():
        net.train()(x[:512])
    return net.eval().to(device, memory_format=torch.channels_last)


def make_setup(device: torch.device, saliency: int, test: int):  # noqa: ANN201 - a Setup
    """The benchmark's base network and data: random CIFAR-shaped tensors on ``device``."""
    from study.groups import build_groups
    from study.trajectory import Setup

    g = torch.Generator().manual_seed(1)
    n = 2 * saliency + test
    x = torch.randn(n, 3, 32, 32, generator=g).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (n,), generator=g)
    net = _network(device, x)
    x, y = x.to(device), y.to(device)
    batches = [(x[:saliency], y[:saliency]), (x[saliency : 2 * saliency], y[saliency : 2 * saliency])]
    groups = build_groups(net, (3, 32, 32))
    test_set = (x[2 * saliency :], y[2 * saliency :])
    return Setup(net, groups, batches, test_set, test_set, 10.0, seed=0, model_name="resnet20")


def distinct_signals() -> list:
    from study.groups import network_context
    from study.sweep.signals import select_signals

    return list(select_signals(["distinct"], network_context("resnet20")))


def _diverged(run, n: int) -> list:  # noqa: ANN001
    """``n`` branches of one trajectory each, every one with 4 random units pruned."""
    g = torch.Generator().manual_seed(7)
    active = torch.nonzero(run.root.active).flatten()
    branches = []
    for t in run.trajectories[:n]:
        units = active[torch.randperm(len(active), generator=g)[:4]].tolist()
        branches.append(run.fork(run.root, units, [t]))
    return branches


def _step(run, branches: list) -> tuple[list, dict]:  # noqa: ANN001
    """One greedy step of every branch, in the order the greedy loop asks (its timings summed)."""
    from study.trajectory import exhausted

    children, timing = [], {"errors": 0.0}
    for br in branches:
        run.load(br)
        live = [t for t in br.members if not t.done]
        scores, errors = run.scores(live, timing)
        timing["errors"] += len(errors)  # signals that could not be scored (shown: a GPU run must have 0)
        for i, t in enumerate(live):
            children.append(run.fork(br, run.choose(scores[i], 1), [t]))
    for child in children:
        masked = run.load(child)
        run.sparsity(), exhausted(masked)
        run.evaluate(timing)
    return children, timing


def _unit(setup, size: int | str, picked: list, steps: int, device: torch.device) -> dict:  # noqa: ANN001
    """Median wall time of a greedy step of one work unit of ``picked`` diverged trajectories,
    with its timings per trajectory-step, scoring errors and trajectories per pass."""
    from study.batched import Batching, using
    from study.batched.engine import BatchedRun
    from study.protocols import make_protocol
    from study.trajectory import Run

    n = len(picked)
    batching = Batching("batched", None) if size == "auto" else Batching("batched", n)
    with using(batching):
        if size == "lockstep":
            run = Run(setup, picked, "pooled", "output")
        else:
            protocol = make_protocol("sensitivity")
            run = BatchedRun(setup, picked, "pooled", "output", protocol=protocol, batching=batching)
        run.start()
        branches, _ = _step(run, _diverged(run, n))  # warm-up (and, for auto, the memory probes)
        times, parts, errors = [], dict.fromkeys(TIMINGS, 0.0), 0
        for _ in range(steps):
            _sync(device)
            t0 = time.perf_counter()
            branches, timing = _step(run, branches)
            _sync(device)
            times.append(time.perf_counter() - t0)
            errors += int(timing["errors"])
            for k in TIMINGS:
                parts[k] += timing.get(k, 0.0) / n / steps
        run.finish()
    used = set(getattr(run, "sizes", {}).values()) or {n if size != "lockstep" else 1}
    return {"wall": statistics.median(times), "parts": parts, "errors": errors, "used": used}


def measure(setup, size: int | str, signals: list, steps: int, device: torch.device, mix: int) -> dict:  # noqa: ANN001
    """Trajectory-steps per second of work units of ``size`` diverged trajectories. Below ``mix``
    trajectories, ``mix / size`` units run one after the other, so that every size times the
    same ``mix`` signals (spread over the distinct signals: each statistics pass in its share)."""
    n = TRAJECTORIES.get(str(size), size)
    total = max(n, mix)
    picked = [signals[(k * len(signals)) // total] for k in range(total)]
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    units = [_unit(setup, size, picked[i : i + n], steps, device) for i in range(0, total, n)]
    wall = sum(u["wall"] for u in units)
    return {
        "measure": "trajectory_steps",
        "M": size,
        "trajectories": n,
        "units": len(units),
        "per_pass": "/".join(map(str, sorted(set().union(*(u["used"] for u in units))))),
        "steps_per_s": round(total / wall, 2),
        "ms_per_step": round(1000 * wall / total, 2),
        **{f"{k}_ms": round(1000 * sum(u["parts"][k] for u in units) / len(units), 2) for k in TIMINGS},
        "peak_mib": round(_peak(device) / 2**20),
        "errors": sum(u["errors"] for u in units),
    }


def _peak(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # the process's peak so far


def oracle_step(setup, device: torch.device, units: int | None) -> dict:  # noqa: ANN001
    """One batched oracle scoring (one gate row per active unit) of the unpruned network; with
    ``units``, timed on that many candidates and scaled to all of them (a CPU-sized run)."""
    from study.batched.oracle import batched_oracle
    from study.masks import MaskedModel

    masked = MaskedModel(setup.model, setup.groups)
    n = setup.groups.n_units
    some = None if units is None else list(range(min(units, n)))
    batched_oracle(masked, setup.eval_batches, some)  # warm-up
    _sync(device)
    t0 = time.perf_counter()
    batched_oracle(masked, setup.eval_batches, some)
    _sync(device)
    seconds = (time.perf_counter() - t0) * (n + 1) / (len(some) + 1 if some else n + 1)
    return {
        "measure": "oracle_step",
        "units": n,
        "timed_units": len(some) if some else n,
        "s": round(seconds, 3),
    }


def projection(
    rows: list[dict], oracle: dict, setup, n_signals: int, repeats: int, steps: int | None
) -> dict:  # noqa: ANN001
    """The full study's wall time at the best measured rate (and the oracle's trajectories)."""
    groups = setup.groups
    per_trajectory = steps or groups.n_units - len(groups.group_sizes)
    best = max((r for r in rows if r["M"] != "lockstep"), key=lambda r: r["steps_per_s"])
    one = next((r for r in rows if r["M"] == 1), best)
    total = n_signals * repeats * per_trajectory
    taxonomy_s = total / best["steps_per_s"]
    oracle_s = repeats * per_trajectory * oracle["s"]
    return {
        "measure": "projection",
        "eval_share": round(best["eval_ms"] / best["ms_per_step"], 2),
        "signals": n_signals,
        "repeats": repeats,
        "steps_per_trajectory": per_trajectory,
        "trajectory_steps": total,
        "best_M": best["M"],
        "speedup_vs_M1": round(best["steps_per_s"] / one["steps_per_s"], 2),
        "taxonomy_h": round(taxonomy_s / 3600, 2),
        "oracle_h": round(oracle_s / 3600, 2),
        "total_h": round((taxonomy_s + oracle_s) / 3600, 2),
    }


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        tf32 = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
        return f"{name} (cudnn tf32 {tf32[0]}, matmul tf32 {tf32[1]})"
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    add("--sizes", default="1,4,16,64,256", help="trajectories per work unit, comma-separated")
    add("--saliency", type=int, default=128, help="images per saliency batch (two batches)")
    add("--test", type=int, default=10_000, help="test images")
    add("--steps", type=int, default=2, help="timed greedy steps per M below 64 (one above), after a warm-up")
    add("--budget", type=float, default=360, help="seconds for the M sweep: larger M are skipped past it")
    add("--repeats", type=int, default=3, help="repeats of the projected study")
    add("--study-steps", type=int, default=None, help="steps per trajectory (default: to the end)")
    add(
        "--quick",
        action="store_true",
        help="CPU-sized: M = 1,2,4, 2 x 16 saliency, 256 test, mix 4, oracle on 16",
    )
    add("--mix", type=int, default=16, help="signals every size is timed on (smaller sizes: several units)")
    add("--no-auto", action="store_true", help="skip the run sized from free memory (128 trajectories)")
    add("--oracle-units", type=int, default=None, help="time the oracle on this many units (then scale)")
    add("--out", default="results/benchmarks/gpu.csv")
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.saliency, args.test, args.no_auto, args.oracle_units = "1,2,4", 16, 256, True, 16
        args.mix = 4
        args.budget = max(args.budget, 1200)
    return args


def sweep(setup, sizes: list, signals: list, args: argparse.Namespace, device: torch.device) -> list[dict]:  # noqa: ANN001
    """``measure`` each size in turn, skipping those that the time already spent says would end
    past ``args.budget`` (a step's work grows with the number of trajectories)."""
    rows, start, last = [], time.perf_counter(), None
    for size in sizes:
        n = TRAJECTORIES.get(str(size), size)
        spent = time.perf_counter() - start
        if last is not None and spent + last[0] * n / last[1] > args.budget:
            rows.append(
                {"measure": "trajectory_steps", "M": size, "error": f"skipped: past --budget {args.budget}s"}
            )
        else:
            t0 = time.perf_counter()
            try:
                rows.append(measure(setup, size, signals, args.steps if n < 64 else 1, device, args.mix))
                last = (time.perf_counter() - t0, n)
            except torch.OutOfMemoryError as err:
                rows.append(
                    {"measure": "trajectory_steps", "M": size, "error": f"out of memory: {err}"[:120]}
                )
        print(" | ".join(f"{k}={v}" for k, v in rows[-1].items()), flush=True)
    return rows


def main() -> None:
    args = _arguments()
    device = torch.device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(os.cpu_count() or 1)
    start = time.perf_counter()
    setup = make_setup(device, args.saliency, args.test)
    signals = distinct_signals()
    print(f"device: {_device_name(device)}; torch {torch.__version__}")
    print(f"resnet20 32x32: {setup.groups.n_units} units; saliency 2 x {args.saliency}; test {args.test}")
    sizes: list = ["lockstep", *(int(s) for s in args.sizes.split(","))] + ([] if args.no_auto else ["auto"])
    rows = sweep(setup, sizes, signals, args, device)
    timed = [r for r in rows if "error" not in r]
    rows.append(oracle_step(setup, device, args.oracle_units))
    rows.append(projection(timed, rows[-1], setup, len(signals), args.repeats, args.study_steps))
    for row in rows[-2:]:
        print(" | ".join(f"{k}={v}" for k, v in row.items()))
    print(f"benchmark wall time {time.perf_counter() - start:.0f} s")
    stamp = {"when": datetime.now(UTC).isoformat(timespec="seconds"), "host": platform.node()}
    stamp["device"] = _device_name(device)
    out = Path(args.out)
    append_rows(out, [{**stamp, "saliency": args.saliency, "test": args.test, **r} for r in rows])
    print(f"appended {len(rows)} rows to {out}")


if __name__ == "__main__":
    main()
