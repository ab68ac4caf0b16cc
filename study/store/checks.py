"""Checking a store: files that do not belong, content that changed, and what to set aside.

``verify`` proves integrity. It hashes every file against the sha256 its writer embedded
(:mod:`study.store.integrity`), reads files of an older prunetax (no checksum) in full,
and checks across tables that every ``ok`` trial has its steps
(:mod:`study.store.consistency`). With ``quarantine`` it moves bad files aside and
invalidates the trials and rank jobs that lost rows, so the next sweep reruns exactly
those. :class:`Checker` in its cheap mode (footers and schemas only) serves
:func:`study.store.health`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.parquet as pq

from study.store.consistency import consistency, invalidate
from study.store.integrity import KEY, MARKER, parquet_checksum, sources_checksum
from study.store.layout import COMPACTED, QUARANTINE, SOURCES, generations, is_loose_name, parts
from study.store.maintenance import require_store
from study.store.read import check_schema
from study.store.schema import TABLES

__all__ = ["Problem", "VerifyReport", "Checker", "verify", "KINDS", "NOTES"]

KINDS = {
    "unreadable": "a Parquet file that cannot be read (truncated, corrupt)",
    "foreign": "a file that is not part of the store: not Parquet, another schema, or outside a table folder",
    "checksum": "a file whose bytes differ from the sha256 written with it (changed since it was written)",
    "missing_steps": "an ok trial whose steps rows are missing or incomplete (fewer than n_steps + 1)",
    "missing_scores": "a rank-quality job whose oracle rows are stored but whose scores rows are not",
    "stale_temp": "a temp file or staging folder older than the threshold (a writer that died)",
    "stale_generation": "a superseded compacted generation a compaction did not remove",
    "unchecksummed": "a file written by an older prunetax without a checksum (read in full instead)",
    "invalidated": "a trial or rank job whose rows a quarantine invalidated (the next sweep reruns it)",
}
"""Problem kinds. Those in :data:`NOTES` are ``info``: they do not fail ``verify``."""
NOTES = frozenset({"stale_temp", "stale_generation", "unchecksummed", "invalidated"})
MOVABLE_NOTES = frozenset({"stale_temp", "stale_generation"})
_KEYED = frozenset({"missing_steps", "missing_scores", "invalidated"})
"""Kinds about a run_key rather than a file: quarantine moves no file for them."""


@dataclass(frozen=True)
class Problem:
    """One file (or folder, or run_key) that ``verify`` flags."""

    path: Path
    kind: str
    message: str
    severity: str = "error"
    moved_to: Path | None = None
    key: str | None = None


@dataclass
class VerifyReport:
    """Everything ``verify`` found; ``ok`` is False when any problem is an ``error``."""

    root: Path
    problems: list[Problem] = field(default_factory=list)
    files_checked: int = 0
    quarantine: Path | None = None
    invalidated: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(p.severity == "error" for p in self.problems)

    def lines(self) -> list[str]:
        """One line per problem (paths relative to the root; files without a checksum
        counted once per table), then a summary line."""
        out, legacy = [], {}
        for p in self.problems:
            where = p.path.relative_to(self.root) if p.path.is_relative_to(self.root) else p.path
            if p.kind == "unchecksummed":
                legacy.setdefault(where.parts[0], []).append(where)
                continue
            moved = f" [moved to {p.moved_to}]" if p.moved_to else ""
            out.append(f"{p.severity:<5} {p.kind:<16} {where}: {p.message}{moved}")
        for table, files in legacy.items():
            out.append(
                f"info  {'unchecksummed':<16} {table}: {len(files)} file(s) written by an older prunetax "
                f"without a checksum (e.g. {files[0]}); `prunetax store compact` rewrites them with one"
            )
        n_err = sum(p.severity == "error" for p in self.problems)
        out.append(
            f"{self.files_checked} files checked in {self.root}: {n_err} errors, "
            f"{len(self.problems) - n_err} notes"
            + (f"; moved to {self.quarantine}" if self.quarantine else "")
            + (f"; {len(self.invalidated)} invalidated (the next sweep reruns them)" * bool(self.invalidated))
        )
        return out


def _first_line(err: BaseException) -> str:
    return f"{type(err).__name__}: {(str(err).strip().splitlines() or [''])[0]}"


def check_parquet(path: Path, table: str, deep: bool = True) -> Problem | None:
    """The problem of one Parquet file of ``table``, or None.

    Cheap (``deep=False``): the footer parses and the schema is the table's, which is
    what a reader checks. Deep: also the checksum, or a full read of a file without one.
    """
    try:
        pf = pq.ParquetFile(path)
        kv, found = pf.metadata.metadata or {}, None
        if deep:
            found = parquet_checksum(path, kv, pf.schema_arrow.metadata or {})
        if found is not None and found[0] == "checksum" and KEY in kv:
            return Problem(path, "checksum", found[1])  # changed bytes come first: they explain the rest
        reason = check_schema(pf.schema_arrow, table)
        if reason:
            return Problem(path, "foreign", f"{reason} (not a {table!r} file)")
        if found is not None and found[0] == "checksum":
            return Problem(path, "checksum", found[1])
        if found is not None:  # no checksum: only a full read can find damage
            for i in range(pf.metadata.num_row_groups):
                pf.read_row_group(i)
            return Problem(path, "unchecksummed", found[1], "info")
    except FileNotFoundError:
        return None  # removed while checking (a compaction)
    except Exception as err:  # any failure to read is exactly what verify reports
        return Problem(path, "unreadable", _first_line(err))
    return None


def _has_checksum(part: Path) -> bool:
    try:
        meta = pq.read_metadata(part).metadata or {}
    except Exception:  # noqa: BLE001 - an unreadable part is reported on its own
        return False
    return KEY in meta or MARKER in meta


def check_sources(path: Path) -> Problem | None:
    """The problem of a generation's ``.sources.txt`` (its checksum line), or None."""
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        return Problem(path, "unreadable", "missing: the keys folded into this generation are unknown")
    required = any(_has_checksum(p) for p in parts(path.parent))
    found = sources_checksum(text, required)
    if found is None:
        return None
    return Problem(path, found[0], found[1], "info" if found[0] in NOTES else "error")


def _all_files(path: Path) -> list[Path]:
    if not path.is_dir():
        return [path]
    return sorted(Path(d) / f for d, _, files in os.walk(path) for f in files)


class Checker:
    """Walks a store and checks every file, a few at a time: ``deep``, the checksums too;
    without ``files``, only the layout (which files belong where) and no file is opened."""

    def __init__(self, root: Path, stale_after_s: float, deep: bool = True, files: bool = True) -> None:
        self.root, self.cutoff, self.deep, self.files = root, time.time() - stale_after_s, deep, files
        self.problems: list[Problem] = []
        self.pending: list[Callable[[], Problem | None]] = []
        self.checked = self.seen = 0

    def foreign(self, path: Path, why: str) -> None:
        self.problems += [Problem(p, "foreign", why) for p in _all_files(path)]

    def stale(self, path: Path, kind: str, what: str) -> None:
        try:
            mtime = path.stat().st_mtime
        except FileNotFoundError:
            return
        if mtime < self.cutoff:
            age = (time.time() - mtime) / 3600
            self.problems.append(Problem(path, kind, f"{what}, last modified {age:.1f} h ago", "info"))

    def parquet(self, path: Path, table: str) -> None:
        self.seen += 1
        if self.files:
            self.pending.append(lambda: check_parquet(path, table, self.deep))

    def check_pending(self) -> None:
        """Check the collected files, a few at a time (pyarrow and hashlib release the GIL)."""
        with ThreadPoolExecutor(max_workers=min(4, (os.cpu_count() or 1) + 1)) as pool:
            found = list(pool.map(lambda job: job(), self.pending))
        self.checked += len(self.pending)
        self.problems += [p for p in found if p is not None]
        self.problems.sort(key=lambda p: str(p.path))
        self.pending = []

    def table(self, folder: Path) -> None:
        for entry in sorted(os.scandir(folder), key=lambda e: e.name):
            path = Path(entry.path)
            if entry.name == COMPACTED and entry.is_dir():
                self.compacted(path, folder.name)
            elif entry.name.startswith("."):
                if entry.name.endswith(".tmp"):
                    self.stale(path, "stale_temp", "temp file of a write that never finished")
            elif is_loose_name(entry.name) and entry.is_file():
                self.parquet(path, folder.name)
            elif entry.is_dir():
                self.foreign(path, f"sub-folder {entry.name!r} is not part of the layout of a table folder")
            else:
                self.foreign(path, "not a store file (a table folder holds only <key>.parquet files)")

    def compacted(self, comp: Path, table: str) -> None:
        gens = generations(comp.parent)
        for entry in sorted(os.scandir(comp), key=lambda e: e.name):
            path = Path(entry.path)
            if path in gens[:-1]:
                self.stale(path, "stale_generation", f"superseded by {gens[-1].name}")
            elif gens and path == gens[-1]:
                if self.deep:
                    self.pending.append(lambda gen=path: check_sources(gen / SOURCES))
                for part in sorted(path.iterdir()):
                    if part.name.startswith("part-") and part.name.endswith(".parquet"):
                        self.parquet(part, table)
                    elif part.name != SOURCES and not part.name.startswith("."):
                        self.foreign(part, "not a part of a compacted generation")
            elif entry.name.startswith(".staging-") or entry.name.endswith(".tmp"):
                self.stale(path, "stale_temp", "staging of a compaction that never finished")
            elif not entry.name.startswith("."):
                self.foreign(path, "not a compacted generation (g-<N>)")

    def store(self) -> None:
        for entry in sorted(os.scandir(self.root), key=lambda e: e.name):
            path = Path(entry.path)
            if entry.name.startswith((".", "_")):
                continue  # hidden, or reserved for tools (_quarantine)
            if entry.is_dir() and entry.name in TABLES:
                self.table(path)
            elif entry.is_dir():
                self.foreign(path, f"folder {entry.name!r} is not a table (tables: {', '.join(TABLES)})")
            else:
                self.foreign(path, "not inside a table folder")


def _prune_empty(folder: Path, root: Path) -> None:
    """Remove folders a quarantine emptied, up to the root (table folders stay)."""
    while folder != root and folder.is_relative_to(root):
        if folder.parent == root and folder.name in TABLES:
            return
        try:
            folder.rmdir()
        except OSError:  # not empty
            return
        folder = folder.parent


def _quarantine(report: VerifyReport) -> None:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    dest_root = report.root / QUARANTINE / stamp
    moved = []
    for p in report.problems:
        if p.kind in _KEYED or p.kind == "unchecksummed":
            moved.append(p)  # about a run_key, or an intact older file: nothing to move
            continue
        dest = dest_root / p.path.relative_to(report.root)
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.rename(p.path, dest)
        except FileNotFoundError:
            moved.append(p)  # gone meanwhile
            continue
        moved.append(replace(p, moved_to=dest))
        _prune_empty(p.path.parent, report.root)
    report.problems = moved
    report.quarantine = dest_root if any(p.moved_to for p in moved) else None


def _cross_problems(root: Path, bad: set[Path]) -> list[Problem]:
    """Run_keys whose rows are inconsistent across tables, as if ``bad`` files were gone."""
    found = consistency(root, exclude=bad)
    out = [
        Problem(root / "trials" / k, "missing_steps", "ok trial without (all of) its steps rows", key=k)
        for k in found.without_steps
    ]
    out += [
        Problem(root / "oracle" / k, "missing_scores", "rank-quality job whose scores rows are gone", key=k)
        for k in found.jobs_without_scores
    ]
    out += [
        Problem(
            root / "trials" / k, "invalidated", "a quarantine invalidated it; rerun pending", "info", key=k
        )
        for k in found.lost
    ]
    return out


def verify(root: str | Path, *, quarantine: bool = False, stale_after_s: float = 3600.0) -> VerifyReport:
    """Prove the store's integrity: every file's checksum, every ok trial's steps.

    Finds unreadable and foreign files, files whose bytes changed since they were
    written (``checksum``), ok trials without their steps and rank jobs without their
    scores (as if the bad files were already gone), and notes stale temp files,
    superseded generations, files without a checksum and trials awaiting a rerun.

    Parameters
    ----------
    root
        Store root; must exist.
    quarantine
        Move every bad file or folder to ``<root>/_quarantine/<UTC time>/``, keeping its
        path relative to the root, then invalidate what lost rows
        (:func:`study.store.consistency.invalidate`): the next sweep reruns exactly those
        trials and rank jobs. Temp files count only once older than ``stale_after_s``,
        so live writers are never disturbed. Without it nothing changes.
    stale_after_s
        Age (by mtime) from which a temp file, staging folder or old generation is stale.

    Returns
    -------
    VerifyReport
        ``problems`` (path, kind in :data:`KINDS`, message, severity ``error``/``info``,
        ``moved_to``, ``key``), ``files_checked``, ``invalidated`` and ``ok``.
    """
    root = require_store(root).absolute()
    checker = Checker(root, stale_after_s)
    checker.store()
    checker.check_pending()
    report = VerifyReport(root, checker.problems, checker.checked)
    report.problems += _cross_problems(root, {p.path for p in report.problems if p.severity == "error"})
    if quarantine and any(p.severity == "error" or p.kind in MOVABLE_NOTES for p in report.problems):
        _quarantine(report)
        moved = [p.path for p in report.problems if p.moved_to]
        report.invalidated = invalidate(root, moved, report.quarantine)
        done = set(report.invalidated)
        report.problems = [
            replace(p, message=f"{p.message}; invalidated, the next sweep reruns it") if p.key in done else p
            for p in report.problems
        ]
    return report
