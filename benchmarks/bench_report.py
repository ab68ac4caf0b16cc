"""Benchmark of ``analysis.report.build_report`` on a large synthetic store.

Writes a store with ``--rows`` steps rows (default 2 million) quickly, by building the
Parquet tables with numpy and pyarrow directly (in the store's explicit schemas, a few
large ``steps`` files instead of one per trial), then times one ``build_report`` call in
this process and reports its peak memory (``resource.getrusage``: the maximum resident
set size of the process, store generation included).

Default shape: every one of the 630 taxonomy cells plus ``random`` and ``oracle``, on 2
tasks (``tiny_cnn``, ``tiny_resnet`` on digits, sensitivity protocol) x 3 seeds = 3,792
trials of ~690 pruning steps each, plus rank tables (64 units in 4 layers per model and
seed). Curves follow the knees of ``tests/synthetic_store.py`` so the ranking is
realistic.

Usage: ``.venv/bin/python benchmarks/bench_report.py [--rows 2000000] [--store DIR]
[--out DIR] [--keep]``
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the repository root: `tests` is a package

from study.store.schema import ORACLE, SCORES, STEPS, TRIALS  # noqa: E402
from taxonomy.equivalence import representative  # noqa: E402
from taxonomy.spec import all_cells, parse  # noqa: E402
from tests.synthetic_store import knee_of  # noqa: E402

MODELS = {"tiny_cnn": 99.0, "tiny_resnet": 97.5}


def _write(table: pa.Table, schema: pa.Schema, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table.cast(schema) if table.schema != schema else table, path, compression="zstd")


def _columns(schema: pa.Schema, n: int, values: dict[str, object]) -> pa.Table:
    """A table of ``schema`` with ``values`` filled in and nulls elsewhere."""
    arrays = []
    for fld in schema:
        if fld.name in values:
            arrays.append(pa.array(values[fld.name], type=fld.type))
        else:
            arrays.append(pa.nulls(n, type=fld.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def make_big_store(root: Path, rows: int, seeds: int = 3, files: int = 4, seed: int = 0) -> dict[str, int]:
    """Write the benchmark store under ``root``; return the row counts written."""
    rng = np.random.default_rng(seed)
    signals = [c.id for c in all_cells()] + ["random", "oracle"]
    trials = [(m, s, sig) for m in MODELS for s in range(seeds) for sig in signals]
    n = len(trials)
    per = max(2, rows // n)
    keys = np.array([f"{i:024x}" for i in range(n)])
    knees = np.array([knee_of(sig) for _, _, sig in trials]) + rng.normal(0, 2.0, n)
    refs = np.array([MODELS[m] for m, _, _ in trials])
    # steps: one block of `per` rows per trial, built as (n, per) arrays
    inc = rng.uniform(0.2, 0.6, (n, per)) * (100.0 / (0.4 * per))
    sparsity = np.minimum(np.cumsum(inc, axis=1) - inc[:, :1], 99.5)
    acc = refs[:, None] - (refs[:, None] - 10.0) / (1 + np.exp(-(sparsity - knees[:, None]) / 4.0))
    acc += rng.normal(0, 0.3, (n, per))
    acc[:, 0] = refs
    step = np.tile(np.arange(per), n)
    flat = {
        "run_key": np.repeat(keys, per),
        "step": step,
        "n_pruned": (step > 0).astype(np.int64),
        "sparsity": sparsity.ravel(),
        "macs_sparsity": 0.8 * sparsity.ravel(),
        "test_acc": acc.ravel(),
        "retrain_steps": np.zeros(n * per, dtype=np.int64),
        "weights_remaining": (20000 * (1 - sparsity.ravel() / 100)).astype(np.int64),
    }
    bounds = np.linspace(0, n * per, files + 1).astype(int)
    for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
        part = {k: v[a:b] for k, v in flat.items()}
        _write(_columns(STEPS, b - a, part), STEPS, root / "steps" / f"bench-{i}.parquet")
    _write(_trials_table(trials, keys, refs, per), TRIALS, root / "trials" / "bench.parquet")
    n_scores = _rank_tables(root, rng, signals, seeds)
    return {"trials": n, "steps": n * per, "scores": n_scores}


def _trials_table(
    trials: list[tuple[str, int, str]], keys: np.ndarray, refs: np.ndarray, per: int
) -> pa.Table:
    now = datetime.now(UTC)
    specs = [parse(sig) for _, _, sig in trials]
    comp = {
        name: [None if sp.is_reference else sp.components[i].id for sp in specs]
        for i, name in enumerate(("sig_input", "sig_pointwise", "sig_reduction", "sig_scaling"))
    }
    n = len(trials)
    values = {
        "run_key": keys,
        "schema_version": np.ones(n, dtype=np.int32),
        "status": ["ok"] * n,
        "model": [m for m, _, _ in trials],
        "dataset": ["digits"] * n,
        "seed": [s for _, s, _ in trials],
        "base_seed": [s for _, s, _ in trials],
        "signal": [sig for _, _, sig in trials],
        **comp,
        "sig_class": [representative(sp).id for sp in specs],
        "protocol": ["sensitivity"] * n,
        "protocol_json": [json.dumps({"name": "sensitivity"})] * n,
        "tap": ["output"] * n,
        "reference_acc": refs,
        "n_steps": np.full(n, per - 1),
        "initial_weights": np.full(n, 20000),
        "started_at": [now] * n,
        "finished_at": [now] * n,
    }
    return _columns(TRIALS, n, values)


def _rank_tables(
    root: Path, rng: np.random.Generator, signals: list[str], seeds: int, units: int = 64
) -> int:
    layers = np.array([f"features.{3 * (u * 4 // units)}" for u in range(units)])
    score_parts, oracle_parts = [], []
    for m in MODELS:
        for s in range(seeds):
            key = f"rank-{m}-{s}"
            loss = rng.gamma(2.0, 0.05, units)
            oracle_parts.append(
                {
                    "run_key": [key] * units,
                    "model": [m] * units,
                    "dataset": ["digits"] * units,
                    "base_seed": [s] * units,
                    "seed": [s] * units,
                    "unit": np.arange(units),
                    "unit_name": [f"{layers[u]}:{u}" for u in range(units)],
                    "layer": layers,
                    "loss_change": loss,
                }
            )
            quality = np.clip(np.array([knee_of(sig) for sig in signals]) / 80.0, 0.05, 0.95)
            noisy = quality[:, None] * (loss / loss.std())[None, :] + (1 - quality[:, None]) * rng.normal(
                size=(len(signals), units)
            )
            k = len(signals) * units
            score_parts.append(
                {
                    "run_key": [key] * k,
                    "model": [m] * k,
                    "dataset": ["digits"] * k,
                    "base_seed": [s] * k,
                    "seed": [s] * k,
                    "tap": ["output"] * k,
                    "level": ["unit"] * k,
                    "signal": np.repeat(signals, units),
                    "layer": np.tile(layers, len(signals)),
                    "channel": np.tile(np.arange(units), len(signals)),
                    "unit": np.tile(np.arange(units), len(signals)),
                    "score": noisy.ravel(),
                }
            )

    def merge(parts: list[dict]) -> dict:
        return {c: np.concatenate([np.asarray(p[c]) for p in parts]) for c in parts[0]}

    scores, oracle = merge(score_parts), merge(oracle_parts)
    _write(_columns(SCORES, len(scores["run_key"]), scores), SCORES, root / "scores" / "bench.parquet")
    _write(_columns(ORACLE, len(oracle["run_key"]), oracle), ORACLE, root / "oracle" / "bench.parquet")
    return len(scores["run_key"])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=2_000_000, help="steps rows to generate (default 2M)")
    p.add_argument("--seeds", type=int, default=3, help="seeds per (task, signal) (default 3)")
    p.add_argument("--store", type=Path, help="store folder (default: a temporary one; reused if it exists)")
    p.add_argument("--out", type=Path, help="report folder (default: a temporary one)")
    p.add_argument("--keep", action="store_true", help="keep the temporary store and report")
    p.add_argument("-v", "--verbose", action="store_true", help="also log each figure's CPU time")
    p.add_argument("--generate-only", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.generate_only:
        counts = make_big_store(args.store, args.rows, args.seeds)
        print(
            f"store: {counts['trials']} trials, {counts['steps']:,} steps rows, "
            f"{counts['scores']:,} scores rows -> {args.store}"
        )
        return 0
    tmp = Path(tempfile.mkdtemp(prefix="bench_report_"))
    store, out = args.store or tmp / "store", args.out or tmp / "report"
    try:
        if not (store / "trials").is_dir():
            t0 = time.perf_counter()
            # a child process writes the store, so the peak memory below is build_report's own
            cmd = [sys.executable, __file__, "--generate-only", "--store", str(store)]
            subprocess.run([*cmd, "--rows", str(args.rows), "--seeds", str(args.seeds)], check=True)
            print(f"  written in {time.perf_counter() - t0:.1f} s")
        import logging

        from analysis.report import build_report

        logging.basicConfig(level=logging.WARNING, format="  %(message)s")
        level = logging.DEBUG if args.verbose else logging.INFO  # per-section (and figure) timings
        logging.getLogger("analysis.report").setLevel(level)

        cpu0, t2 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        result = build_report(store, out)
        t3, cpu1 = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
        cpu = (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime)
        peak = cpu1.ru_maxrss / 1024
        print(
            f"build_report: {t3 - t2:.1f} s wall, {cpu:.1f} s CPU; {len(result.figures)} figures "
            f"({len(result.figure_paths)} files) -> {result.index_html}"
        )
        print(f"peak RSS of this process (imports + build_report): {peak:.0f} MiB")
        print(result.top[["rank", "signal", "mean_rank", "geomean"]].head(5).to_string(index=False))
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
