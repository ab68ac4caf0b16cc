"""A store's health at a glance, cheap enough for every report.

:func:`health` lists what a reader would skip (files whose footer does not parse or
whose schema is not their table's, plus every file a read in this process did skip),
``ok`` trials without their steps, rank jobs without their scores, and trials a
quarantine invalidated that await their rerun. It reads footers and key columns only and
hashes nothing: :func:`study.store.verify` is what proves integrity (checksums).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from study.store.checks import Checker
from study.store.consistency import consistency
from study.store.maintenance import require_store
from study.store.read import skipped

__all__ = ["StoreHealth", "health"]


@dataclass
class StoreHealth:
    """What :func:`health` found in the store at ``root``; ``ok`` when nothing."""

    root: Path
    damaged: list[tuple[str, str]] = field(default_factory=list)
    """(store-relative path, reason) of every file a read skips or that does not belong."""
    trials_without_steps: list[str] = field(default_factory=list)
    """run_keys of ``ok`` trials whose steps rows are missing or incomplete, once the
    ``damaged`` files are left out (as readers leave them out)."""
    invalidated: list[str] = field(default_factory=list)
    """run_keys of trials a quarantine invalidated (status ``lost``), not rerun yet."""
    rank_jobs_without_scores: list[str] = field(default_factory=list)
    """run_keys of rank-quality jobs whose oracle rows are stored but whose scores are not."""
    files_checked: int = 0
    """Parquet files found in the store."""

    @property
    def ok(self) -> bool:
        return not (self.damaged or self.trials_without_steps or self.rank_jobs_without_scores)

    def lines(self) -> list[str]:
        """Plain-text lines for a report (empty when the store is healthy)."""
        out = [f"skipped {path}: {why}" for path, why in self.damaged]
        groups = (
            (self.trials_without_steps, "ok trials without (all of) their steps"),
            (self.rank_jobs_without_scores, "rank-quality jobs without their scores"),
            (self.invalidated, "trials invalidated by a quarantine, awaiting a rerun"),
        )
        for keys, what in groups:
            if keys:
                out.append(f"{len(keys)} {what}: {', '.join(keys[:5])}{' ...' * (len(keys) > 5)}")
        if out and not self.ok:
            out.append(f"run `prunetax store verify {self.root}` (then `--quarantine` and the sweep again)")
        return out


def _relative(root: Path, path: Path) -> str:
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)


def health(root: str | Path) -> StoreHealth:
    """Check the store at ``root`` the cheap way (see the module docstring).

    Returns
    -------
    StoreHealth
        ``damaged`` (store-relative path, reason), ``trials_without_steps``,
        ``invalidated``, ``rank_jobs_without_scores``, ``files_checked`` and ``ok``.
    """
    root = require_store(root, tables=False).absolute()
    checker = Checker(root, math.inf, deep=False, files=False)  # the scans below check the files
    checker.store()
    checker.check_pending()
    bad = {p.path: f"{p.kind}: {p.message}" for p in checker.problems if p.severity == "error"}
    for path, why in skipped(root).items():
        bad.setdefault(path, why)
    found = consistency(root, exclude=set(bad))  # the rows a reader sees: without those files
    for path, why in found.skipped.items():
        bad.setdefault(path.absolute(), why)
    return StoreHealth(
        root,
        sorted((_relative(root, p), why) for p, why in bad.items()),
        found.without_steps,
        found.lost,
        found.jobs_without_scores,
        checker.seen,
    )
