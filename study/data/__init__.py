"""Datasets as seeded, normalised train / eval / test splits held in memory.

``load(name, root, seed)`` is the one entry point; :mod:`study.data.sources` documents
where files are looked for, :mod:`study.data.readers` reads their real formats, and
:mod:`study.data.splits` makes and normalises the splits.
"""

from study.data.own import register_dataset
from study.data.sources import DATASETS, DatasetEntry, default_root, entry, load, names
from study.data.splits import Split, Splits

__all__ = [
    "DATASETS",
    "DatasetEntry",
    "Split",
    "Splits",
    "default_root",
    "entry",
    "load",
    "names",
    "register_dataset",
]
