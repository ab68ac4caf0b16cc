"""What runs inside Ray workers: one work unit of trials, a rank job, a base model.

Plain functions of JSON-ready payloads, so they can be called without Ray in tests.
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime

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
        {"kind": "rank", "job": j.as_dict()}
        for j in plan.jobs_todo
        if (j.model, j.dataset, j.base_seed) not in skip_bases
    ]
    return out


def _threads(ctx: dict) -> None:
    import torch

    torch.set_num_threads(ctx["threads"])


def run_unit(unit: dict, ctx: dict) -> dict:
    """Run one payload on the device Ray assigned to this worker (:mod:`study.sweep.devices`),
    batched as ``$PRUNETAX_TRAJECTORIES_PER_PASS`` says (:mod:`study.batched`); returns counts
    (``ok``, ``failed``, ``jobs``, ``compute_s``)."""
    from study.batched import Batching, using
    from study.sweep.devices import pin

    ctx, placed = pin(ctx)
    with using(Batching.from_env(placed.share)):
        return _run_payload(unit, ctx)


def _run_payload(unit: dict, ctx: dict) -> dict:
    _threads(ctx)
    store = Store(ctx["store"])
    start = time.perf_counter()
    if unit["kind"] == "rank":
        return {**_run_rank(unit["job"], ctx, store), "compute_s": time.perf_counter() - start}
    from study.execute import execute
    from study.trial import TrialSpec

    specs = [TrialSpec.from_dict(d) for d in unit["trials"]]
    counts = {"ok": 0, "failed": 0, "jobs": 0}
    guarded = _GuardedStore(store)

    def count(record) -> None:  # noqa: ANN001
        counts["ok" if record.ok and record.spec.run_key not in guarded.errors else "failed"] += 1

    skip = ("ok",) if ctx["retry_failed"] else ("ok", "failed")
    execute(specs, guarded, _env(ctx), skip=skip, on_record=count)
    errors = {"error": "; ".join(f"{k}: {e}" for k, e in guarded.errors.items())} if guarded.errors else {}
    return {**counts, **errors, "compute_s": time.perf_counter() - start}


def _node() -> str | None:
    """The Ray node this process runs on (None outside Ray)."""
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return None
    return ray.get_runtime_context().get_node_id()


class _GuardedStore:
    """The store as a work unit writes to it: every trial row names the Ray node, and a write
    that fails (a full disk, an I/O error) becomes a ``failed`` row naming the cause, or,
    when even that cannot be written, an error text in the unit's result for the driver."""

    def __init__(self, store: Store) -> None:
        self.store, self.node, self.errors = store, _node(), {}

    def __getattr__(self, name: str) -> object:
        return getattr(self.store, name)

    def write_trial(self, trial: dict, steps: list[dict]) -> None:
        from study.store.consistency import IDENTITY

        key, trial = str(trial["run_key"]), {**trial, "node": self.node}
        try:
            self.store.write_trial(trial, steps)
            return
        except Exception as err:  # noqa: BLE001 - any write failure fails the trial, with its cause
            text = f"could not store the trial: {type(err).__name__}: {err}"
        self.errors[key] = text
        row = {k: trial.get(k) for k in IDENTITY} | {"status": "failed", "error": text}
        try:
            self.store.write("trials", key, [row | {"finished_at": datetime.now(UTC)}])
        except Exception as err:  # noqa: BLE001 - reported to the driver instead
            self.errors[key] = f"{text}; its failed record could not be stored either: {err}"


def _env(ctx: dict):  # noqa: ANN202 - a study.environment.Environment
    from study.environment import Environment

    return Environment.from_dict(ctx["env"])


def _run_rank(job: dict, ctx: dict, store: Store) -> dict:
    from study.rankings import RankJob, execute_rank_job

    ran = execute_rank_job(RankJob.from_dict(job), store, _env(ctx))
    return {"ok": 0, "failed": 0, "jobs": int(ran)}


def train_base(key: tuple[str, str, int], ctx: dict) -> str | None:
    """Train and cache one base model; returns an error text or None."""
    from study.sweep.devices import pin

    _threads(ctx)
    from study.train import TrainConfig, load_or_train

    try:
        env = _env(pin(ctx)[0])  # the GPU Ray assigned to this task
        load_or_train(
            TrainConfig(key[0], key[1], key[2], data_root=env.data_root),
            env.cache_dir,
            env.device,
            download=env.download,
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
    specs = [TrialSpec.from_dict(data) for data in unit["trials"]]
    stored = store.status([s.run_key for s in specs])
    for spec in specs:
        if stored.get(spec.run_key) not in ("ok", "failed"):  # never stored, or invalidated
            store.write_trial(failed_record(spec, error, device=ctx["env"]["device"]).trial, [])
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
            store.write_trial(failed_record(spec, error, device=ctx["env"]["device"]).trial, [])
