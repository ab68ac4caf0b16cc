"""Checking a store for files that do not belong, and moving them aside on request.

Readers already skip such files (with a warning); ``verify`` names them all in one
place so a person can decide. It reads every Parquet file of every table in full, so
corruption inside a file (not only a truncated footer) is found too.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.parquet as pq

from study.store.layout import COMPACTED, QUARANTINE, SOURCES, generations, is_loose_name
from study.store.maintenance import require_store
from study.store.read import check_schema
from study.store.schema import TABLES

__all__ = ["Problem", "VerifyReport", "verify", "KINDS"]

KINDS = {
    "unreadable": "a Parquet file that cannot be read (truncated, corrupt)",
    "foreign": "a file that is not part of the store: not Parquet, another schema, or outside a table folder",
    "stale_temp": "a temp file or staging folder older than the threshold (a writer that died)",
    "stale_generation": "a superseded compacted generation a compaction did not remove",
}
"""Problem kinds; the last two are ``info``: harmless to readers, but clutter."""


@dataclass(frozen=True)
class Problem:
    """One file (or folder) that ``verify`` flags."""

    path: Path
    kind: str
    message: str
    severity: str = "error"
    moved_to: Path | None = None


@dataclass
class VerifyReport:
    """Everything ``verify`` found; ``ok`` is False when any problem is an ``error``."""

    root: Path
    problems: list[Problem] = field(default_factory=list)
    files_checked: int = 0
    quarantine: Path | None = None

    @property
    def ok(self) -> bool:
        return not any(p.severity == "error" for p in self.problems)

    def lines(self) -> list[str]:
        """One line per problem (paths relative to the root), then a summary line."""
        out = []
        for p in self.problems:
            where = p.path.relative_to(self.root) if p.path.is_relative_to(self.root) else p.path
            moved = f" [moved to {p.moved_to}]" if p.moved_to else ""
            out.append(f"{p.severity:<5} {p.kind:<16} {where}: {p.message}{moved}")
        n_err = sum(p.severity == "error" for p in self.problems)
        out.append(
            f"{self.files_checked} Parquet files checked in {self.root}: {n_err} errors, "
            f"{len(self.problems) - n_err} notes"
            + (f"; moved to {self.quarantine}" if self.quarantine else "")
        )
        return out


def _check_parquet(path: Path, table: str) -> Problem | None:
    try:
        pf = pq.ParquetFile(path)
        reason = check_schema(pf.schema_arrow, table)
        if reason:
            return Problem(path, "foreign", f"{reason} (not a {table!r} file)")
        for i in range(pf.metadata.num_row_groups):
            pf.read_row_group(i)
    except FileNotFoundError:
        return None  # removed while checking (a compaction)
    except Exception as err:  # any failure to read is exactly what verify reports
        first = (str(err).strip().splitlines() or [""])[0]
        return Problem(path, "unreadable", f"{type(err).__name__}: {first}")
    return None


def _all_files(path: Path) -> list[Path]:
    if not path.is_dir():
        return [path]
    return sorted(Path(d) / f for d, _, files in os.walk(path) for f in files)


class _Checker:
    def __init__(self, root: Path, stale_after_s: float) -> None:
        self.root, self.cutoff = root, time.time() - stale_after_s
        self.problems: list[Problem] = []
        self.pending: list[tuple[Path, str]] = []
        self.checked = 0

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
        self.pending.append((path, table))

    def check_pending(self) -> None:
        """Read the collected Parquet files, a few at a time (pyarrow releases the GIL)."""
        with ThreadPoolExecutor(max_workers=min(4, (os.cpu_count() or 1) + 1)) as pool:
            found = list(pool.map(lambda job: _check_parquet(*job), self.pending))
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


def verify(root: str | Path, *, quarantine: bool = False, stale_after_s: float = 3600.0) -> VerifyReport:
    """Find unreadable and foreign files, stale temp files and superseded generations.

    Parameters
    ----------
    root
        Store root; must exist.
    quarantine
        Move every problem file or folder to ``<root>/_quarantine/<UTC time>/``, keeping
        its path relative to the root. Temp files count only once older than
        ``stale_after_s``, so live writers are never disturbed. Without it nothing changes.
    stale_after_s
        Age (by mtime) from which a temp file, staging folder or old generation is stale.

    Returns
    -------
    VerifyReport
        ``problems`` (path, kind in :data:`KINDS`, message, severity ``error``/``info``,
        ``moved_to``), ``files_checked`` and ``ok``.
    """
    root = require_store(root).absolute()
    checker = _Checker(root, stale_after_s)
    checker.store()
    checker.check_pending()
    report = VerifyReport(root, checker.problems, checker.checked)
    if quarantine and report.problems:
        _quarantine(report)
    return report
