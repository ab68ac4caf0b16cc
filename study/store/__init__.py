"""The Parquet results store: ``<root>/<table>/<run_key>.parquet``, one file per trial.

Writes are atomic (dot-prefixed temp file in the same folder, fsync, ``os.replace``), so
a reader never sees a partial file and a crash never corrupts the store. A trial is
*stored* once its ``trials`` row exists; its ``steps`` are written first. Readers cast
every file to the explicit schema and keep the newest row per key. Torch-free: the
``analysis`` package reads the store through this module.
"""

from study.store.io import Store, load, write_table
from study.store.schema import SCHEMA_VERSION, TABLES

__all__ = ["Store", "load", "write_table", "SCHEMA_VERSION", "TABLES"]
