"""Rank-quality jobs: every signal's unit ranking and the oracle on the unpruned network.

Molchanov et al. validate criteria by how well their ranking of channels matches the
oracle's (the measured loss change of removing each channel). This scores all
requested signals and measures the oracle once per (model, dataset, base seed, seed)
and writes them to the store's ``scores`` (``level = unit``) and ``oracle`` tables;
``analysis.rank_quality`` turns them into Spearman/Kendall correlations.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from study.protocols import Protocol
from study.store.schema import SCHEMA_VERSION
from study.trajectory import Workspace, unit_scores
from study.trial import DEFAULT_CACHE, TRIAL_VERSION, load_base, saliency_batches
from taxonomy import __version__
from taxonomy.components import Reference
from taxonomy.spec import SignalSpec, parse

__all__ = ["RankJob", "run_rank_job"]


@dataclass(frozen=True)
class RankJob:
    model: str
    dataset: str
    base_seed: int
    seed: int
    signals: tuple[str, ...]
    tap: str = "output"
    eval_batches: int = 2
    eval_batch_size: int = 128
    group_reduction: str = field(default="sum")

    @property
    def run_key(self) -> str:
        blob = json.dumps(
            {
                **self.__dict__,
                "signals": sorted(self.signals),
                "kind": "rank_quality",
                "trial_version": TRIAL_VERSION,
                "schema_version": SCHEMA_VERSION,
                "prunetax": __version__,
            },
            sort_keys=True,
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:24]


def run_rank_job(
    job: RankJob,
    *,
    cache_dir: str | Path = DEFAULT_CACHE,
    data_root: str | None = None,
    device: str = "cpu",
    download: bool = False,
) -> tuple[list[dict], list[dict]]:
    """``(scores rows, oracle rows)`` of one job (write the oracle rows last: they mark it done)."""
    from study.groups import build_groups

    base = load_base(
        job.model,
        job.dataset,
        job.base_seed,
        cache_dir=cache_dir,
        data_root=data_root,
        device=device,
        download=download,
    )
    protocol = Protocol(
        tap=job.tap,
        eval_batches=job.eval_batches,
        eval_batch_size=job.eval_batch_size,
        group_reduction=job.group_reduction,
    )
    splits = base.splits
    groups = build_groups(base.model, tuple(splits.train.x.shape[1:]))
    batches, _ = saliency_batches(splits, protocol, job.seed)
    signals = [parse(s) for s in job.signals if parse(s).reference is not Reference.ORACLE]
    signals.append(SignalSpec(reference=Reference.ORACLE))
    rngs = [torch.Generator().manual_seed(job.seed) for _ in signals]
    ws = Workspace(base.model, groups, job.tap)
    scores, errors = unit_scores(ws, signals, batches, job.group_reduction, rngs)
    if errors:
        raise next(iter(errors.values()))
    roots = [groups.group_roots[int(g)] for g in groups.unit_group]
    within = torch.cat([torch.arange(n) for n in groups.group_sizes]).tolist()
    names = groups.unit_names()
    common = {
        "run_key": job.run_key,
        "model": job.model,
        "dataset": job.dataset,
        "base_seed": job.base_seed,
        "seed": job.seed,
    }
    score_rows = [
        {
            **common,
            "tap": job.tap,
            "level": "unit",
            "signal": s.id,
            "layer": roots[u],
            "channel": within[u],
            "unit": u,
            "score": float(v),
        }
        for s, row in zip(signals[:-1], scores[:-1], strict=True)
        for u, v in enumerate(row.tolist())
    ]
    oracle_rows = [
        {**common, "unit": u, "unit_name": names[u], "layer": roots[u], "loss_change": float(v)}
        for u, v in enumerate(scores[-1].tolist())
    ]
    return score_rows, oracle_rows
