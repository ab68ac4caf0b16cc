"""What runs inside Ray workers: one work unit of trials, a rank job, a base model.

Plain functions of JSON-ready payloads, so they can be called without Ray in tests.
"""

from __future__ import annotations

import time
from dataclasses import asdict

from study.store import Store
from study.sweep.plan import Plan

__all__ = ["unit_payloads", "run_unit", "train_base", "record_failures", "fail_trials"]


def unit_payloads(plan: Plan, skip_bases: set = frozenset()) -> list[dict]:
    """JSON-ready work units: trial units, then rank-quality jobs."""
    out = [
        {"kind": "trials", "trials": [t.canonical() for t in unit]}
        for unit in plan.units
        if (unit[0].model, unit[0].dataset, unit[0].base_seed) not in skip_bases
    ]
    out += [
        {"kind": "rank", "job": asdict(j)}
        for j in plan.jobs_todo
        if (j.model, j.dataset, j.base_seed) not in skip_bases
    ]
    return out


def _threads(ctx: dict) -> None:
    import torch

    torch.set_num_threads(ctx["threads"])


def run_unit(unit: dict, ctx: dict) -> dict:
    """Run one payload; returns counts (``ok``, ``failed``, ``jobs``, ``compute_s``)."""
    _threads(ctx)
    store = Store(ctx["store"])
    start = time.perf_counter()
    if unit["kind"] == "rank":
        return {**_run_rank(unit["job"], ctx, store), "compute_s": time.perf_counter() - start}
    from study.trial import TrialSpec, run_trials

    specs = [TrialSpec.from_dict(d) for d in unit["trials"]]
    if ctx["retry_failed"]:
        failed = store.done(("failed",))
        specs = [s for s in specs if s.run_key in failed]
    else:
        specs = [s for s in specs if not store.has("trials", s.run_key)]
    counts = {"ok": 0, "failed": 0, "jobs": 0}

    def write(record) -> None:  # noqa: ANN001
        store.write_trial(record.trial, record.steps)
        counts["ok" if record.ok else "failed"] += 1

    run_trials(
        specs,
        cache_dir=ctx["cache_dir"],
        data_root=ctx["data_root"],
        device=ctx["device"],
        download=ctx["download"],
        on_record=write,
    )
    return {**counts, "compute_s": time.perf_counter() - start}


def _run_rank(job: dict, ctx: dict, store: Store) -> dict:
    from study.rankings import RankJob, run_rank_job

    rank = RankJob(**{**job, "signals": tuple(job["signals"])})
    if store.has("oracle", rank.run_key):
        return {"ok": 0, "failed": 0, "jobs": 0}
    scores, oracle = run_rank_job(
        rank,
        cache_dir=ctx["cache_dir"],
        data_root=ctx["data_root"],
        device=ctx["device"],
        download=ctx["download"],
    )
    store.write("scores", rank.run_key, scores)
    store.write("oracle", rank.run_key, oracle)  # last: marks the job done
    return {"ok": 0, "failed": 0, "jobs": 1}


def train_base(key: tuple[str, str, int], ctx: dict) -> str | None:
    """Train and cache one base model; returns an error text or None."""
    _threads(ctx)
    from study.train import TrainConfig, load_or_train

    try:
        load_or_train(
            TrainConfig(key[0], key[1], key[2], data_root=ctx["data_root"]),
            ctx["cache_dir"],
            ctx["device"],
            download=ctx["download"],
        )
    except Exception as err:  # reported to the driver, which fails the dependent trials
        return f"{type(err).__name__}: {err}"
    return None


def record_failures(unit: dict, ctx: dict, error: str) -> int:
    """Store a failed record for every trial of ``unit`` that has no record yet."""
    if unit["kind"] != "trials":
        return 0
    from study.trial import TrialSpec, failed_record

    store, n = Store(ctx["store"]), 0
    for data in unit["trials"]:
        spec = TrialSpec.from_dict(data)
        if not store.has("trials", spec.run_key):
            store.write_trial(failed_record(spec, error, device=ctx["device"]).trial, [])
            n += 1
    return n


def fail_trials(plan: Plan, failures: dict, ctx: dict) -> None:
    """Record every trial whose base model could not be trained as failed."""
    from study.trial import failed_record

    store = Store(ctx["store"])
    for spec in plan.todo:
        key = (spec.model, spec.dataset, spec.base_seed)
        if key in failures:
            error = f"base model failed to train: {failures[key]}"
            store.write_trial(failed_record(spec, error, device=ctx["device"]).trial, [])
