"""Atomic writes and schema-enforcing reads of the results store."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from study.store.schema import schema_of

__all__ = ["Store", "write_table", "load"]


def _to_table(rows: list[dict] | pd.DataFrame, schema: pa.Schema) -> pa.Table:
    if isinstance(rows, pd.DataFrame):
        rows = rows.to_dict("records")
    unknown = {k for row in rows for k in row} - set(schema.names)
    if unknown:
        raise ValueError(f"columns not in the schema: {sorted(unknown)}")
    return pa.Table.from_pylist(list(rows), schema=schema)


def write_table(path: Path, rows: list[dict] | pd.DataFrame, table: str) -> Path:
    """Write ``rows`` to ``path`` atomically, cast to ``table``'s schema."""
    data = _to_table(rows, schema_of(table))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "wb") as fh:
            pq.write_table(data, fh, compression="zstd")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


class Store:
    """A results store rooted at ``root`` (created on first write)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).absolute()

    def path(self, table: str, key: str) -> Path:
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
        """Keys (file stems) present in ``table``."""
        folder = self.root / table
        if not folder.is_dir():
            return set()
        return {p.stem for p in folder.glob("*.parquet") if not p.name.startswith((".", "_"))}

    def done(self, status: Iterable[str] = ("ok",)) -> set[str]:
        """run_keys whose trial is stored with one of ``status``."""
        if not self.keys("trials"):
            return set()
        trials = self.load("trials", columns=["run_key", "status"])
        return set(trials.loc[trials["status"].isin(list(status)), "run_key"])

    def load(self, table: str, columns: list[str] | None = None) -> pd.DataFrame:
        return load(self.root, table, columns)


def load(root: str | Path, table: str, columns: list[str] | None = None) -> pd.DataFrame:
    """All rows of ``table`` under ``root`` with the explicit schema (empty frame if none)."""
    schema = schema_of(table)
    folder = Path(root) / table
    files = (
        sorted(p for p in folder.glob("*.parquet") if not p.name.startswith((".", "_")))
        if folder.is_dir()
        else []
    )
    if not files:
        return (
            schema.empty_table().to_pandas()
            if columns is None
            else schema.empty_table().select(columns).to_pandas()
        )
    import pyarrow.dataset as ds

    dataset = ds.dataset([str(f) for f in files], format="parquet", schema=schema)
    return dataset.to_table(columns=columns).to_pandas()
