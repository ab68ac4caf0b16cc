"""The benchmarks' results tables: CSV files that later runs append to and compare against."""

from __future__ import annotations

import csv
import os
from pathlib import Path


def append_rows(out: Path, rows: list[dict]) -> None:
    """Append to the results table, widening its header when a run adds columns, so rows
    from runs with different measures stay aligned."""
    out.parent.mkdir(parents=True, exist_ok=True)
    old = list(csv.DictReader(out.open(newline=""))) if out.exists() else []
    keys = sorted({k for r in old + rows for k in r})
    tmp = out.with_name(f".{out.name}.tmp")
    with tmp.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, keys)
        writer.writeheader()
        writer.writerows(old + rows)
    os.replace(tmp, out)
