"""A tidy store: the ``runs`` view (steps joined to their trial, deduplicated), export whose
format follows the extension and that refuses bad targets, and the DuckDB queries in
docs/store.md answering "mean test accuracy at 50 % sparsity per signal" correctly."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from study.cli import main
from study.store import TABLES, Store, compact, export, load, read_table
from study.store.view import RUN_COLUMNS, RUNS
from taxonomy.errors import PrunetaxError

DOCS = Path(__file__).resolve().parents[1] / "docs" / "store.md"


@pytest.fixture
def store(tmp_path: Path) -> Path:
    """A synthetic store, compacted, then with reruns written loose: one trial rerun with
    a different curve, one trial failed on its rerun, and steps of a trial never stored."""
    from tests.synthetic_store import make_store

    root = tmp_path / "store"
    make_store(root, models=("tiny_cnn",), signals=("random", "taylor_fo", "l1_filter"), seeds=2, steps=30)
    compact(root, "trials"), compact(root, "steps")
    s = Store(root)
    trials = sorted(read_table(root, "trials").to_pylist(), key=lambda r: r["run_key"])
    rerun, broken = trials[0], trials[1]
    later = timedelta(hours=1)
    steps = read_table(root, "steps", filters=[("run_key", "==", rerun["run_key"])]).to_pylist()
    steps = [row | {"test_acc": row["test_acc"] - 7.0} for row in steps[:20]]  # another, shorter curve
    s.write_trial(rerun | {"finished_at": rerun["finished_at"] + later}, steps)
    s.write(
        "trials",
        broken["run_key"],
        [broken | {"status": "failed", "finished_at": broken["finished_at"] + later}],
    )
    s.write("steps", "orphan", [{"run_key": "orphan", "step": 0, "sparsity": 0.0, "test_acc": 50.0}])
    return root


def _acc_at_50(runs: pd.DataFrame) -> pd.Series:
    """Mean test accuracy at 50 % sparsity per signal, computed in Python from the view."""
    out = {}
    for key, curve in runs[runs["status"] == "ok"].groupby("run_key"):
        curve = curve[np.isfinite(curve["test_acc"])].sort_values("step")
        if curve["sparsity"].max() >= 50:
            out[key] = (curve["signal"].iloc[0], np.interp(50.0, curve["sparsity"], curve["test_acc"]))
    frame = pd.DataFrame(out.values(), columns=["signal", "acc"])
    return frame.groupby("signal")["acc"].mean().sort_index()


def test_runs_view_joins_each_step_to_the_newest_row_of_its_trial(store):
    runs, trials, steps = load(store, "runs"), load(store, "trials"), load(store, "steps")
    assert list(runs.columns) == RUNS.names
    assert set(runs["run_key"]) == set(trials["run_key"])  # the orphan steps are left out
    assert len(runs) == len(steps) - 1
    merged = steps.merge(trials[["run_key", *RUN_COLUMNS]], on="run_key")
    merged = merged[RUNS.names].sort_values(["run_key", "step"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(runs, merged, check_dtype=False)  # the orphan's nulls made floats
    rerun = runs[runs["test_acc"].lt(runs["reference_acc"] - 6.5) & runs["step"].eq(0)]
    assert len(rerun) == 1 and (runs["run_key"] == rerun["run_key"].iloc[0]).sum() == 20
    assert (runs["status"] == "failed").sum() == 31  # its status is the newest row's
    some = load(store, "runs", ["signal", "step"], filters=[("signal", "==", "random"), ("step", "<", 2)])
    assert list(some.columns) == ["signal", "step"] and len(some) == 4
    with pytest.raises(PrunetaxError, match="'sgnal'"):
        load(store, "runs", ["sgnal"])
    with pytest.raises(PrunetaxError, match="Did you mean 'runs'"):
        load(store, "rnus")


@pytest.mark.parametrize("name", ["runs.parquet", "runs.pq", "runs.csv"])
def test_export_picks_the_format_from_the_extension(store, tmp_path, name):
    out = tmp_path / "out" / name
    assert main(["store", "export", str(store), "--table", "runs", "--out", str(out)]) == 0
    back = pd.read_csv(out) if name.endswith(".csv") else pq.read_table(out).to_pandas()
    ref = load(store, "runs")
    assert list(back.columns) == list(ref.columns) and len(back) == len(ref)
    pd.testing.assert_series_equal(back["test_acc"], ref["test_acc"])
    if not name.endswith(".csv"):
        assert pq.read_schema(out).equals(RUNS)
    assert export(store, "trials", tmp_path / "t.parquet", ["run_key", "status"]) == len(
        load(store, "trials")
    )


def _listing(*folders: Path) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for f in folders for p in f.rglob("*")}


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--table", "runs", "--out", "{tmp}/runs.xlsx"], "must end in .csv, .parquet, .pq"),
        (["--table", "runs", "--out", "{tmp}/runs"], "must end in"),
        (["--table", "runs", "--out", "{tmp}/folder.csv"], "is a folder"),
        (["--table", "runs", "--out", "{store}/trials/x.parquet"], "inside the store"),
        (["--table", "rnus", "--out", "{tmp}/r.csv"], "Did you mean 'runs'"),
        (["--table", "runs", "--out", "{tmp}/r.csv", "--columns", "signal,tset_acc"], "'tset_acc'"),
        (
            ["--table", "steps", "--out", "{tmp}/r.csv", "--store-is", "{tmp}/not_a_store"],
            "not a results store",
        ),
    ],
)
def test_export_refuses_bad_targets_with_a_message_and_writes_nothing(store, tmp_path, capsys, args, needle):
    (tmp_path / "folder.csv").mkdir()
    (tmp_path / "not_a_store").mkdir()
    (tmp_path / "not_a_store" / "notes.txt").write_text("hello")
    args = [a.format(tmp=tmp_path, store=store) for a in args]
    target = str(store)
    if "--store-is" in args:
        target = args.pop(args.index("--store-is") + 1)
        args.remove("--store-is")
    before = _listing(tmp_path)
    assert main(["store", "export", target, *args]) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err
    assert _listing(tmp_path) == before


def _raw(root: Path, table: str) -> pd.DataFrame:
    files = [str(p) for p in (root / table).rglob("*.parquet")]
    return ds.dataset(files, schema=TABLES[table]).to_table().to_pandas()


def _doc_sql(title: str) -> str:
    """The SQL block of docs/store.md whose first line is ``-- <title>``."""
    blocks = re.findall(r"```sql\n(.*?)```", DOCS.read_text(), flags=re.S)
    (block,) = [b for b in blocks if b.splitlines()[0].startswith(f"-- {title}")]
    return block


def test_the_documented_duckdb_query_gives_the_mean_accuracy_at_half_sparsity(store, tmp_path):
    duckdb = pytest.importorskip("duckdb")
    out = tmp_path / "runs.parquet"
    export(store, "runs", out)
    sql = _doc_sql("mean test accuracy at 50 % weight sparsity").replace("'runs.parquet'", f"'{out}'")
    got = duckdb.sql(sql).df().set_index("signal")["mean_test_acc_at_50"].sort_index()
    expected = _acc_at_50(load(store, "runs"))
    assert len(expected) == 3
    pd.testing.assert_series_equal(got, expected, check_names=False)
    raw = {t: _raw(store, t) for t in ("steps", "trials")}  # without deduplication: reruns count twice
    naive = _acc_at_50(raw["steps"].merge(raw["trials"][["run_key", *RUN_COLUMNS]], on="run_key"))
    assert not np.allclose(naive.to_numpy(), expected.to_numpy())


def test_the_documented_duckdb_recipes_deduplicate_trials_and_steps(store):
    duckdb = pytest.importorskip("duckdb")

    def run(title: str) -> pd.DataFrame:
        return duckdb.sql(_doc_sql(title).replace("results/store", str(store))).df()

    trials, ref = run("DuckDB: trials"), load(store, "trials")
    assert sorted(trials["run_key"]) == sorted(ref["run_key"])
    assert (
        trials.set_index("run_key")["status"]
        .sort_index()
        .equals(ref.set_index("run_key")["status"].sort_index())
    )
    steps, ref = run("DuckDB: steps"), load(store, "steps")
    key = ["run_key", "step"]
    got = steps[ref.columns].sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(got, ref.sort_values(key).reset_index(drop=True), check_dtype=False)
