"""Atomic writes, and the :class:`Store` handle the trial runner and sweeps use."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from study.store.integrity import write_parquet
from study.store.layout import current_generation, generation_sources, is_loose_name, write_file_atomic
from study.store.read import Filters, load, scan_folder, warn_skipped
from study.store.schema import schema_of

__all__ = ["Store", "write_table", "load"]


def _to_table(rows: list[dict] | pd.DataFrame, schema: pa.Schema) -> pa.Table:
    if isinstance(rows, pd.DataFrame):
        # a frame read back from the store holds nullable integers as floats with NaN
        rows = rows.astype(object).where(rows.notna(), None).to_dict("records")
    unknown = {k for row in rows for k in row} - set(schema.names)
    if unknown:
        raise ValueError(f"columns not in the schema: {sorted(unknown)}")
    return pa.Table.from_pylist(list(rows), schema=schema)


def write_table(path: Path, rows: list[dict] | pd.DataFrame, table: str) -> Path:
    """Write ``rows`` to ``path`` atomically, cast to ``table``'s schema.

    The data goes to a dot-prefixed temp file in the same folder, is fsynced, then
    ``os.replace``\\ d over ``path`` and the folder is fsynced: readers see the old file
    or the new one, never a partial one, and a crash leaves no half-written ``.parquet``.
    The file carries the sha256 of its own bytes (:mod:`study.store.integrity`).
    """
    return write_file_atomic(Path(path), write_parquet(_to_table(rows, schema_of(table))))


class Store:
    """A results store rooted at ``root`` (created on first write)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).absolute()

    def path(self, table: str, key: str) -> Path:
        """The loose file of ``key`` in ``table``."""
        return self.root / table / f"{key}.parquet"

    def write(self, table: str, key: str, rows: list[dict] | pd.DataFrame) -> Path:
        return write_table(self.path(table, key), rows, table)

    def write_trial(self, trial: dict, steps: list[dict]) -> Path:
        """Store one trial: its steps first, then the ``trials`` row that marks it stored."""
        key = str(trial["run_key"])
        if steps:
            self.write("steps", key, steps)
        return self.write("trials", key, [trial])

    def keys(self, table: str = "trials") -> set[str]:
        """Keys written to ``table``: loose file stems and those folded into its compacted data."""
        folder = self.root / table
        if not folder.is_dir():
            return set()
        loose = {p.stem for p in folder.iterdir() if is_loose_name(p.name)}
        return loose | generation_sources(current_generation(folder))

    def has(self, table: str, key: str) -> bool:
        """Whether ``key`` was written to ``table`` (as a loose file or before a compaction)."""
        return self.path(table, key).exists() or key in generation_sources(
            current_generation(self.root / table)
        )

    def status(self, keys: Collection[str]) -> dict[str, str]:
        """The newest ``trials`` status of each of ``keys`` that has a row.

        Reads only the keys' own loose files and the compacted parts (a run_key filter
        the parts' statistics answer), not the whole table: cheap for one work unit.
        """
        keys, folder = set(keys), self.root / "trials"
        if not keys or not folder.is_dir():
            return {}
        scan = scan_folder(
            folder,
            "trials",
            ["run_key", "status", "finished_at"],
            pc.field("run_key").isin(sorted(keys)),
            select=lambda p: p.parent != folder or p.stem in keys,
        )
        warn_skipped(self.root, scan.bad)
        data = scan.newest("trials")
        return dict(zip(data["run_key"].to_pylist(), data["status"].to_pylist(), strict=True))

    def done(self, status: Iterable[str] = ("ok",)) -> set[str]:
        """run_keys whose newest trial row has one of ``status`` (reads three columns)."""
        trials = self.load("trials", columns=["run_key", "status"])
        return set(trials.loc[trials["status"].isin(list(status)), "run_key"])

    def load(
        self, table: str, columns: Sequence[str] | None = None, filters: Filters | None = None
    ) -> pd.DataFrame:
        """:func:`study.store.load` of this store."""
        return load(self.root, table, columns, filters)
