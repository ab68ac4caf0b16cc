"""Checksums that make every store file prove its own content.

A Parquet file carries the sha256 of its whole byte content in its key-value metadata
(:data:`KEY`). The digest cannot cover itself, so the writer first writes the file with a
fixed 64-byte :data:`PLACEHOLDER` as the value, hashes the file, and then overwrites the
placeholder in place with the 64-character hex digest (same length: nothing else moves).
To check a file, put the placeholder back where the digest is and hash again. Every
byte outside the digest is hashed; a change inside the digest makes it disagree with the
hash of the (unchanged) rest. So any change to any byte is found, unless it makes the
footer unreadable, which is found too.

A generation's ``.sources.txt`` starts with the line ``#sha256:<hex digest of the rest>``.

Hashing is for ``verify``: readers never hash, so reads stay as fast as before.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq

__all__ = [
    "KEY",
    "PLACEHOLDER",
    "MARKER",
    "write_parquet",
    "parquet_checksum",
    "sources_text",
    "sources_checksum",
    "sources_body",
    "damaged",
]

KEY = b"prunetax_sha256"
"""The Parquet key-value metadata key holding the file's sha256 (hex)."""
PLACEHOLDER = b"-" * 64
"""What the digest's 64 bytes hold while the file is hashed."""
MARKER = b"prunetax_checksum"
"""Schema metadata saying the file has a checksum. Parquet stores it twice (as a plain
key-value pair and inside the serialised Arrow schema), apart from :data:`KEY`, so a
change that drops the checksum entry cannot also make the file look like an old one."""
SOURCES_TAG = b"#sha256:"
_CHUNK = 1 << 20


def _footer_span(fh: BinaryIO, size: int) -> tuple[int, bytes]:
    """Offset and bytes of the Parquet footer (file metadata), from the last 8 bytes."""
    fh.seek(size - 8)
    tail = fh.read(8)
    length = int.from_bytes(tail[:4], "little")
    start = size - 8 - length
    if tail[4:] != b"PAR1" or start < 4:
        raise ValueError("not a Parquet file (bad footer)")
    fh.seek(start)
    return start, fh.read(length)


def _hash(fh: BinaryIO, size: int, offset: int) -> bytes:
    """sha256 (hex) of the file with the placeholder in the 64 bytes at ``offset``."""
    digest = hashlib.sha256()
    fh.seek(0)
    pos = 0
    while pos < size:
        chunk = bytearray(fh.read(min(_CHUNK, size - pos)))
        if not chunk:
            raise ValueError("file shrank while hashing")
        lo, hi = max(offset, pos), min(offset + len(PLACEHOLDER), pos + len(chunk))
        if lo < hi:
            chunk[lo - pos : hi - pos] = PLACEHOLDER[lo - offset : hi - offset]
        digest.update(chunk)
        pos += len(chunk)
    return digest.hexdigest().encode()


def _write(fh: BinaryIO, data: pa.Table, stats: bool, row_group_size: int | None) -> None:
    fh.seek(0)
    fh.truncate()
    with pq.ParquetWriter(fh, data.schema, compression="zstd", write_statistics=stats) as writer:
        writer.add_key_value_metadata({KEY: PLACEHOLDER})
        writer.write_table(data, row_group_size=row_group_size)


def write_parquet(data: pa.Table, row_group_size: int | None = None) -> Callable[[BinaryIO], None]:
    """A writer for :func:`~study.store.layout.write_file_atomic`: ``data`` as zstd Parquet
    whose metadata holds the sha256 of the file's own bytes.

    The placeholder must occur exactly once in the footer, or the digest's place would be
    ambiguous: should a string value in the column statistics equal it, the file is
    written again without statistics (the footer then holds no data values).
    """

    marked = data.replace_schema_metadata({**(data.schema.metadata or {}), MARKER: b"sha256"})

    def write(fh: BinaryIO) -> None:
        for stats in (True, False):
            _write(fh, marked, stats, row_group_size)
            fh.flush()
            size = fh.seek(0, os.SEEK_END)
            start, footer = _footer_span(fh, size)
            if footer.count(PLACEHOLDER) == 1:
                offset = start + footer.index(PLACEHOLDER)
                digest = _hash(fh, size, offset)
                fh.seek(offset)
                fh.write(digest)
                fh.seek(0, os.SEEK_END)
                return
        raise ValueError("the checksum placeholder occurs in the file's metadata more than once")

    return write


def parquet_checksum(
    path: Path, kv: dict[bytes, bytes], schema_meta: dict[bytes, bytes]
) -> tuple[str, str] | None:
    """Check the Parquet file at ``path``, given its key-value metadata ``kv`` and its
    Arrow schema's metadata ``schema_meta``.

    Returns None when the content matches, ``("unchecksummed", why)`` for a file of an
    older prunetax (no checksum, no :data:`MARKER` anywhere, but prunetax's table name in
    the key-value metadata as every older prunetax wrote it), or ``("checksum", why)``.
    """
    stored = kv.get(KEY)
    if stored is None:
        if MARKER in kv or MARKER in schema_meta or b"prunetax_table" not in kv:
            return "checksum", "its checksum entry is missing or damaged"
        return "unchecksummed", "written without a checksum (an older prunetax); its content is unproven"
    with open(path, "rb") as fh:
        size = fh.seek(0, os.SEEK_END)
        start, footer = _footer_span(fh, size)
        if len(stored) != len(PLACEHOLDER) or footer.count(stored) != 1:
            return "checksum", "its checksum field is damaged"
        actual = _hash(fh, size, start + footer.index(stored))
    if actual != stored:
        return "checksum", "content does not match its sha256 checksum (changed after it was written)"
    return None


def sources_text(keys: set[str]) -> bytes:
    """A generation's ``.sources.txt``: the checksum line, then one key per line."""
    body = "".join(f"{k}\n" for k in sorted(keys)).encode()
    return SOURCES_TAG + hashlib.sha256(body).hexdigest().encode() + b"\n" + body


def sources_body(text: bytes) -> bytes:
    """The key lines of a ``.sources.txt`` (without its checksum line, if any)."""
    return text[len(SOURCES_TAG) + 65 :] if text.startswith(SOURCES_TAG) else text


def sources_checksum(text: bytes, required: bool) -> tuple[str, str] | None:
    """Check a ``.sources.txt``; ``required`` when its generation's parts are checksummed
    (then a missing checksum line is damage, not age)."""
    head = len(SOURCES_TAG)
    if not text.startswith(SOURCES_TAG):
        if required:
            return "checksum", "its checksum line is missing or damaged (its parts are checksummed)"
        return "unchecksummed", "written without a checksum (an older prunetax); its content is unproven"
    stored, newline = text[head : head + 64], text[head + 64 : head + 65]
    if newline != b"\n" or hashlib.sha256(text[head + 65 :]).hexdigest().encode() != stored:
        return "checksum", "content does not match its sha256 checksum (changed after it was written)"
    return None


def _damage(path: Path) -> str | None:
    try:
        if path.suffix != ".parquet":
            found = sources_checksum(path.read_bytes(), required=False)
        else:
            kv = pq.read_metadata(path).metadata or {}
            found = parquet_checksum(path, kv, {}) if KEY in kv else None
    except FileNotFoundError:
        return None  # gone meanwhile: the caller's read notices
    except (OSError, ValueError, pa.ArrowException) as err:
        return f"unreadable: {type(err).__name__}: {err}"
    return f"checksum: {found[1]}" if found is not None and found[0] == "checksum" else None


def damaged(paths: Iterable[Path]) -> dict[Path, str]:
    """The files among ``paths`` whose checksum fails, and why (files without one pass).

    Compaction checks its inputs with this, so damaged rows never enter a new generation
    under a fresh, valid checksum.
    """
    paths = list(paths)
    with ThreadPoolExecutor(max_workers=min(4, (os.cpu_count() or 1) + 1)) as pool:
        found = list(pool.map(_damage, paths))
    return {p: why for p, why in zip(paths, found, strict=True) if why is not None}
