"""Compaction (many small files -> a few large ones), export (CSV or Parquet) and a per-table summary.

Compaction is a maintenance step for one process at a time (a second one running at
the same moment fails cleanly and changes nothing). Writers may keep writing: files
that arrive meanwhile are not folded in and stay readable.
"""

from __future__ import annotations

import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from study.store.dedup import needed_columns, sort_keys
from study.store.integrity import damaged, sources_text, write_parquet
from study.store.layout import (
    COMPACTED,
    SOURCES,
    LooseFile,
    fsync_dir,
    generation_sources,
    generations,
    next_generation,
    temp_path,
    write_file_atomic,
)
from study.store.read import Filters, Scan, read_table, scan_folder, snapshot, warn_skipped
from study.store.schema import TABLES, schema_of

__all__ = ["CompactResult", "TableSummary", "compact", "export", "summary", "require_store"]

ROWS_PER_PART = 8_000_000
ROW_GROUP_SIZE = 1_000_000


def require_store(root: str | Path, *, tables: bool = True) -> Path:
    """``root`` as a Path; a clear error unless it is an existing folder that holds at least
    one table folder (``tables``; a store gets them on its first write)."""
    from taxonomy.errors import PrunetaxError

    path = Path(root)
    hint = "give the STORE path a sweep or `prunetax run --store` wrote to."
    if not path.is_dir():
        raise PrunetaxError(f"store folder {str(path)!r} does not exist (or is not a folder); {hint}")
    if tables and not any((path / t).is_dir() for t in TABLES):
        raise PrunetaxError(
            f"{str(path)!r} is not a results store: it holds none of the table folders "
            f"({', '.join(f'{t}/' for t in TABLES)}); {hint}"
        )
    return path


@dataclass(frozen=True)
class CompactResult:
    """What ``compact`` did to one table (``rows_*`` count rows after deduplication)."""

    table: str
    files_before: int
    rows_before: int
    raw_rows_before: int
    files_after: int
    rows_after: int
    generation: str | None
    skipped: tuple[str, ...] = ()
    kept: tuple[str, ...] = ()

    def line(self) -> str:
        text = (
            f"{self.table}: {self.files_before} files, {self.rows_before} rows "
            f"({self.raw_rows_before} before dedup) -> {self.files_after} files, {self.rows_after} rows"
        )
        if self.generation is None:
            text += " (nothing to compact)"
        if self.skipped:
            text += f"; {len(self.skipped)} bad files left in place (see `prunetax store verify`)"
        if self.kept:
            text += f"; {len(self.kept)} files rewritten meanwhile kept"
        return text


def _write_parts(data: pa.Table, staging: Path, sources: set[str]) -> int:
    staging.mkdir(parents=True)
    n_parts = max(1, -(-data.num_rows // ROWS_PER_PART))
    for i in range(n_parts):
        piece = data.slice(i * ROWS_PER_PART, ROWS_PER_PART)
        write_file_atomic(
            staging / f"part-{i:05d}.parquet", write_parquet(piece, ROW_GROUP_SIZE), sync_dir=False
        )
    text = sources_text(sources)
    write_file_atomic(staging / SOURCES, lambda fh: fh.write(text), sync_dir=False)
    fsync_dir(staging)
    return n_parts


def _remove_ingested(f: LooseFile) -> bool:
    """Delete a folded-in loose file unless it was rewritten since it was read.

    The file is first renamed aside, so the check and the delete see the same file; a
    newer write found there is linked back (never over an even newer one).
    """
    trash = temp_path(f.path, "del.tmp")
    try:
        os.rename(f.path, trash)
    except FileNotFoundError:
        return True
    st = os.stat(trash)
    if (st.st_ino, st.st_size, st.st_mtime_ns) == (f.ino, f.size, f.mtime_ns):
        trash.unlink()
        return True
    try:
        os.link(trash, f.path)
    except FileExistsError:
        pass
    except OSError:  # no hard links on this filesystem
        if not f.path.exists():
            os.replace(trash, f.path)
    trash.unlink(missing_ok=True)
    return False


def _scan_checked(folder: Path, table: str, columns: list[str]) -> Scan:
    """:func:`scan_folder` where a file whose checksum fails counts as unreadable."""
    scan = scan_folder(folder, table, columns)
    sources = [scan.snapshot.generation / SOURCES] if scan.snapshot.generation else []
    bad = damaged([*(p for p in scan.snapshot.paths if p not in scan.bad), *sources])
    if not bad:
        return scan
    scan = scan_folder(folder, table, columns, select=lambda p: p not in bad)
    scan.bad.update(bad)
    return scan


def compact(root: str | Path, table: str) -> CompactResult:
    """Fold ``table``'s loose files and current generation into a new generation.

    Rows are deduplicated as :func:`study.store.load` does and sorted by key; parts hold
    up to 8 M rows in 1 M-row row groups. The new parts are written into a hidden staging
    folder and fsynced, then the folder is renamed to ``g-<N+1>`` (one atomic step: a
    reader sees the old generation or the new one); only then are the folded-in loose
    files and older generations deleted. Files that could not be read, or whose checksum
    fails, stay where they are (reported); a damaged compacted file stops the compaction.
    """
    from taxonomy.errors import PrunetaxError

    schema = schema_of(table)
    root = require_store(root)
    folder = root / table
    scan = _scan_checked(folder, table, list(schema.names))
    snap, good = scan.snapshot, scan.good_loose()
    broken = [p for p in scan.bad if COMPACTED in p.parts]
    if broken:  # a new generation would drop their rows, and removing the old one delete them
        raise PrunetaxError(
            f"compacted file {broken[0]} is damaged ({scan.bad[broken[0]]}); run "
            f"`prunetax store verify {root} --quarantine` to set it aside, then compact again"
        )
    warn_skipped(root, scan.bad)
    data = scan.newest(table)
    files_before = len(snap.paths)
    stale = [g for g in generations(folder) if g != snap.generation]
    if not good and not stale:
        return CompactResult(
            table, files_before, data.num_rows, scan.data.num_rows, files_before, data.num_rows, None,
            tuple(str(p) for p in scan.bad),
        )  # fmt: skip
    data = data.sort_by(sort_keys(table)).combine_chunks()
    staging = folder / COMPACTED / f".staging-{uuid.uuid4().hex}"
    sources = generation_sources(snap.generation) | {f.path.stem for f in good}
    try:
        n_parts = _write_parts(data, staging, sources)
        new = next_generation(folder, snap.generation)
        if generations(folder)[-1:] != ([snap.generation] if snap.generation else []):
            raise PrunetaxError(f"another compaction of {folder} finished meanwhile; run it again")
        try:
            os.rename(staging, new)
        except OSError as err:
            raise PrunetaxError(f"another compaction of {folder} is running ({err}); run it again") from err
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    fsync_dir(new.parent)
    kept = tuple(str(f.path) for f in good if not _remove_ingested(f))
    for old in generations(folder):
        if old != new:
            shutil.rmtree(old, ignore_errors=True)
    fsync_dir(folder)
    after = snapshot(folder)
    files_after = len(after.paths) if after is not None else n_parts
    return CompactResult(
        table, files_before, int(data.num_rows), scan.data.num_rows, files_after, int(data.num_rows),
        new.name, tuple(str(p) for p in scan.bad), kept,
    )  # fmt: skip


EXPORT_FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
"""File extensions ``export`` writes, and the format each one means."""


def _export_target(root: Path, out: Path) -> str:
    """The format for ``out``; a clear error for an unknown extension, a folder, or a path
    inside the store (an export there would become a store file)."""
    from taxonomy.errors import PrunetaxError

    fmt = EXPORT_FORMATS.get(out.suffix.lower())
    if fmt is None:
        raise PrunetaxError(
            f"`--out` must end in {', '.join(EXPORT_FORMATS)} (the format follows the extension); "
            f"got {str(out)!r}."
        )
    if out.is_dir():
        raise PrunetaxError(f"`--out` {str(out)!r} is a folder; give a file name such as {out / 'runs.csv'}.")
    if out.absolute().is_relative_to(root.absolute()):
        raise PrunetaxError(
            f"`--out` {str(out)!r} is inside the store {str(root)!r}; write the export elsewhere."
        )
    return fmt


def export(
    root: str | Path,
    table: str,
    out: str | Path,
    columns: list[str] | None = None,
    filters: Filters | None = None,
) -> int:
    """Write the deduplicated ``table`` (or the ``runs`` view) to ``out``, atomically.

    The format follows the extension (:data:`EXPORT_FORMATS`: CSV or zstd Parquet).
    Everything is checked before anything is read or written. Returns the row count.
    """
    root, out = require_store(root), Path(out)
    fmt = _export_target(root, out)
    data = read_table(root, table, columns, filters)
    if fmt == "parquet":
        write = lambda fh: pq.write_table(data, fh, compression="zstd")  # noqa: E731
    else:
        write = lambda fh: data.to_pandas().to_csv(fh, index=False)  # noqa: E731
    write_file_atomic(out, write, sync_dir=False)
    return data.num_rows


@dataclass(frozen=True)
class TableSummary:
    """One table of a store at a glance (``rows`` after deduplication)."""

    table: str
    loose_files: int
    compacted_parts: int
    raw_rows: int
    rows: int
    run_keys: int
    skipped_files: int
    ok: int | None = None
    failed: int | None = None
    lost: int | None = None


def summary(root: str | Path) -> list[TableSummary]:
    """Files, rows and run_keys of every table (``trials``: ok/failed counts too)."""
    root = require_store(root)
    out = []
    for table in TABLES:
        cols = needed_columns(table) + (["status"] if table == "trials" else [])
        scan = scan_folder(root / table, table, [n for n in schema_of(table).names if n in cols])
        data = scan.newest(table)
        status = None
        if table == "trials":
            status = data["status"].to_numpy(zero_copy_only=False)
        out.append(
            TableSummary(
                table,
                len(scan.snapshot.loose),
                len(scan.snapshot.parts),
                scan.data.num_rows,
                data.num_rows,
                pc.count_distinct(data["run_key"]).as_py(),
                len(scan.bad),
                None if status is None else int((status == "ok").sum()),
                None if status is None else int((status == "failed").sum()),
                None if status is None else int((status == "lost").sum()),
            )
        )
    return out
