"""Run a sweep plan on Ray Tune: base models first (Ray tasks), then work units as Tune
trials with ``reuse_actors=True``.

Ray is only the scheduler; the store is the truth. Each work unit skips trials already
stored, writes every trial as soon as it ends (atomically), and reports only counts to
Tune. A unit that dies (an out-of-memory kill, a crashed worker) has its unstored
trials recorded as ``failed`` by the driver. Tune's own experiment state is disposable:
it lives under ``<store>/_tune`` and is deleted when the sweep ends, and a restarted
sweep simply plans again from the store.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from study.sweep.plan import Plan

__all__ = ["SweepResult", "run_plan", "ray_session"]

Printer = Callable[[str], None]


@dataclass
class SweepResult:
    ok: int = 0
    failed: int = 0
    jobs: int = 0
    wall_s: float = 0.0
    compute_s: float = 0.0
    units: int = 0


def _ray_tmp() -> str:
    path = f"/tmp/prunetax-ray-{os.getuid()}"  # short: AF_UNIX socket paths must stay < 108 bytes
    os.makedirs(path, exist_ok=True)
    for session in Path(path).glob("session_2*"):
        pid = session.name.rsplit("_", 1)[-1]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            shutil.rmtree(session, ignore_errors=True)  # sessions of dead drivers
    return path


@contextmanager
def ray_session(address: str | None = None, num_cpus: int | None = None, num_gpus: int | None = None):
    """Join ``address`` (or ``$RAY_ADDRESS``), reuse an initialised Ray, or start a local one."""
    import ray

    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    os.environ.setdefault("RAY_CHDIR_TO_TRIAL_DIR", "0")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # the legacy reporter is silent at verbose=0
    if ray.is_initialized():
        yield ray
        return
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a private local cluster needs no token
        ray.init(
            num_cpus=num_cpus or os.cpu_count(),
            num_gpus=num_gpus,
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
            _temp_dir=_ray_tmp(),
        )
    try:
        yield ray
    finally:
        ray.shutdown()


def _context(plan: Plan, retry_failed: bool) -> dict:
    spec = plan.spec
    return {
        "store": str(Path(spec.store).absolute()),
        "cache_dir": str(Path(spec.cache_dir).absolute()),
        "data_root": spec.data_root,
        "device": spec.device,
        "download": spec.download,
        "threads": max(1, int(spec.resources.cpus_per_trial)),
        "retry_failed": retry_failed,
    }


def _work_unit(config: dict) -> None:
    """The Tune trainable: run one unit of trials (or one rank-quality job)."""
    from ray import tune

    from study.sweep.work import run_unit

    tune.report(run_unit(config["unit"], config["ctx"]))


def _train_bases(plan: Plan, ray, printer: Printer) -> dict[tuple[str, str, int], str]:  # noqa: ANN001
    """Train missing base models as Ray tasks; returns failures (key -> error)."""
    from study.sweep.work import train_base
    from study.train import TrainConfig, checkpoint_path

    spec = plan.spec
    missing = [
        k
        for k in plan.base_models
        if not checkpoint_path(
            TrainConfig(k[0], k[1], k[2], data_root=spec.data_root), spec.cache_dir
        ).exists()
    ]
    if not missing:
        return {}
    printer(f"training {len(missing)} base model(s): {', '.join(f'{m}/{d}/s{s}' for m, d, s in missing)}")
    task = ray.remote(num_cpus=spec.resources.cpus_per_trial, num_gpus=spec.resources.gpus_per_trial)(
        train_base
    )
    ctx = _context(plan, False)
    refs = {k: task.remote(k, ctx) for k in missing}
    failures = {}
    for key, ref in refs.items():
        err = ray.get(ref)
        if err:
            failures[key] = err
            printer(f"  base model {key[0]}/{key[1]}/s{key[2]} failed: {err}")
    return failures


class _Progress:
    """Prints done / failed / remaining trials and an ETA as units finish."""

    def __init__(self, total: int, printer: Printer) -> None:
        self.total, self.printer = total, printer
        self.ok = self.failed = self.jobs = 0
        self.compute = 0.0
        self.start = time.perf_counter()

    def add(self, result: dict) -> None:
        self.ok += int(result.get("ok", 0))
        self.failed += int(result.get("failed", 0))
        self.jobs += int(result.get("jobs", 0))
        self.compute += float(result.get("compute_s", 0.0))
        done = self.ok + self.failed
        elapsed = time.perf_counter() - self.start
        left = max(0, self.total - done)
        eta = f"{elapsed / done * left:.0f}s" if done else "?"
        self.printer(
            f"[{elapsed:6.0f}s] trials done {self.ok}, failed {self.failed}, remaining {left}"
            f" (ETA {eta}); rank jobs done {self.jobs}"
        )


def _callback(progress: _Progress):  # noqa: ANN202
    from ray import tune

    class Report(tune.Callback):
        def on_trial_result(self, iteration, trials, trial, result, **info):  # noqa: ANN001, ANN201
            progress.add(result)

    return Report()


def _record_dead_units(results, plan: Plan, progress: _Progress, printer: Printer) -> None:  # noqa: ANN001
    """Units that raised or whose worker died: every trial of theirs not stored becomes a
    failed record; a failed rank-quality job is reported (it reruns with the next sweep)."""
    from study.sweep.work import record_failures

    for result in results:
        if result.error is None:
            continue
        unit = result.config["unit"]
        error = f"{type(result.error).__name__}: {str(result.error).strip().splitlines()[-1][:300]}"
        if unit["kind"] == "rank":
            job = unit["job"]
            printer(f"rank-quality job {job['model']}/{job['dataset']}/s{job['base_seed']} failed: {error}")
            continue
        progress.add({"failed": record_failures(unit, _context(plan, False), f"work unit died: {error}")})


def run_plan(
    plan: Plan,
    *,
    retry_failed: bool = False,
    address: str | None = None,
    num_cpus: int | None = None,
    printer: Printer = print,
) -> SweepResult:
    """Execute ``plan`` (see module docstring); returns counts of what happened."""
    from ray import tune

    from study.sweep.work import fail_trials, unit_payloads

    start = time.perf_counter()
    spec = plan.spec
    with ray_session(address, num_cpus) as ray:
        failures = _train_bases(plan, ray, printer)
        if failures:
            fail_trials(plan, failures, _context(plan, retry_failed))
        payloads = unit_payloads(plan, skip_bases=set(failures))
        progress = _Progress(len(plan.todo), printer)
        if failures:
            progress.add(
                {"failed": sum(1 for t in plan.todo if (t.model, t.dataset, t.base_seed) in failures)}
            )
        if payloads:
            tune_dir = Path(spec.store).absolute() / "_tune"
            name = f"{spec.name}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
            shutil.rmtree(tune_dir, ignore_errors=True)  # state of earlier runs is never restored
            trainable = tune.with_resources(
                _work_unit, {"cpu": spec.resources.cpus_per_trial, "gpu": spec.resources.gpus_per_trial}
            )
            tuner = tune.Tuner(
                trainable,
                param_space={"unit": tune.grid_search(payloads), "ctx": _context(plan, retry_failed)},
                tune_config=tune.TuneConfig(
                    reuse_actors=True,
                    max_concurrent_trials=spec.resources.max_concurrent,
                    trial_dirname_creator=lambda t: t.trial_id,
                    trial_name_creator=lambda t: t.trial_id,
                ),
                run_config=tune.RunConfig(
                    name=name,
                    storage_path=str(tune_dir),
                    verbose=0,
                    failure_config=tune.FailureConfig(max_failures=0),
                    callbacks=[_callback(progress)],
                ),
            )
            # the store is the record: Tune's per-trial logs are off, so its result grid has no metrics
            logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
            results = tuner.fit()
            _record_dead_units(results, plan, progress, printer)
            shutil.rmtree(tune_dir, ignore_errors=True)
    return SweepResult(
        progress.ok,
        progress.failed,
        progress.jobs,
        time.perf_counter() - start,
        progress.compute,
        len(payloads),
    )
