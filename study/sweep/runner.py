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
import socket
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import astuple, dataclass
from pathlib import Path

from study.sweep.plan import Plan
from study.sweep.progress import Progress as _Progress
from study.sweep.progress import slots

__all__ = ["SweepResult", "run_plan", "ray_session", "check_address"]

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


_HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes.fromhex("000000040000000000")
"""What an HTTP/2 client sends first (the preface and an empty SETTINGS frame); Ray's GCS
speaks gRPC, so it answers with a SETTINGS frame of its own."""


def _answers_http2(host: str, port: int, timeout: float) -> bool:
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        sock.sendall(_HTTP2_PREFACE)
        head = b""
        while len(head) < 9:
            try:
                chunk = sock.recv(9 - len(head))
            except TimeoutError:  # connected, but silent: not a gRPC server
                return False
            if not chunk:
                break
            head += chunk
    return len(head) == 9 and head[3] == 0x04  # frame type 4: SETTINGS


def check_address(address: str, timeout: float = 10.0) -> None:
    """Fail within about ``timeout`` seconds, with a message, unless a Ray head node answers
    at ``address`` (``ray.init`` itself waits for minutes on a silent or wrong address)."""
    from taxonomy.errors import PrunetaxError

    target = address.removeprefix("ray://")
    if target in ("auto", "local") or os.environ.get("RAY_USE_TLS", "0").lower() in ("1", "true"):
        return  # Ray answers these itself at once (or speaks TLS, which this probe does not)
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise PrunetaxError(f"`--address` must be `auto` or HOST:PORT of a Ray head node; got {address!r}.")
    hint = "start one with `ray start --head` and pass the address it prints, or leave out --address"
    try:
        ok = _answers_http2(host.strip("[]"), int(port), timeout)
    except OSError as err:
        raise PrunetaxError(f"no Ray cluster at {address}: {err.strerror or err}; {hint}.") from None
    if not ok:
        raise PrunetaxError(
            f"{address} accepts connections but does not answer like a Ray head node (its GCS port, "
            f"6379 by default); {hint}."
        )


@contextmanager
def ray_session(address: str | None = None, num_cpus: int | None = None, num_gpus: int | None = None):
    """Join ``address`` (or ``$RAY_ADDRESS``), reuse an initialised Ray, or start a local one.

    An address is probed first (:func:`check_address`), so a wrong one fails in seconds.
    """
    import ray

    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    os.environ.setdefault("RAY_CHDIR_TO_TRIAL_DIR", "0")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # the legacy reporter is silent at verbose=0
    if address:  # an address asked for explicitly is checked even when Ray is already up here
        check_address(address)
    if ray.is_initialized():
        yield ray
        return
    if not address and os.environ.get("RAY_ADDRESS"):
        address = os.environ["RAY_ADDRESS"]
        check_address(address)
    if address:
        try:
            ray.init(address=address, log_to_driver=False)
        except ConnectionError as err:  # e.g. `auto` with no cluster on this machine
            from taxonomy.errors import PrunetaxError

            raise PrunetaxError(f"could not join a Ray cluster at {address}: {err}") from None
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
        "env": spec.env.as_dict(),
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
    from study.sweep.progress import base_model_line
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
    printer(f"training {len(missing)} base model(s) into {spec.cache_dir} (trained once, then cached)")
    task = ray.remote(num_cpus=spec.resources.cpus_per_trial, num_gpus=spec.resources.gpus_per_trial)(
        train_base
    )
    ctx = _context(plan, False)
    refs = {task.remote(k, ctx): k for k in missing}
    failures, waiting = {}, list(refs)
    while waiting:  # report each as it finishes
        ready, waiting = ray.wait(waiting, num_returns=1)
        key, err = refs[ready[0]], ray.get(ready[0])
        if err:
            failures[key] = err
        path = checkpoint_path(TrainConfig(key[0], key[1], key[2], data_root=spec.data_root), spec.cache_dir)
        printer(base_model_line(key, path, len(missing) - len(waiting), len(missing), err))
    return failures


def _callback(progress: _Progress):  # noqa: ANN202
    from ray import tune

    class Report(tune.Callback):
        def on_trial_result(self, iteration, trials, trial, result, **info):  # noqa: ANN001, ANN201
            progress.add(result)

    return Report()


def _record_dead_units(results, plan: Plan, progress: _Progress, printer: Printer) -> None:  # noqa: ANN001
    """Units that raised or whose worker died: every trial of theirs not stored becomes a
    failed record; a failed rank-quality job is reported (it reruns with the next sweep)."""
    from study.sweep.work import record_failures, unit_payloads

    lost = []
    for result in results:
        if result.error is None:
            continue
        error = f"{type(result.error).__name__}: {str(result.error).strip().splitlines()[-1][:300]}"
        if result.config is None:  # died with its Ray node: Tune kept no config to say which unit
            lost.append(error)
            continue
        unit = result.config["unit"]
        if unit["kind"] == "rank":
            job = unit["job"]
            printer(f"rank-quality job {job['model']}/{job['dataset']}/s{job['base_seed']} failed: {error}")
            continue
        progress.add({"failed": record_failures(unit, _context(plan, False), f"work unit died: {error}")})
    units = [u for u in unit_payloads(plan) if u["kind"] == "trials"] if lost else []
    why = f"work unit lost with its Ray node: {lost[0]}" if lost else ""
    n = sum(record_failures(u, _context(plan, False), why) for u in units)  # the store knows which
    if n:
        progress.add({"failed": n})


def _tune(plan: Plan, payloads: list, progress: _Progress, ctx: dict, printer: Printer) -> None:
    """Run the work units as Ray Tune trials (one Tune trial per unit, actors reused)."""
    from ray import tune

    spec = plan.spec
    tune_dir = Path(spec.store).absolute() / "_tune"
    name = f"{spec.name}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    shutil.rmtree(tune_dir, ignore_errors=True)  # state of earlier runs is never restored
    trainable = tune.with_resources(
        _work_unit, {"cpu": spec.resources.cpus_per_trial, "gpu": spec.resources.gpus_per_trial}
    )
    tuner = tune.Tuner(
        trainable,
        param_space={"unit": tune.grid_search(payloads), "ctx": ctx},
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


def run_plan(
    plan: Plan,
    *,
    retry_failed: bool = False,
    address: str | None = None,
    num_cpus: int | None = None,
    printer: Printer = print,
) -> SweepResult:
    """Execute ``plan`` (see module docstring); returns counts of what happened."""
    from study.sweep.work import fail_trials, unit_payloads

    start = time.perf_counter()
    spec = plan.spec
    with ray_session(address, num_cpus) as ray:
        failures = _train_bases(plan, ray, printer)
        if failures:
            fail_trials(plan, failures, _context(plan, retry_failed))
        payloads = unit_payloads(plan, skip_bases=set(failures))
        parallel = slots(ray.cluster_resources(), *astuple(spec.resources))
        progress = _Progress(len(plan.todo), printer, parallel=parallel, jobs=len(plan.jobs_todo))
        if failures:
            progress.add(
                {"failed": sum(1 for t in plan.todo if (t.model, t.dataset, t.base_seed) in failures)}
            )
        if payloads:
            progress.announce(len(payloads))
            _tune(plan, payloads, progress, _context(plan, retry_failed), printer)
    return SweepResult(
        progress.ok,
        progress.failed,
        progress.jobs,
        time.perf_counter() - start,
        progress.compute,
        len(payloads),
    )
