"""Benchmark of the results store's reader and compaction (docs/store.md quotes it).

(a) ``--files`` one-row ``trials`` files (every column filled like a real trial): time to
    read them all, to read the two columns ``Store.done()`` needs, to verify, to compact,
    and to read again after compaction (DuckDB's ``read_parquet`` glob for comparison,
    when installed);
(b) ``--steps-rows`` ``steps`` rows (50 steps per trial) written as 10,000-row work-unit
    files, compacted, then read back: all columns, three columns, and 100 trials by a
    ``run_key`` filter (pushed down to the row-group statistics of the sorted parts).

Files are written with ``pyarrow.parquet.write_table`` (the store's format, without the
per-file fsync that dominates ``Store.write`` on a loaded machine). Times are the best of
``--repeat`` runs; the machine's load average is printed because it moves them a lot.

Usage: ``.venv/bin/python benchmarks/bench_store.py [--files 10000] [--steps-rows 2000000]``
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from study.store import Store, compact, load, verify  # noqa: E402
from study.store.schema import STEPS, TRIALS  # noqa: E402


def best(fn: Callable[[], object], repeat: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return min(times), out


def trial_row(i: int, now: datetime) -> dict:
    row: dict = {f.name: None for f in TRIALS}
    for f in TRIALS:
        if pa.types.is_floating(f.type):
            row[f.name] = float(i % 97) / 7
        elif pa.types.is_integer(f.type):
            row[f.name] = i
        elif pa.types.is_string(f.type):
            row[f.name] = f"{f.name}-{i % 13}"
    return row | {
        "run_key": f"{i:024x}",
        "status": "ok",
        "schema_version": 1,
        "started_at": now,
        "finished_at": now,
    }


def write_trials(root: Path, n: int) -> None:
    folder = root / "trials"
    folder.mkdir(parents=True)
    now = datetime.now(UTC)
    for i in range(n):
        table = pa.Table.from_pylist([trial_row(i, now)], schema=TRIALS)
        pq.write_table(table, folder / f"{i:024x}.parquet", compression="zstd")


def write_steps(root: Path, rows: int, per_trial: int = 50, per_file: int = 10_000) -> None:
    folder = root / "steps"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for start in range(0, rows, per_file):
        n = min(per_file, rows - start)
        idx = np.arange(start, start + n)
        cols = {
            "run_key": pa.array([f"{k:024x}" for k in idx // per_trial]),
            "step": pa.array(idx % per_trial),
            "pruned": pa.array([f"features.3:{k % 64}" for k in idx]),
        }
        arrays = []
        for f in STEPS:
            if f.name in cols:
                arrays.append(cols[f.name])
            elif pa.types.is_floating(f.type):
                arrays.append(pa.array(rng.random(n)))
            else:
                arrays.append(pa.array(rng.integers(0, 10_000, n)))
        pq.write_table(pa.Table.from_arrays(arrays, schema=STEPS), folder / f"unit{start:09d}.parquet")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--steps-rows", type=int, default=2_000_000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--dir", type=Path, help="work folder (default: a temp folder)")
    args = parser.parse_args()
    work = Path(args.dir or tempfile.mkdtemp(prefix="bench_store_"))
    print(f"work folder {work}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    results: list[tuple[str, float]] = []

    def run(label: str, fn: Callable[[], object], repeat: int = args.repeat) -> object:
        secs, out = best(fn, repeat)
        results.append((label, secs))
        print(f"{label:<58} {secs:8.2f} s", flush=True)
        return out

    a = work / "a"
    if args.files:
        run(f"write {args.files} one-row trials files", lambda: write_trials(a, args.files), 1)
        files = sorted(str(p) for p in (a / "trials").glob("*.parquet"))
        run("baseline: pyarrow.dataset(file list, schema).to_table()", lambda: ds.dataset(
            files, schema=TRIALS).to_table())  # fmt: skip
        assert len(run("load(trials), all 50 columns", lambda: load(a, "trials"))) == args.files
        run("load(trials, ['run_key', 'status'])", lambda: load(a, "trials", ["run_key", "status"]))
        run("Store.done()", lambda: Store(a).done())
        try:
            import duckdb

            glob = f"{a}/trials/**/*.parquet"
            run("duckdb read_parquet(glob, union_by_name=true), all", lambda: duckdb.sql(
                f"SELECT * FROM read_parquet('{glob}', union_by_name=true)").df())  # fmt: skip
        except ImportError:
            pass
        run("verify (reads every file in full)", lambda: verify(a), 1)
        run("compact(trials)", lambda: compact(a, "trials"), 1)
        run("load(trials) after compaction", lambda: load(a, "trials"))
    b = work / "b"
    if args.steps_rows:
        run(f"write {args.steps_rows} steps rows (unit files)", lambda: write_steps(b, args.steps_rows), 1)
        run("load(steps) before compaction", lambda: load(b, "steps"), 1)
        run("compact(steps)", lambda: compact(b, "steps"), 1)
        frame = run("load(steps) after compaction, all 20 columns", lambda: load(b, "steps"))
        assert len(frame) == args.steps_rows
        cols = ["run_key", "step", "test_acc"]
        run("load(steps, 3 columns) after compaction", lambda: load(b, "steps", cols))
        keys = [f"{k:024x}" for k in range(0, args.steps_rows // 50, max(1, args.steps_rows // 5000))][:100]
        run(
            "load(steps, filters=run_key in 100 keys)",
            lambda: load(b, "steps", filters=[("run_key", "in", keys)]),
        )
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
