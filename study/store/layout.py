"""Where things live in a store, and the file operations that keep it consistent.

``<root>/<table>/<key>.parquet`` are *loose* files (one per trial or work unit, written
by workers). ``<root>/<table>/_compacted/g-<N>/part-<i>.parquet`` is the *generation* N
written by ``compact``; the highest N is current, and switching to a new one is a single
directory rename, so readers see the old set of parts or the new one. Names starting
with ``.`` (temp files, staging folders) or ``_`` are never loose files.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from study.store.integrity import sources_body

__all__ = [
    "COMPACTED",
    "QUARANTINE",
    "SOURCES",
    "LooseFile",
    "loose_files",
    "generations",
    "current_generation",
    "parts",
    "generation_sources",
    "temp_path",
    "fsync_dir",
    "write_file_atomic",
]

COMPACTED = "_compacted"
"""Folder, inside a table folder, holding the compacted generations."""
QUARANTINE = "_quarantine"
"""Folder, at the store root, where ``verify(quarantine=True)`` moves bad files."""
SOURCES = ".sources.txt"
"""File, inside a generation, listing the loose-file stems (keys) folded into it."""
_GEN = "g-"


@dataclass(frozen=True)
class LooseFile:
    """A loose file as listed: its identity tells compaction whether it was rewritten since."""

    path: Path
    mtime_ns: int
    size: int
    ino: int

    def unchanged(self) -> bool:
        """True when ``path`` still is this very file (same inode, size and mtime)."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return False
        return (st.st_ino, st.st_size, st.st_mtime_ns) == (self.ino, self.size, self.mtime_ns)


def is_loose_name(name: str) -> bool:
    """A loose file's name: ``*.parquet``, not hidden (``.``) nor reserved (``_``)."""
    return name.endswith(".parquet") and not name.startswith((".", "_"))


def loose_files(folder: Path) -> list[LooseFile]:
    """Loose files of a table folder, oldest write first (mtime, then name).

    This order is the reader's ingestion order: a later file's rows win ties.
    """
    out = []
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return []
    for entry in entries:
        if not is_loose_name(entry.name):
            continue
        try:
            if not entry.is_file():
                continue
            st = entry.stat()
        except FileNotFoundError:  # removed since the listing (compaction, quarantine)
            continue
        out.append(LooseFile(Path(entry.path), st.st_mtime_ns, st.st_size, st.st_ino))
    out.sort(key=lambda f: (f.mtime_ns, f.path.name))
    return out


def generations(folder: Path) -> list[Path]:
    """Compacted generation folders of a table folder, oldest first."""
    comp = folder / COMPACTED
    try:
        names = os.listdir(comp)
    except (FileNotFoundError, NotADirectoryError):
        return []
    gens = [n for n in names if n.startswith(_GEN) and n[len(_GEN) :].isdigit()]
    return [comp / n for n in sorted(gens, key=lambda n: int(n[len(_GEN) :]))]


def current_generation(folder: Path) -> Path | None:
    """The current (highest) generation, or None before the first compaction."""
    gens = generations(folder)
    return gens[-1] if gens else None


def next_generation(folder: Path, current: Path | None) -> Path:
    """The name the generation after ``current`` gets."""
    n = int(current.name[len(_GEN) :]) + 1 if current is not None else 1
    return folder / COMPACTED / f"{_GEN}{n:06d}"


def parts(generation: Path) -> list[Path]:
    """The part files of a generation, in order (raises if the generation vanished)."""
    names = os.listdir(generation)
    return [generation / n for n in sorted(names) if n.startswith("part-") and n.endswith(".parquet")]


def generation_sources(generation: Path | None) -> set[str]:
    """Keys (loose-file stems) folded into ``generation``."""
    if generation is None:
        return set()
    try:
        text = (generation / SOURCES).read_bytes()
    except FileNotFoundError:
        return set()
    return {line for line in sources_body(text).decode(errors="replace").splitlines() if line}


def temp_path(path: Path, tag: str = "tmp") -> Path:
    """A hidden, writer-unique name next to ``path`` (readers and globs skip it)."""
    return path.with_name(f".{path.name}.{uuid.uuid4().hex}.{tag}")


def fsync_dir(path: Path) -> None:
    """Persist a folder's entries (a rename is durable only once its folder is synced)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some filesystems refuse fsync on folders; the rename still happened
        pass
    finally:
        os.close(fd)


def write_file_atomic(path: Path, write: Callable[[BinaryIO], object], *, sync_dir: bool = True) -> Path:
    """Call ``write(fh)`` on a hidden temp file, fsync it, then ``os.replace`` it to ``path``.

    A reader sees the old file or the new one, never a partial one; a crash leaves at
    most a dot-prefixed temp file, which ``verify`` reports once it is stale. The file is
    opened for reading too (``w+b``), so a writer can hash what it wrote.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        with open(tmp, "w+b") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    if sync_dir:
        fsync_dir(path.parent)
    return path
