"""Cross-table consistency, and invalidating what lost its rows.

A trial counts as stored once its ``trials`` row exists, and its steps are written
first, so an ``ok`` row without all its steps (fewer rows than ``n_steps + 1``) means
steps rows were lost later: a damaged file that readers skip or that a quarantine moved
away. Likewise a rank-quality job is done once its ``oracle`` rows exist, and its
``scores`` are written first.

Invalidation makes the store say so. A trial gets a newer ``trials`` row with status
``lost`` that keeps the columns naming the trial, clears its results, and says why in
``error``. The reader keeps the newest row per run_key, so this row wins. Neither
``Store.done()`` nor the sweep planner counts ``lost`` as ok or failed, so the next sweep
reruns exactly these trials, and the rerun's row replaces the ``lost`` one. A rank job is
invalidated by taking its key out of the done set: its loose ``oracle`` file is moved to
the quarantine, or its key is dropped from the compacted generation's sources list.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from study.store.integrity import sources_text
from study.store.io import Store, write_table
from study.store.layout import (
    QUARANTINE,
    SOURCES,
    current_generation,
    generation_sources,
    parts,
    write_file_atomic,
)
from study.store.read import read_table, scan_folder
from study.store.schema import TABLES

__all__ = ["LOST", "IDENTITY", "Consistency", "consistency", "invalidate"]

LOST = "lost"
"""``trials.status`` of a trial whose stored results were invalidated (it reruns)."""

IDENTITY = (
    "run_key", "schema_version", "model", "dataset", "seed", "base_seed", "signal",
    "sig_input", "sig_pointwise", "sig_reduction", "sig_scaling", "sig_class",
    "protocol", "protocol_json", "spec_json", "tap", "reference_acc", "base_checkpoint",
    "split_fingerprint", "trial_version", "draw", "aggregation", "units_per_step", "tie_seed",
    "n_test", "prunetax_version", "torch_version", "device", "host", "node", "started_at",
)  # fmt: skip
"""``trials`` columns that name a trial and its set-up; a ``lost`` row keeps only these."""


@dataclass(frozen=True)
class Consistency:
    """Run_keys whose rows disagree across tables."""

    without_steps: list[str]
    """``ok`` trials whose steps rows are missing or fewer than ``n_steps + 1``."""
    jobs_without_scores: list[str]
    """Rank-quality jobs counted done (their ``oracle`` key is stored) without ``scores`` rows."""
    lost: list[str]
    """Trials invalidated earlier (newest row ``lost``) that have not been rerun yet."""
    skipped: dict[Path, str]
    """Files the reads behind this check skipped (unreadable, foreign)."""


def _newest(root: Path, table: str, columns: list[str], exclude: Collection[Path]) -> tuple[pa.Table, dict]:
    """``columns`` of ``table`` without ``exclude``; deduplicated when ``table`` is trials or
    steps (the run_keys of the other tables do not depend on which duplicate wins)."""
    scan = scan_folder(root / table, table, columns, select=lambda p: p not in exclude)
    return (scan.newest(table) if table in ("trials", "steps") else scan.data), scan.bad


def _row_counts(column: pa.ChunkedArray) -> dict[str, int]:
    counts = pc.value_counts(column)
    return dict(zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist(), strict=True))


def consistency(root: Path, exclude: Collection[Path] = ()) -> Consistency:
    """Check ``root``'s tables against each other, reading only key columns and as if the
    files in ``exclude`` were gone (``verify`` passes those it found damaged)."""
    trials, bad = _newest(root, "trials", ["run_key", "status", "finished_at", "n_steps"], exclude)
    steps, bad_steps = _newest(root, "steps", ["run_key"], exclude)
    have = _row_counts(steps["run_key"])
    rows = trials.to_pylist()
    short = [
        r["run_key"]
        for r in rows
        if r["status"] == "ok" and have.get(r["run_key"], 0) < (r["n_steps"] or 0) + 1
    ]
    oracle, bad_oracle = _newest(root, "oracle", ["run_key"], exclude)
    scores, bad_scores = _newest(root, "scores", ["run_key"], exclude)
    bad_rank = _newest(root, "rank_quality", ["run_key"], exclude)[1]  # only for what a read skips
    done = Store(root).keys("oracle")
    no_scores = (set(_row_counts(oracle["run_key"])) & done) - set(_row_counts(scores["run_key"]))
    return Consistency(
        sorted(short),
        sorted(no_scores),
        sorted(r["run_key"] for r in rows if r["status"] == LOST),
        {**bad, **bad_steps, **bad_oracle, **bad_scores, **bad_rank},
    )


def _lost_rows(root: Path, keys: list[str], why: str) -> list[dict]:
    old = read_table(root, "trials", filters=[("run_key", "in", keys)]).to_pylist()
    now = datetime.now(UTC)
    out = []
    for row in old:
        done = row.get("finished_at") or now
        new = {k: row.get(k) for k in IDENTITY} | {"status": LOST, "error": why}
        new["finished_at"] = max(now, done + timedelta(microseconds=1))  # newer than the row it replaces
        out.append(new)
    return out


def _rebuild_sources(folder: Path, drop: set[str]) -> None:
    """Rewrite the current generation's sources as the run_keys its readable parts hold,
    less ``drop`` (after a quarantine took parts away, or to undo a rank job)."""
    gen = current_generation(folder)
    if gen is None:
        return
    held: set[str] = set()
    for part in parts(gen):
        scan = scan_folder(folder, folder.name, ["run_key"], select=lambda p, part=part: p == part)
        if not scan.bad:
            held |= set(pc.unique(scan.data["run_key"]).to_pylist())
    text = sources_text(held - drop)
    write_file_atomic(gen / SOURCES, lambda fh: fh.write(text))


def invalidate(root: Path, moved: Iterable[Path], quarantine: Path | None) -> list[str]:
    """Invalidate every ok trial without its steps and every rank job without its scores.

    ``moved`` are the paths a quarantine just moved to ``quarantine``; a current
    generation that lost a part or its sources list gets that list rebuilt first.
    Returns the invalidated run_keys (trials, then rank jobs).
    """
    moved = list(moved)
    for table in TABLES:
        gen = current_generation(root / table)
        if gen is not None and (any(p.is_relative_to(gen) for p in moved) or not (gen / SOURCES).exists()):
            _rebuild_sources(root / table, set())
    found = consistency(root)
    where = f" into {quarantine}" if quarantine else ""
    why = (
        f"{LOST}: its steps rows were lost (damaged files set aside by "
        f"`prunetax store verify --quarantine`{where}); the next sweep reruns it"
    )
    rows = _lost_rows(root, found.without_steps, why) if found.without_steps else []
    for row in rows:
        write_table(root / "trials" / f"{row['run_key']}.parquet", [row], "trials")
    jobs = found.jobs_without_scores
    for key in jobs:
        path = root / "oracle" / f"{key}.parquet"
        if path.exists():  # the job's done marker: set it aside with the damaged files
            dest = (quarantine or root / QUARANTINE / "invalidated") / "oracle" / path.name
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, dest)
    if set(jobs) & generation_sources(current_generation(root / "oracle")):
        _rebuild_sources(root / "oracle", set(jobs))
    return [r["run_key"] for r in rows] + list(jobs)
