"""Work units on GPUs through Ray, proven on a machine without a GPU.

Ray is started in a separate process with two fake GPUs and the test settings of
ARCHITECTURE.md (two CPUs, no dashboard, token auth off): one process holds one Ray, and the
session's ``ray_cluster`` fixture has no GPUs (``num_gpus=0``) and is left untouched. Five
work units asking for half a GPU (and half a CPU) each run as Ray tasks (and, in the slow
variant, through Tune as a sweep runs them: ``tune.with_resources``, ``reuse_actors``) and
place themselves as ``run_unit`` does: two units share each "GPU" at a time, and each unit's
device is the GPU Ray gave it. The device mapping itself (no Ray) covers Ray's other ways of
exposing GPUs, and ``run_unit`` is shown to run its payload on the placed device.
No CUDA call is made anywhere.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from study.sweep.devices import Placement, placement
from taxonomy.errors import PrunetaxError

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = r"""
import json, os, shutil, sys, tempfile, time
os.environ.update(RAY_AUTH_MODE="disabled", TUNE_DISABLE_AUTO_CALLBACK_LOGGERS="1",
                  RAY_CHDIR_TO_TRIAL_DIR="0", RAY_AIR_NEW_OUTPUT="0", RAY_USAGE_STATS_ENABLED="0",
                  PRUNETAX_TRAJECTORIES_PER_PASS="8")
import ray

def unit(config):  # what run_unit does first: pin the device, take the batching choice
    from study.batched import Batching
    from study.sweep.devices import pin

    start = time.time()
    ctx, placed = pin({"env": {"device": "cuda"}})
    b = Batching.from_env(placed.share)
    open(os.path.join(config["dir"], str(config["i"])), "w").close()
    while len(os.listdir(config["dir"])) < 4 and time.time() < start + 60:  # wait for the others
        time.sleep(0.05)
    time.sleep(0.5)
    return {"device": ctx["env"]["device"], "share": b.share, "size": b.size, "engine": b.engine,
            "gpu_ids": list(placed.gpu_ids), "ray_ids": [str(i) for i in ray.get_gpu_ids()],
            "visible": os.environ.get("CUDA_VISIBLE_DEVICES"), "start": start, "end": time.time(),
            "torch": "torch" in sys.modules}

tmp = tempfile.mkdtemp(prefix="prunetax-gpu-")  # short: Ray's socket paths must fit
ray.init(num_cpus=2, num_gpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False,
         object_store_memory=80 * 1024**2, _temp_dir=tmp + "/ray")
started = tempfile.mkdtemp(dir=tmp)  # each unit leaves a file here when it starts
configs = [{"i": i, "dir": started} for i in range(5)]
if sys.argv[1] == "tune":  # as the sweep runs work units
    from ray import tune

    tuner = tune.Tuner(
        tune.with_resources(lambda config: tune.report(unit(config)), {"cpu": 0.5, "gpu": 0.5}),
        param_space={"i": tune.grid_search(list(range(5))), "dir": started},
        tune_config=tune.TuneConfig(reuse_actors=True, trial_dirname_creator=lambda t: t.trial_id),
        run_config=tune.RunConfig(storage_path=tmp + "/tune", verbose=0),
    )
    rows = [r.metrics for r in tuner.fit()]
else:  # plain Ray tasks with the same resource request (Ray's scheduler packs both alike)
    rows = ray.get([ray.remote(num_cpus=0.5, num_gpus=0.5)(unit).remote(c) for c in configs])
ray.shutdown()
shutil.rmtree(tmp, ignore_errors=True)
keys = ("device", "share", "size", "engine", "gpu_ids", "ray_ids", "visible", "start", "end", "torch")
print("RESULT " + json.dumps([{k: r.get(k) for k in keys} for r in rows]))
"""


@pytest.mark.ray
@pytest.mark.parametrize("how", ["tasks", pytest.param("tune", marks=pytest.mark.slow)])
def test_half_gpu_units_pack_two_per_gpu_and_each_uses_its_own(tmp_path, how):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("CUDA_VISIBLE_DEVICES", None)
    proc = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, how],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its Ray processes form one group, stopped on a timeout
    )
    try:
        stdout, stderr = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
    out = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
    lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
    assert out.returncode == 0 and lines, out.stderr[-3000:]
    units = json.loads(lines[0][len("RESULT ") :])
    assert len(units) == 5
    for u in units:
        assert len(u["gpu_ids"]) == 1 and u["gpu_ids"] == u["ray_ids"] and u["gpu_ids"][0] in ("0", "1"), u
        # Ray narrowed CUDA_VISIBLE_DEVICES to the GPU it gave, which the worker then sees as cuda:0
        assert u["visible"] == u["gpu_ids"][0] and u["device"] == "cuda:0", u
        assert u["share"] == 0.5 and (u["engine"], u["size"]) == ("batched", 8), u
        assert u["torch"] is False  # placing a unit needs no torch, let alone CUDA
    # at every unit's midpoint, count the units running on each GPU: never more than two, and at
    # some point two on each (two GPUs hold four half-GPU units at once; each unit
    # waits until four have started, so the fifth runs once a slot is free)
    peaks = []
    for u in units:
        t = (u["start"] + u["end"]) / 2
        running = [v["gpu_ids"][0] for v in units if v["start"] <= t <= v["end"]]
        peaks.append((running.count("0"), running.count("1")))
    assert max(max(p) for p in peaks) == 2 and (2, 2) in peaks, peaks


def test_run_unit_pins_its_device_and_batching(monkeypatch):
    """The worker entry point runs its payload on the placed device, batched as the environment says."""
    import study.sweep.work as work
    from study.batched import current
    from study.batched.select import _CURRENT

    seen = {}

    def payload(unit: dict, ctx: dict) -> dict:
        seen.update(ctx=ctx, batching=current())
        return {}

    monkeypatch.setattr(work, "_run_payload", payload)
    monkeypatch.setattr("study.sweep.devices._assignment", lambda: (["1"], 0.25))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    monkeypatch.setenv("PRUNETAX_TRAJECTORIES_PER_PASS", "on")
    work.run_unit({"kind": "trials", "trials": []}, {"env": {"device": "cuda"}, "threads": 1})
    assert seen["ctx"]["env"]["device"] == "cuda:1"
    assert (seen["batching"].engine, seen["batching"].size, seen["batching"].share) == ("batched", None, 0.25)
    assert _CURRENT.get() is None  # the unit's choice (with its GPU share) holds for the unit only


@pytest.mark.parametrize(
    ("device", "ids", "gpus", "visible", "expected"),
    [
        ("cuda", ["1"], 0.5, "1", Placement("cuda:0", ("1",), 0.5)),  # Ray's default: only its GPU visible
        ("cuda", ["1"], 0.5, None, Placement("cuda:1", ("1",), 0.5)),  # NOSET_CUDA_VISIBLE_DEVICES: by id
        ("cuda:0", [3], 1, "2,3", Placement("cuda:1", ("3",), 1.0)),  # a list set before Ray: by position
        ("cuda", ["GPU-a1b2"], 0.25, "GPU-c3,GPU-a1b2", Placement("cuda:1", ("GPU-a1b2",), 0.25)),
        ("cuda:2", None, 0, None, Placement("cuda:2")),  # outside Ray: as given
        ("cpu", ["0"], 0.5, "0", Placement("cpu", ("0",), 0.5)),  # a CPU sweep that still asked for GPUs
        ("cuda", ["0", "1"], 2, "0,1", Placement("cuda:0", ("0", "1"), 1.0)),
    ],
)
def test_device_from_the_gpu_ray_assigned(device, ids, gpus, visible, expected):
    assert placement(device, ids, gpus, visible) == expected


def test_a_cuda_unit_without_a_gpu_fails_with_the_fix():
    with pytest.raises(PrunetaxError, match="gpus_per_trial > 0"):
        placement("cuda", [], 0, None)
    with pytest.raises(PrunetaxError, match="does not list"):
        placement("cuda", ["5"], 1, "0,1")


def test_outside_ray_the_device_is_left_as_given():
    from study.sweep.devices import pin

    ctx, placed = pin({"env": {"device": "cpu", "cache_dir": "x"}, "threads": 1})
    assert ctx["env"] == {"device": "cpu", "cache_dir": "x"} and placed == Placement("cpu")
