"""The Parquet results store: ``<root>/<table>/<key>.parquet``, one file per trial or work unit.

Writes are atomic (dot-prefixed temp file in the same folder, fsync, ``os.replace``), so
a reader never sees a partial file and a crash never corrupts the store. A trial is
*stored* once its ``trials`` row exists; its ``steps`` are written first. Readers cast
every file to the explicit schema, skip (with a warning) files that do not belong, and
deduplicate reruns (:mod:`study.store.dedup`). ``compact`` folds small files into a
few large ones; ``verify`` finds files that do not belong. Torch-free: the ``analysis``
package reads the store through this module.
"""

from study.store.checks import Problem, VerifyReport, verify
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
    "CompactResult",
    "TableSummary",
    "Problem",
    "VerifyReport",
    "StoreWarning",
    "SCHEMA_VERSION",
    "TABLES",
]
