"""One stable key for anything identified by its canonical JSON (trials, jobs, checkpoints)."""

from __future__ import annotations

import hashlib
import json

__all__ = ["canonical_json", "stable_key"]


def canonical_json(obj: object) -> str:
    """Sorted keys, no whitespace: equal objects give equal text on every machine."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def stable_key(obj: object, length: int = 24) -> str:
    """The first ``length`` hex digits of the SHA-256 of ``obj``'s canonical JSON."""
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()[:length]
