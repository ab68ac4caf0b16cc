"""The Parquet results store: ``<root>/<table>/<key>.parquet``, one file per trial or work unit.

Writes are atomic (dot-prefixed temp file in the same folder, fsync, ``os.replace``), so
a reader never sees a partial file and a crash never corrupts the store. A trial is
*stored* once its ``trials`` row exists; its ``steps`` are written first. Readers cast
every file to the explicit schema, skip (with a warning) files that do not belong, and
deduplicate reruns (:mod:`study.store.dedup`). Every file carries a sha256 of its own
bytes (:mod:`study.store.integrity`): ``verify`` proves integrity with it and checks that
every ok trial has its steps; ``health`` is its cheap cousin for reports. ``compact``
folds small files into a few large ones. Torch-free: the ``analysis`` package reads the
store through this module.
"""

from study.store.checks import Problem, VerifyReport, verify
from study.store.health import StoreHealth, health
from study.store.io import Store, load, write_table
from study.store.maintenance import CompactResult, TableSummary, compact, export, summary
from study.store.read import StoreWarning, read_table
from study.store.schema import SCHEMA_VERSION, TABLES

__all__ = [
    "Store",
    "load",
    "read_table",
    "write_table",
    "compact",
    "export",
    "summary",
    "verify",
    "health",
    "StoreHealth",
    "CompactResult",
    "TableSummary",
    "Problem",
    "VerifyReport",
    "StoreWarning",
    "SCHEMA_VERSION",
    "TABLES",
]
