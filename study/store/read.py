"""Reading a table: compacted generation plus loose files, one explicit schema, deduplicated.

One ``pyarrow.dataset`` scan over the exact file list (never a folder crawl, so temp
files and foreign folders are never opened) reads every file cast to the table's
schema. A file that cannot be read, or whose own schema is not the table's, is skipped
with a :class:`StoreWarning`; every other file is still read. A read is a consistent
snapshot: if a compaction swaps generations meanwhile, the read starts over.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from study.store.dedup import KEYS, keep_mask, needed_columns
from study.store.layout import LooseFile, current_generation, loose_files, parts
from study.store.schema import TABLES, schema_of
from study.store.view import VIEWS, read_runs

__all__ = ["StoreWarning", "Snapshot", "Scan", "check_schema", "read_table", "load", "scan_folder", "skipped"]

_FS = pafs.LocalFileSystem()
_FMT = ds.ParquetFileFormat()
_ATTEMPTS = 10

Filters = pc.Expression | Sequence


class StoreWarning(UserWarning):
    """A store file was skipped while reading (``prunetax store verify`` reports it)."""


def _compatible(found: pa.DataType, expected: pa.DataType) -> bool:
    if found == expected or pa.types.is_null(found):
        return True
    kinds = (pa.types.is_string, pa.types.is_large_string), (pa.types.is_integer,), (pa.types.is_floating,)
    if any(any(k(found) for k in kind) and any(k(expected) for k in kind) for kind in kinds):
        return True
    return pa.types.is_timestamp(found) and pa.types.is_timestamp(expected)


def check_schema(physical: pa.Schema, table: str) -> str | None:
    """Why a file's own schema is not ``table``'s (None when it is).

    Columns may be missing (files of an older schema version read them as null); any
    column present must be in the schema with a castable type, and the file must carry
    prunetax's ``prunetax_table`` metadata naming ``table``.
    """
    owner = (physical.metadata or {}).get(b"prunetax_table")
    if owner is None:
        return "not written by prunetax (no `prunetax_table` in its schema metadata)"
    if owner.decode(errors="replace") != table:
        return f"holds the {owner.decode(errors='replace')!r} table, not {table!r}"
    schema = schema_of(table)
    if physical.equals(schema):  # the common case, checked in C++
        return None
    types = dict(zip(schema.names, schema.types, strict=True))
    extra = [n for n in physical.names if n not in types]
    if extra:
        return f"has columns not in the {table!r} schema: {', '.join(extra)}"
    for f in physical:
        if not _compatible(f.type, types[f.name]):
            return f"column {f.name!r} is {f.type}, the schema says {types[f.name]}"
    if "run_key" not in types or physical.get_field_index("run_key") < 0:
        return "has no run_key column"
    return None


@dataclass(frozen=True)
class Snapshot:
    """The files of a table at one moment: the current generation's parts, then loose files."""

    generation: Path | None
    parts: list[Path]
    loose: list[LooseFile]

    @property
    def paths(self) -> list[Path]:
        return [*self.parts, *(f.path for f in self.loose)]

    def rank(self, index: int) -> int:
        """Source rank of file ``index``: 0 for every part, then 1, 2, ... per loose file."""
        return 0 if index < len(self.parts) else index - len(self.parts) + 1


def snapshot(folder: Path) -> Snapshot | None:
    """List ``folder``; None when the generation vanished while listing (retry)."""
    gen = current_generation(folder)
    try:
        gen_parts = parts(gen) if gen is not None else []
    except FileNotFoundError:
        return None
    return Snapshot(gen, gen_parts, loose_files(folder))


@dataclass
class Scan:
    """Rows of a snapshot before deduplication, each with its source rank."""

    snapshot: Snapshot
    data: pa.Table
    src: np.ndarray
    bad: dict[Path, str] = field(default_factory=dict)
    vanished: set[Path] = field(default_factory=set)

    def newest(self, table: str) -> pa.Table:
        """The rows that survive deduplication (:func:`study.store.dedup.keep_mask`)."""
        mask = keep_mask(table, self.data, self.src)
        return self.data if mask is None else self.data.filter(mask)

    def good_loose(self) -> list[LooseFile]:
        """Loose files that were read (neither skipped nor vanished)."""
        return [f for f in self.snapshot.loose if f.path not in self.bad and f.path not in self.vanished]


def _dataset(frags: list, schema: pa.Schema) -> ds.Dataset:
    return ds.FileSystemDataset(frags, schema, _FMT, _FS)


def _reason(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"unreadable: {type(err).__name__}: {text[0] if text else ''}"


def _scan_files(snap: Snapshot, table: str, columns: list[str], expr: pc.Expression | None) -> Scan:
    schema = schema_of(table)
    paths = snap.paths
    frags = [_FMT.make_fragment(str(p), filesystem=_FS) for p in paths]
    index = {str(p): i for i, p in enumerate(paths)}
    pieces: list[tuple[int, pa.RecordBatch]] = []
    bad: dict[Path, str] = {}
    vanished: set[Path] = set()
    scan_kw = {"columns": columns, "filter": expr}
    try:
        for tagged in _dataset(frags, schema).scanner(**scan_kw).scan_batches():
            pieces.append((index[tagged.fragment.path], tagged.record_batch))
    except (OSError, pa.ArrowException):  # a bad or vanished file: read file by file
        pieces = []
        for i, frag in enumerate(frags):
            try:
                pieces += [(i, b) for b in _dataset([frag], schema).scanner(**scan_kw).to_batches()]
            except FileNotFoundError:
                vanished.add(paths[i])
            except (OSError, pa.ArrowException) as err:
                bad[paths[i]] = _reason(err)
    for i, frag in enumerate(frags):
        if paths[i] in bad or paths[i] in vanished:
            continue
        try:
            reason = check_schema(frag.physical_schema, table)
        except (OSError, pa.ArrowException) as err:
            reason = _reason(err)
        if reason:
            bad[paths[i]] = reason
    skip = {index[str(p)] for p in [*bad, *vanished]}
    pieces = [(i, b) for i, b in pieces if i not in skip]
    out_schema = pa.schema([schema.field(c) for c in columns], metadata=schema.metadata)
    data = pa.Table.from_batches([b for _, b in pieces], schema=out_schema)
    src = np.concatenate([np.full(b.num_rows, snap.rank(i), dtype=np.int64) for i, b in pieces] or [[]])
    return Scan(snap, data, src.astype(np.int64), bad, vanished)


def scan_folder(
    folder: Path,
    table: str,
    columns: list[str],
    expr: pc.Expression | None = None,
    select: Callable[[Path], bool] | None = None,
) -> Scan:
    """Read a consistent snapshot of ``folder``: retried if a compaction swapped generations.

    ``select`` keeps only some of its files (parts and loose files) in the snapshot.
    """
    for attempt in range(_ATTEMPTS):
        snap = snapshot(folder)
        if snap is not None and select is not None:
            snap = Snapshot(
                snap.generation,
                [p for p in snap.parts if select(p)],
                [f for f in snap.loose if select(f.path)],
            )
        if snap is not None:
            result = _scan_files(snap, table, columns, expr)
            stable = current_generation(folder) == snap.generation
            if stable and not result.vanished.intersection(snap.parts):
                return result
        time.sleep(0.01 * (attempt + 1))
    from taxonomy.errors import PrunetaxError

    raise PrunetaxError(
        f"could not read a consistent snapshot of {folder}: its compacted generation changed "
        f"{_ATTEMPTS} times while reading. Is a compaction running in a loop?"
    )


_SKIPPED: dict[Path, dict[Path, str]] = {}


def skipped(root: str | Path) -> dict[Path, str]:
    """Files under ``root`` that reads in this process skipped, and why (those still there)."""
    found = _SKIPPED.get(Path(root).absolute(), {})
    return {p: why for p, why in list(found.items()) if p.exists()}


def warn_skipped(root: Path, bad: dict[Path, str]) -> None:
    """One :class:`StoreWarning` per skipped file, naming it and the command that reports it;
    :func:`skipped` remembers them for :func:`study.store.health`."""
    if bad:
        _SKIPPED.setdefault(Path(root).absolute(), {}).update({p.absolute(): r for p, r in bad.items()})
    for path, reason in bad.items():
        warnings.warn(
            f"prunetax store: skipped {path}: {reason}. `prunetax store verify {root}` reports it "
            "(`--quarantine` moves it aside).",
            StoreWarning,
            stacklevel=3,
        )


def _plan(
    table: str, columns: Sequence[str] | None, filters: Filters | None
) -> tuple[list[str], list[str], pc.Expression | None, pc.Expression | None]:
    """Columns to read, the filter pushed into the scan, the filter applied after dedup."""
    from taxonomy.errors import invalid

    schema = schema_of(table)
    wanted = list(schema.names if columns is None else columns)
    for name in wanted:
        if name not in schema.names:
            raise invalid("columns", name, schema.names, hint=f"(columns of the {table!r} table)")
    push = post = None
    extra: list[str] = []
    if isinstance(filters, pc.Expression):
        post, extra = filters, list(schema.names)  # referenced columns unknown: read them all
    elif filters:
        dnf = [filters] if isinstance(filters[0], tuple) else list(filters)
        used = {f[0] for conj in dnf for f in conj}
        for name in used - set(schema.names):
            raise invalid("filters column", name, schema.names)
        expr = pq.filters_to_expression(filters)
        if used <= set(KEYS[table]):  # selects whole dedup groups: safe before dedup
            push = expr
        else:
            post, extra = expr, sorted(used)
    need = set(wanted) | set(needed_columns(table)) | set(extra)
    return wanted, [n for n in schema.names if n in need], push, post


def read_table(
    root: str | Path,
    table: str,
    columns: Sequence[str] | None = None,
    filters: Filters | None = None,
) -> pa.Table:
    """:func:`load` as a pyarrow Table (the schema's types, rows deduplicated)."""
    if table in VIEWS:
        return read_runs(root, columns, filters)
    if table not in TABLES:
        from taxonomy.errors import invalid

        raise invalid("table", table, [*TABLES, *VIEWS])
    wanted, read, push, post = _plan(table, columns, filters)
    root = Path(root)
    result = scan_folder(root / table, table, read, push)
    warn_skipped(root, result.bad)
    data = result.newest(table)
    if post is not None:
        data = data.filter(post)
    return data.select(wanted)


def load(
    root: str | Path,
    table: str,
    columns: Sequence[str] | None = None,
    filters: Filters | None = None,
) -> pd.DataFrame:
    """All rows of ``table`` under ``root``, deduplicated, with the table's explicit schema.

    Parameters
    ----------
    root
        Store root (``<root>/<table>/...``); a missing folder reads as an empty table.
    table
        ``trials``, ``steps``, ``scores``, ``oracle`` or ``rank_quality``; or the view
        ``runs``: every steps row with its trial's identifying columns
        (:mod:`study.store.view`).
    columns
        Read only these columns (default: all, in schema order).
    filters
        Rows to keep: pyarrow/pandas DNF (``[("status", "==", "ok")]``, lists of such
        lists for OR) or a ``pyarrow.compute`` expression. Filters are applied after
        deduplication, so they never resurrect an older row; a DNF filter on the
        table's key columns only (e.g. ``run_key``) is pushed into the scan.

    Returns
    -------
    DataFrame
        One row per logical row (see :mod:`study.store.dedup`): compacted rows first,
        then loose files in write order. Files that cannot be read are skipped with a
        :class:`StoreWarning`.
    """
    return read_table(root, table, columns, filters).to_pandas()
