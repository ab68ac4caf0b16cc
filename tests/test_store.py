"""The results store: atomic writes, concurrent writers, the deduplicating reader,
verify/quarantine, compaction, export, the ``prunetax store`` CLI, and reading the
store without prunetax (pyarrow, pandas, DuckDB)."""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

import study.store.integrity as integrity
import study.store.maintenance as maintenance
from study.cli import main
from study.store import (
    TABLES,
    Store,
    StoreWarning,
    compact,
    export,
    load,
    summary,
    verify,
    write_table,
)
from study.store.layout import COMPACTED, current_generation
from study.store.schema import STEPS, TRIALS
from taxonomy.errors import PrunetaxError

T0 = datetime(2026, 1, 1, tzinfo=UTC)
SIGNALS = ("random", "oracle", "taylor_fo", "l1_filter")


def trial(key: str, finished: datetime = T0, status: str = "ok", **extra: object) -> dict:
    return {
        "run_key": key,
        "schema_version": 1,
        "status": status,
        "signal": "random",
        "finished_at": finished,
    } | extra


def steps(key: str, n: int, acc: float = 90.0) -> list[dict]:
    return [{"run_key": key, "step": k, "test_acc": acc - k} for k in range(n)]


def _sorted(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    return frame.sort_values(keys, kind="stable").reset_index(drop=True)


def _sort_keys(table: str) -> list[str]:
    from study.store.dedup import KEYS

    return [*KEYS[table], *(["step"] if table == "steps" else [])]


def _snapshot(root: Path) -> dict[str, pd.DataFrame]:
    return {t: _sorted(load(root, t), _sort_keys(t)) for t in TABLES}


@pytest.fixture
def small_store(tmp_path: Path) -> Path:
    from tests.synthetic_store import make_store

    root = tmp_path / "store"
    make_store(root, models=("tiny_cnn",), signals=SIGNALS, seeds=2, steps=5)
    return root


def _age(path: Path, hours: float) -> None:
    t = time.time() - hours * 3600
    os.utime(path, (t, t))


def _hidden(root: Path) -> list[Path]:
    return [p for p in root.rglob(".*") if "_quarantine" not in p.parts]


# --- writing -------------------------------------------------------------------------


def test_atomic_write_leaves_no_temp_files_and_a_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    store = Store(tmp_path)
    for i in range(5):
        store.write_trial(trial(f"k{i}"), steps(f"k{i}", 3))
    assert _hidden(tmp_path) == []
    before = pq.read_table(store.path("trials", "k0"))

    def boom(fh: object, data: pa.Table, *args: object) -> None:
        fh.write(b"PAR1 half a file")  # type: ignore[attr-defined]
        raise OSError("disk full")

    monkeypatch.setattr(integrity, "_write", boom)
    with pytest.raises(OSError, match="disk full"):
        store.write("trials", "k0", [trial("k0", status="failed")])
    assert _hidden(tmp_path) == []
    assert pq.read_table(store.path("trials", "k0")).equals(before)


def test_a_reader_during_writes_never_fails(tmp_path):
    store, stop = Store(tmp_path), threading.Event()
    store.write_trial(trial("same"), steps("same", 4))

    def writer() -> None:
        i = 0
        while not stop.is_set():
            store.write_trial(trial("same", T0 + timedelta(seconds=i)), steps("same", 4, acc=i))
            store.write("trials", f"new{i}", [trial(f"new{i}")])
            i += 1

    thread = threading.Thread(target=writer)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        thread.start()
        try:
            for _ in range(30):
                trials, st = load(tmp_path, "trials"), load(tmp_path, "steps")
                assert (trials["run_key"] == "same").sum() == 1
                assert len(st) == 4 and st["test_acc"].nunique() == 4
        finally:
            stop.set()
            thread.join()
    assert not [w for w in caught if issubclass(w.category, StoreWarning)]


def _write_trials(root: str, keys: list[str]) -> int:
    store = Store(root)
    for key in keys:
        store.write_trial(trial(key, host=f"pid{os.getpid()}"), steps(key, 3))
    return len(keys)


def test_eight_processes_writing_500_trials_leave_a_complete_valid_store(tmp_path):
    keys = [f"run{i:04d}" for i in range(500)]
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["study.store"])
    with ctx.Pool(8) as pool, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pending = pool.starmap_async(_write_trials, [(str(tmp_path), keys[w::8]) for w in range(8)])
        while not pending.ready():  # read while they write: never fails, never sees a partial file
            load(tmp_path, "trials", ["run_key"])
            pending.wait(0.5)
        assert sum(pending.get(timeout=120)) == 500
    assert not [w for w in caught if issubclass(w.category, StoreWarning)]
    report = verify(tmp_path)
    assert report.ok and report.problems == [] and report.files_checked == 1000
    trials, st = load(tmp_path, "trials"), load(tmp_path, "steps")
    assert sorted(trials["run_key"]) == keys and len(st) == 1500
    assert st.groupby("run_key").size().eq(3).all()
    assert trials["host"].nunique() > 1  # really written by several processes
    assert _hidden(tmp_path) == []


# --- reading and deduplication -------------------------------------------------------


def test_rerun_keeps_only_the_newest_trial_row_and_only_the_newest_steps(tmp_path):
    store = Store(tmp_path)
    old, new = T0, T0 + timedelta(hours=1)
    # a work unit wrote two trials; a later unit reran one of them with fewer steps
    store.write("steps", "unitA", steps("k1", 5) + steps("k2", 4))
    store.write("trials", "unitA", [trial("k1", old, status="failed"), trial("k2", old)])
    store.write("steps", "unitB", steps("k1", 3, acc=50.0))
    store.write("trials", "unitB", [trial("k1", new)])
    for table, hours in (("steps", 2), ("trials", 2)):
        _age(tmp_path / table / "unitA.parquet", hours)  # unitA is the older write
    # a trial row with an older finished_at loses even if written later
    store.write("trials", "late", [trial("k2", old - timedelta(days=1), status="failed")])

    def check() -> None:
        trials = load(tmp_path, "trials").set_index("run_key")
        assert len(trials) == 2 and trials.loc["k1", "status"] == "ok" and trials.loc["k2", "status"] == "ok"
        st = load(tmp_path, "steps")
        assert st[st["run_key"] == "k1"]["test_acc"].tolist() == [50.0, 49.0, 48.0]
        assert len(st[st["run_key"] == "k2"]) == 4
        assert store.done() == {"k1", "k2"} and store.done(("failed",)) == set()
        failed = load(tmp_path, "trials", filters=[("status", "==", "failed")])
        assert failed.empty  # filters apply after dedup: no older row comes back

    check()
    compact(tmp_path, "trials"), compact(tmp_path, "steps")
    check()
    # a rerun after compaction replaces the compacted steps wholesale
    store.write_trial(trial("k2", new), steps("k2", 2, acc=10.0))
    st = load(tmp_path, "steps", filters=[("run_key", "==", "k2")])
    assert st["test_acc"].tolist() == [10.0, 9.0]


def test_scores_keep_the_last_row_per_natural_key(tmp_path):
    row = {"run_key": "r", "tap": "output", "level": "unit", "signal": "s", "layer": "l", "channel": 0}
    store = Store(tmp_path)
    store.write("scores", "a", [{**row, "unit": u, "score": 1.0} for u in range(3)])
    _age(tmp_path / "scores" / "a.parquet", 1)
    store.write("scores", "b", [{**row, "unit": 0, "score": 2.0}])
    scores = _sorted(load(tmp_path, "scores"), ["unit"])
    assert scores["score"].tolist() == [2.0, 1.0, 1.0]


def test_load_projects_filters_and_rejects_unknown_columns(small_store):
    some = sorted(load(small_store, "trials")["run_key"])[:2]
    st = load(small_store, "steps", ["run_key", "test_acc"], filters=[("run_key", "in", some)])
    assert list(st.columns) == ["run_key", "test_acc"] and set(st["run_key"]) == set(some)
    with pytest.raises(PrunetaxError, match="columns"):
        load(small_store, "trials", ["run_key", "nope"])
    with pytest.raises(PrunetaxError, match="table"):
        load(small_store, "trail")
    assert load(small_store / "missing", "trials").empty


def test_done_reads_only_the_columns_it_needs(small_store, monkeypatch):
    import study.store.read as read_mod

    seen = []
    real = read_mod.scan_folder
    monkeypatch.setattr(
        read_mod, "scan_folder", lambda f, t, cols, e=None: seen.append(cols) or real(f, t, cols, e)
    )
    assert len(Store(small_store).done()) == 8
    assert seen == [["run_key", "status", "finished_at"]]


# --- verify and quarantine -----------------------------------------------------------


def _spoil(root: Path) -> dict[str, Path]:
    good = next((root / "trials").glob("*.parquet"))
    bad = {
        "truncated": root / "trials" / "truncated.parquet",
        "csv": root / "trials" / "notes.csv",
        "foreign": root / "trials" / "foreign.parquet",
        "other_table": root / "trials" / "a_steps_file.parquet",
        "unknown_folder": root / "junk" / "x.parquet",
        "stale_tmp": root / "steps" / ".dead.parquet.0123.tmp",
    }
    bad["truncated"].write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    bad["csv"].write_text("run_key,acc\nk,1\n")
    pd.DataFrame({"run_key": ["x"], "acc": [1.0]}).to_parquet(bad["foreign"])
    write_table(bad["other_table"], steps("k", 2), "steps")
    bad["unknown_folder"].parent.mkdir()
    write_table(bad["unknown_folder"], [trial("zz")], "trials")
    bad["stale_tmp"].write_bytes(b"PAR1")
    _age(bad["stale_tmp"], 2)
    (root / "steps" / ".live.parquet.4567.tmp").write_bytes(b"PAR1")  # a live writer's
    return bad


def test_verify_reports_bad_files_the_reader_skips_them_and_quarantine_moves_them(small_store, capsys):
    before = _snapshot(small_store)
    bad = _spoil(small_store)
    report = verify(small_store)
    by_path = {p.path: p for p in report.problems}
    assert not report.ok and set(by_path) == set(bad.values())
    assert by_path[bad["truncated"]].kind == "unreadable"
    assert {by_path[bad[k]].kind for k in ("csv", "foreign", "other_table", "unknown_folder")} == {"foreign"}
    assert "'steps' table" in by_path[bad["other_table"]].message
    assert (by_path[bad["stale_tmp"]].kind, by_path[bad["stale_tmp"]].severity) == ("stale_temp", "info")
    assert all(p.exists() for p in bad.values())  # verify alone changes nothing

    assert main(["store", "verify", str(small_store)]) == 1
    out = capsys.readouterr().out
    assert all(p.name in out for p in bad.values())

    with pytest.warns(StoreWarning) as caught:
        after = _snapshot(small_store)
    messages = " ".join(str(w.message) for w in caught)
    for name in ("truncated.parquet", "foreign.parquet", "a_steps_file.parquet"):
        assert name in messages
    assert "prunetax store verify" in messages
    for table in TABLES:
        pd.testing.assert_frame_equal(after[table], before[table])

    assert main(["store", "verify", str(small_store), "--quarantine"]) == 1
    capsys.readouterr()
    (stamp,) = (small_store / "_quarantine").iterdir()
    moved = {p.relative_to(stamp) for p in stamp.rglob("*") if p.is_file()}
    assert moved == {p.relative_to(small_store) for p in bad.values()}
    assert not (small_store / "junk").exists()
    assert main(["store", "verify", str(small_store)]) == 0
    assert (small_store / "steps" / ".live.parquet.4567.tmp").exists()
    assert verify(small_store).problems == []


# --- compaction ----------------------------------------------------------------------


def test_compaction_loses_nothing_and_keeps_files_written_meanwhile(small_store, monkeypatch):
    store = Store(small_store)
    key = sorted(store.keys("trials"))[0]
    store.write_trial(trial(key, T0 + timedelta(days=400), signal="rerun"), steps(key, 2))  # a rerun
    before, keys = _snapshot(small_store), {t: store.keys(t) for t in TABLES}
    for table in TABLES:
        result = compact(small_store, table)
        assert result.rows_before == result.rows_after == len(before[table])
    after = _snapshot(small_store)
    for table in TABLES:
        pd.testing.assert_frame_equal(after[table], before[table])
        assert store.keys(table) == keys[table]
    assert list((small_store / "trials").glob("*.parquet")) == []
    assert verify(small_store).problems == [] and store.has("trials", key)

    # files written while the next compaction runs: a new trial and a rewrite of a loose one
    store.write_trial(trial("fresh1"), steps("fresh1", 2))
    _age(store.path("trials", "fresh1"), 1)
    real = maintenance._write_parts

    def meanwhile(*args: object) -> int:
        store.write_trial(trial("fresh2"), steps("fresh2", 2))
        store.write("trials", "fresh1", [trial("fresh1", T0 + timedelta(days=500), signal="rewritten")])
        return real(*args)

    monkeypatch.setattr(maintenance, "_write_parts", meanwhile)
    result = compact(small_store, "trials")
    assert result.kept == (str(store.path("trials", "fresh1")),)
    assert {p.stem for p in (small_store / "trials").glob("*.parquet")} == {"fresh1", "fresh2"}
    trials = load(small_store, "trials").set_index("run_key")
    assert trials.loc["fresh1", "signal"] == "rewritten" and "fresh2" in trials.index
    assert len(trials) == len(before["trials"]) + 2
    assert current_generation(small_store / "trials").name == "g-000002"
    assert [p.name for p in (small_store / "trials" / COMPACTED).iterdir()] == ["g-000002"]


def test_readers_see_the_old_or_the_new_generation_never_both_or_neither(small_store):
    expected = set(load(small_store, "trials")["run_key"])
    store, stop, seen, errors = Store(small_store), threading.Event(), [], []

    def reader() -> None:
        while not stop.is_set():
            try:
                seen.append(load(small_store, "trials", ["run_key"])["run_key"].tolist())
            except Exception as err:  # noqa: BLE001 - any failure is the finding
                errors.append(err)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for i in range(4):
            key = sorted(expected)[i]
            store.write("trials", key, [trial(key, T0 + timedelta(days=900 + i))])
            compact(small_store, "trials")
    finally:
        stop.set()
        thread.join()
    assert not errors and seen
    assert all(len(keys) == len(expected) and set(keys) == expected for keys in seen)


# --- reading without prunetax, export, CLI --------------------------------------------


def test_store_is_readable_with_pyarrow_pandas_and_duckdb(small_store):
    duckdb = pytest.importorskip("duckdb")
    n_trials, n_steps = len(load(small_store, "trials")), len(load(small_store, "steps"))
    for stage in ("loose", "compacted"):
        if stage == "compacted":
            compact(small_store, "trials"), compact(small_store, "steps")
        files = [str(p) for p in (small_store / "steps").rglob("*.parquet")]
        assert ds.dataset(files, schema=STEPS).to_table().num_rows == n_steps
        frame = ds.dataset(small_store / "trials", schema=TRIALS, ignore_prefixes=["."]).to_table()
        assert frame.num_rows == n_trials
        assert sum(len(pd.read_parquet(f)) for f in files) == n_steps
        glob = f"{small_store}/trials/**/*.parquet"
        got = duckdb.sql(f"SELECT count(DISTINCT run_key) FROM read_parquet('{glob}', union_by_name=true)")
        assert got.fetchall()[0][0] == n_trials


def test_export_writes_a_csv_pandas_reads_back(small_store, tmp_path):
    out = tmp_path / "out" / "trials.csv"
    assert main(["store", "export", str(small_store), "--table", "trials", "--out", str(out)]) == 0
    back, ref = pd.read_csv(out), load(small_store, "trials")
    assert list(back.columns) == list(ref.columns) and len(back) == len(ref)
    back, ref = _sorted(back, ["run_key"]), _sorted(ref, ["run_key"])
    assert back["run_key"].tolist() == ref["run_key"].tolist()
    pd.testing.assert_series_equal(back["auc"], ref["auc"], check_dtype=False)
    assert export(small_store, "steps", tmp_path / "s.csv", ["run_key", "step"]) == len(
        load(small_store, "steps")
    )


def test_ls_and_compact_cli(small_store, capsys):
    assert main(["store", "ls", str(small_store)]) == 0
    out = capsys.readouterr().out
    assert "trials" in out and "8 ok, 0 failed" in out
    assert main(["store", "compact", str(small_store), "--table", "steps"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("steps: 8 files, 48 rows") and "-> 1 files, 48 rows" in out
    s = {x.table: x for x in summary(small_store)}
    assert (s["steps"].compacted_parts, s["steps"].loose_files, s["steps"].rows) == (1, 0, 48)


def test_cli_errors_name_the_missing_store_or_unknown_table(tmp_path, capsys):
    assert main(["store", "ls", str(tmp_path / "nope")]) == 2
    assert "nope" in capsys.readouterr().err
    tmp_path.joinpath("trials").mkdir()
    assert main(["store", "compact", str(tmp_path), "--table", "trails"]) == 2
    err = capsys.readouterr().err
    assert "'trails'" in err and "Did you mean 'trials'" in err
    assert main(["store", "export", str(tmp_path), "--table", "nope", "--out", str(tmp_path / "x.csv")]) == 2


def test_cli_knows_every_table():
    from study.cli.store import _TABLES

    assert tuple(TABLES) == _TABLES


def test_a_read_overtaken_by_a_compaction_starts_over(small_store, monkeypatch):
    import study.store.read as read_mod

    expected = _sorted(load(small_store, "steps"), ["run_key", "step"])
    real, calls = read_mod.loose_files, []

    def listing_then_compaction(folder: Path) -> list:
        found = real(folder)
        calls.append(folder)
        if len(calls) == 1:  # after the reader listed: swap generations, delete the loose files
            monkeypatch.setattr(read_mod, "loose_files", real)
            compact(small_store, "steps")
            monkeypatch.setattr(read_mod, "loose_files", listing_then_compaction)
        return found

    monkeypatch.setattr(read_mod, "loose_files", listing_then_compaction)
    with warnings.catch_warnings():
        warnings.simplefilter("error", StoreWarning)
        got = load(small_store, "steps")
    assert len(calls) == 2  # the first snapshot was stale: read again
    pd.testing.assert_frame_equal(_sorted(got, ["run_key", "step"]), expected)


def test_a_loose_file_removed_while_reading_is_skipped_quietly(tmp_path, monkeypatch):
    import study.store.read as read_mod

    store = Store(tmp_path)
    for k in ("a", "b", "c"):
        store.write("trials", k, [trial(k)])
    real = read_mod.loose_files

    def listing_then_removal(folder: Path) -> list:
        found = real(folder)
        store.path("trials", "b").unlink()  # e.g. folded into the generation just read
        return found

    monkeypatch.setattr(read_mod, "loose_files", listing_then_removal)
    with warnings.catch_warnings():
        warnings.simplefilter("error", StoreWarning)
        assert sorted(load(tmp_path, "trials")["run_key"]) == ["a", "c"]


def test_compaction_refuses_to_drop_an_unreadable_part(small_store):
    compact(small_store, "trials")
    (part,) = (small_store / "trials" / COMPACTED).glob("g-*/part-*.parquet")
    part.write_bytes(part.read_bytes()[:100])
    Store(small_store).write_trial(trial("new"), steps("new", 1))
    with pytest.raises(PrunetaxError, match="verify"):
        compact(small_store, "trials")
    assert part.exists()
    with pytest.warns(StoreWarning, match="part-00000"):
        assert load(small_store, "trials")["run_key"].tolist() == ["new"]
    report = verify(small_store, quarantine=True)
    assert [(p.path, p.kind) for p in report.problems] == [(part, "unreadable")]
    assert compact(small_store, "trials").rows_after == 1
    assert verify(small_store).problems == []
