"""Which rows survive when a key was written more than once (a rerun, a retried unit).

Every row carries the rank of the source it came from: 0 for the compacted generation,
then 1, 2, ... for loose files in write order (mtime, then name). The rules:

- ``trials``: the newest row per ``run_key`` by ``finished_at`` (nulls oldest), ties
  broken by source rank, then by row order;
- ``steps``: for each ``run_key``, all rows of its highest-ranked source and none of
  the others, so a rerun replaces a trial's curve wholesale and never mixes two writes;
- ``scores``, ``oracle``, ``rank_quality``, ``activity``: the last row per natural key (:data:`KEYS`)
  in source order.

Compaction applies the same rules, so reading before and after it gives the same rows.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["KEYS", "ORDER", "needed_columns", "keep_mask", "sort_keys"]

# fmt: off
KEYS: dict[str, tuple[str, ...]] = {
    "trials": ("run_key",),
    "steps": ("run_key",),
    "scores": ("run_key", "tap", "level", "signal", "layer", "channel", "unit", "step"),
    "oracle": ("run_key", "unit", "step"),
    "rank_quality": ("run_key", "signal", "scope", "step"),
    "activity": ("run_key", "layer", "channel", "step"),
}
"""Columns whose values identify one logical row (``trials``/``steps``: one trial)."""

ORDER: dict[str, tuple[str, ...]] = {"trials": ("finished_at",)}
"""Extra columns the rule orders by within a key."""
# fmt: on


def needed_columns(table: str) -> list[str]:
    """Columns the dedup rule of ``table`` reads."""
    return [*KEYS[table], *ORDER.get(table, ())]


def sort_keys(table: str) -> list[tuple[str, str]]:
    """Row order of compacted parts: by natural key (``steps``: then by step)."""
    keys = list(KEYS[table]) + (["step"] if table == "steps" else [])
    return [(k, "ascending") for k in keys]


def _codes(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """Dense int64 codes of a column's values (null gets its own code)."""
    uniques = pc.unique(column)
    idx = pc.index_in(column, value_set=uniques, skip_nulls=True)
    return pc.fill_null(idx, len(uniques)).to_numpy(zero_copy_only=False).astype(np.int64)


def _group_codes(data: pa.Table, keys: tuple[str, ...]) -> np.ndarray:
    codes = _codes(data[keys[0]])
    for key in keys[1:]:
        other = _codes(data[key])
        combined = codes * (int(other.max(initial=0)) + 1) + other
        codes = np.unique(combined, return_inverse=True)[1].astype(np.int64)
    return codes


def _last_per_group(codes: np.ndarray, *order: np.ndarray) -> np.ndarray:
    """Mask of the last row of each code after a stable sort by (code, *order)."""
    perm = np.lexsort((*reversed(order), codes)) if order else np.argsort(codes, kind="stable")
    sorted_codes = codes[perm]
    last = np.ones(len(codes), dtype=bool)
    last[:-1] = sorted_codes[1:] != sorted_codes[:-1]
    mask = np.zeros(len(codes), dtype=bool)
    mask[perm[last]] = True
    return mask


def keep_mask(table: str, data: pa.Table, src: np.ndarray) -> np.ndarray | None:
    """Boolean mask of the rows of ``data`` that survive, or None when all do.

    ``src`` holds each row's source rank; rows of one source keep their file order.
    """
    n = data.num_rows
    if n == 0 or src.max() == 0:
        return None  # every row from the compacted generation: deduplicated when compacted
    codes = _group_codes(data, KEYS[table])
    if table == "steps":
        top = np.full(int(codes.max()) + 1, -1, dtype=np.int64)
        np.maximum.at(top, codes, src)
        mask = src == top[codes]
    elif table == "trials":
        ts = pc.fill_null(pc.cast(data["finished_at"], pa.int64()), np.iinfo(np.int64).min)
        ts = ts.to_numpy(zero_copy_only=False)
        mask = _last_per_group(codes, ts, src, np.arange(n))
    else:
        mask = _last_per_group(codes, src, np.arange(n))
    return None if mask.all() else mask
