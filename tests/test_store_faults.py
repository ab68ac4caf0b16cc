"""Writer fault injection: a disk that fills up (ENOSPC) or fails (EIO) in the middle of a
write leaves no partial file, visible or hidden, and a sweep work unit reports the trial it
could not store as failed, with the cause, even when the failed record cannot be stored."""

from __future__ import annotations

import errno
import io
import os
import textwrap
from pathlib import Path

import pytest

import study.store.layout as layout
from study.store import Store, load, verify

SPEC = """
[sweep]
name = "faults"
store = "{store}"
cache_dir = "{cache}"
models = ["tiny_cnn"]
base_seeds = [0]
seeds = {seeds}
signals = ["l1_filter", "taylor_fo", "best_gradient"]
signals_per_unit = {per_unit}

[resources]
cpus_per_trial = 1

[[runs]]
protocol = "sensitivity"
channels_per_step = 16
"""


def spec_text(store: Path, cache: Path, seeds: str = "[0]", per_unit: int = 3) -> str:
    """A small sweep spec: tiny_cnn on digits, three signals, one work unit per seed."""
    return textwrap.dedent(SPEC).format(store=store, cache=cache, seeds=seeds, per_unit=per_unit)


def sweep_units(store: Path, cache: Path, seeds: str = "[0]") -> tuple[list[dict], dict]:
    """The work-unit payloads still to run for :func:`spec_text`, and their context."""
    from study.sweep.plan import make_plan
    from study.sweep.runner import _context
    from study.sweep.spec import parse_spec
    from study.sweep.work import unit_payloads

    plan = make_plan(parse_spec(spec_text(store, cache, seeds)))
    return unit_payloads(plan), _context(plan, False)


class _FailingFile(io.BufferedRandom):
    """A file that writes ``budget`` bytes, then fails every write with ``code``."""

    def __init__(self, path: str, budget: int, code: int) -> None:
        super().__init__(io.FileIO(path, "w+"))
        self.budget, self.code = budget, code

    def write(self, data: bytes) -> int:  # type: ignore[override]
        data = bytes(data)
        if len(data) > self.budget:
            super().write(data[: self.budget])  # part of it lands: a write cut off mid-file
            self.budget = 0
            raise OSError(self.code, os.strerror(self.code))
        self.budget -= len(data)
        return super().write(data)


def _inject(
    monkeypatch: pytest.MonkeyPatch, code: int, *, where: str = "write", files: int | None = None
) -> None:
    """Make store writes fail with ``code``: mid-``write`` after 100 bytes, or at ``fsync``;
    only the first ``files`` files opened for writing (all when None)."""
    opened = [0]
    real_open, real_fsync = open, os.fsync

    def failing_open(path: str | Path, mode: str = "r", *args: object, **kw: object):  # noqa: ANN202
        opened[0] += 1
        if where == "write" and "w" in mode and (files is None or opened[0] <= files):
            return _FailingFile(str(path), 100, code)
        return real_open(path, mode, *args, **kw)

    def failing_fsync(fd: int) -> None:
        opened[0] += 1
        if files is None or opened[0] <= files:
            raise OSError(code, os.strerror(code))
        real_fsync(fd)

    if where == "write":
        monkeypatch.setattr(layout, "open", failing_open, raising=False)
    else:
        monkeypatch.setattr(layout.os, "fsync", failing_fsync)


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


FAULTS = [("write", errno.ENOSPC), ("write", errno.EIO), ("fsync", errno.EIO)]


@pytest.mark.parametrize(("where", "code"), FAULTS)
def test_a_failed_write_leaves_no_partial_file_and_keeps_the_old_one(tmp_path, monkeypatch, where, code):
    store = Store(tmp_path)
    row = {"run_key": "k", "schema_version": 1, "status": "ok", "signal": "random"}
    store.write_trial(row, [{"run_key": "k", "step": 0}])
    before = {p: p.read_bytes() for p in _files(tmp_path)}
    _inject(monkeypatch, code, where=where)
    with pytest.raises(OSError) as caught:
        store.write_trial(row | {"status": "failed"}, [{"run_key": "k", "step": 0, "test_acc": 1.0}])
    assert os.strerror(code) in str(caught.value)
    with pytest.raises(OSError):
        store.write_trial(row | {"run_key": "new"}, [{"run_key": "new", "step": 0}])
    monkeypatch.undo()
    assert {p: p.read_bytes() for p in _files(tmp_path)} == before  # nothing new, nothing half-written
    assert verify(tmp_path).problems == []


@pytest.mark.parametrize(("where", "code"), FAULTS[:2])
def test_a_work_unit_stores_a_trial_it_could_not_write_as_failed_with_the_cause(
    model_cache, tmp_path, monkeypatch, where, code
):
    from study.sweep.work import run_unit

    (unit,), ctx = sweep_units(tmp_path / "store", model_cache)
    _inject(monkeypatch, code, where=where, files=1)  # the first trial's steps file
    result = run_unit(unit, ctx)
    monkeypatch.undo()
    assert (result["ok"], result["failed"]) == (2, 1)
    assert os.strerror(code) in result["error"]
    trials = load(tmp_path / "store", "trials")
    failed = trials[trials["status"] == "failed"]
    assert len(failed) == 1 and os.strerror(code) in failed["error"].iloc[0]
    assert failed["model"].iloc[0] == "tiny_cnn" and failed["signal"].notna().all()
    steps = load(tmp_path / "store", "steps")
    assert set(steps["run_key"]) == set(trials.loc[trials["status"] == "ok", "run_key"])
    assert verify(tmp_path / "store").problems == []  # no partial file, no ok trial without steps


@pytest.mark.parametrize(("where", "code"), FAULTS)
def test_a_work_unit_that_cannot_store_anything_reports_every_failure_to_the_driver(
    model_cache, tmp_path, monkeypatch, where, code
):
    from study.sweep.work import run_unit

    (unit,), ctx = sweep_units(tmp_path / "store", model_cache)
    _inject(monkeypatch, code, where=where)
    result = run_unit(unit, ctx)
    monkeypatch.undo()
    assert (result["ok"], result["failed"]) == (0, 3)
    assert result["error"].count(os.strerror(code)) == 6  # the trial, then its failed record, x 3
    assert "could not be stored either" in result["error"]
    assert [p for p in _files(tmp_path / "store") if p.suffix == ".parquet" or p.name.startswith(".")] == []
    assert Store(tmp_path / "store").done(("ok", "failed")) == set()  # the next sweep runs them all
