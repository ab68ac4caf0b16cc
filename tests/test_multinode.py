"""Sweeps on a Ray cluster of two nodes on this machine, and a fast, clear failure for a
cluster address where nothing answers.

The slow test starts a head node and a second node (``ray start``, each with one CPU and
its own custom resource, both on 127.0.0.1, store on the local filesystem), runs a sweep
through ``--address``, checks that the trials ran on both nodes (the ``node`` column),
then kills the second node in the middle of a second sweep and checks that a rerun ends
with a store equal to the uninterrupted one. It stops only the processes it started
(by process tree, not with ``ray stop``, which stops every Ray process on the machine).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest

from study.cli import main
from study.store import load, verify
from study.sweep.runner import check_address
from taxonomy.errors import PrunetaxError
from tests.test_store_faults import spec_text
from tests.test_store_integrity import result_tables

BIN = Path(sys.executable).parent
ENV = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}


def _spec(tmp_path: Path, store: Path, cache: Path) -> Path:
    """12 trials, one per work unit, so the units spread over the nodes."""
    path = tmp_path / f"{store.name}.toml"
    path.write_text(spec_text(store, cache, seeds="[0, 1, 2, 3]", per_unit=1))
    return path


def test_a_cluster_address_where_nothing_listens_fails_fast_with_a_message(tmp_path, capsys):
    spec = _spec(tmp_path, tmp_path / "store", tmp_path / "models")
    start = time.perf_counter()
    assert main(["sweep", str(spec), "--address", "127.0.0.1:1"]) == 2
    assert time.perf_counter() - start < 30
    err = capsys.readouterr().err
    assert "no Ray cluster at 127.0.0.1:1" in err and "ray start --head" in err and "Traceback" not in err
    assert not (tmp_path / "store").exists()


def test_an_address_that_is_not_a_ray_head_fails_fast():
    with socket.socket() as silent:  # listens, accepts, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        address = f"127.0.0.1:{silent.getsockname()[1]}"
        start = time.perf_counter()
        with pytest.raises(PrunetaxError, match="does not answer like a Ray head node"):
            check_address(address, timeout=2)
        assert time.perf_counter() - start < 10
    with pytest.raises(PrunetaxError, match="HOST:PORT"):
        check_address("no-port-here")


# --- a real two-node cluster (slow) ----------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ray_start(*args: str) -> subprocess.Popen:
    cmd = [str(BIN / "ray"), "start", "--block", "--node-ip-address", "127.0.0.1", "--num-cpus", "1"]
    cmd += ["--object-store-memory", str(100 * 1024**2), *args]
    return subprocess.Popen(
        cmd, env=ENV, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def _kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL a ``ray start --block`` process and every process it started (workers
    start their own sessions, so a process-group kill would miss them)."""
    import psutil

    try:
        tree = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        tree = []
    for p in [*tree, proc]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(p.pid, signal.SIGKILL)
    proc.wait(timeout=30)


_NODES = """
import json, sys, ray
ray.init(address=sys.argv[1], log_to_driver=False)
print(json.dumps({n["NodeID"]: n["Resources"] for n in ray.nodes() if n["Alive"]}))
"""


def _nodes(address: str) -> dict[str, dict]:
    """Alive node ids and their resources, from a separate driver process."""
    cmd = [sys.executable, "-c", _NODES, address]
    out = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=120)
    return json.loads(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 else {}


def _wait_for_nodes(address: str, n: int, timeout: float = 120) -> dict[str, dict]:
    deadline = time.time() + timeout
    while time.time() < deadline:
        nodes = _nodes(address)
        if len(nodes) == n:
            return nodes
        time.sleep(1)
    raise AssertionError(f"{n} Ray nodes did not come up at {address}")


def _sweep(spec: Path, address: str, *extra: str) -> subprocess.Popen:
    """``prunetax sweep`` in a subprocess; its output goes to ``<spec>.log`` (kept by pytest)."""
    cmd = [str(BIN / "prunetax"), "sweep", str(spec), "--address", address, *extra]
    with open(spec.with_suffix(".log"), "a") as log:
        return subprocess.Popen(cmd, env=ENV, stdout=log, stderr=subprocess.STDOUT)


def _stored_on(store: Path, node: str) -> int:
    if not (store / "trials").is_dir():
        return 0
    return int((load(store, "trials", ["run_key", "node"])["node"] == node).sum())


@pytest.mark.slow
@pytest.mark.ray
def test_a_sweep_spreads_over_two_nodes_and_losing_one_loses_nothing(model_cache, tmp_path):
    temp = Path(tempfile.mkdtemp(prefix="ptx-", dir="/tmp"))  # short: Ray's socket paths
    address = f"127.0.0.1:{_free_port()}"
    port = address.rsplit(":", 1)[1]
    head = _ray_start(
        "--head", "--port", port, "--temp-dir", str(temp), "--include-dashboard=false",
        "--resources", '{"head_node": 1}',
    )  # fmt: skip
    worker = None
    try:
        worker = _ray_start("--address", address, "--resources", '{"worker_node": 1}')
        nodes = _wait_for_nodes(address, 2)
        (second,) = [n for n, res in nodes.items() if "worker_node" in res]

        ref = tmp_path / "ref"
        run = _sweep(_spec(tmp_path, ref, model_cache), address)
        assert run.wait(timeout=600) == 0
        placed = load(ref, "trials")["node"]
        assert placed.notna().all() and set(placed) == set(nodes)  # units ran on both nodes

        cut = tmp_path / "cut"
        run = _sweep(_spec(tmp_path, cut, model_cache), address)
        deadline = time.time() + 300
        while _stored_on(cut, second) < 2 and run.poll() is None and time.time() < deadline:
            time.sleep(0.2)
        assert run.poll() is None, "the sweep ended before the second node could be killed"
        _kill_tree(worker)  # the second node dies mid-sweep
        worker = None
        run.wait(timeout=600)  # the rest runs on the head; units lost with the node are failed records
        assert "sweep finished" in (tmp_path / "cut.log").read_text()  # the driver survived the loss
        rerun = _sweep(_spec(tmp_path, cut, model_cache), address, "--retry-failed")
        assert rerun.wait(timeout=600) in (0, 1)
        trials = load(cut, "trials")
        assert (trials["status"] == "ok").all() and len(trials) == len(load(ref, "trials"))
        assert verify(cut).problems == []
        clean, after = result_tables(ref), result_tables(cut)
        for table in clean:
            pd.testing.assert_frame_equal(after[table], clean[table])
    finally:
        for proc in (worker, head):
            if proc is not None:
                _kill_tree(proc)
        shutil.rmtree(temp, ignore_errors=True)
