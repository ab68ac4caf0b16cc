"""Rank-quality jobs: every signal's unit ranking and the oracle on the unpruned network.

Molchanov et al. validate criteria by how well their ranking of channels matches the
oracle's (the measured loss change of removing each channel). This scores all
requested signals and measures the oracle once per (model, dataset, base seed, seed)
and writes them to the store's ``scores`` (``level = unit``) and ``oracle`` tables;
``analysis.rank_quality`` turns them into Spearman/Kendall correlations.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from study.base_model import load_base
from study.environment import LOCAL, Environment
from study.groups import build_groups
from study.keys import stable_key
from study.saliency import PAPER_SALIENCY, SaliencyData
from study.store.schema import SCHEMA_VERSION
from study.trial import TRIAL_VERSION
from study.unit_scores import Workspace, unit_scores
from taxonomy import __version__
from taxonomy.components import Reference
from taxonomy.spec import SignalSpec, parse

__all__ = ["RankJob", "run_rank_job", "execute_rank_job"]


@dataclass(frozen=True)
class RankJob:
    """Every signal's unit scores and the oracle on one unpruned base model."""

    model: str
    dataset: str
    base_seed: int
    seed: int
    signals: tuple[str, ...]
    saliency: SaliencyData = field(default=PAPER_SALIENCY)
    aggregation: str = "pooled"

    def as_dict(self) -> dict[str, object]:
        """JSON-ready form (a sweep payload)."""
        return {
            "model": self.model,
            "dataset": self.dataset,
            "base_seed": self.base_seed,
            "seed": self.seed,
            "signals": list(self.signals),
            "saliency": self.saliency.as_dict(),
            "aggregation": self.aggregation,
        }

    @classmethod
    def from_dict(cls, data: dict) -> RankJob:
        fields = {
            **data,
            "signals": tuple(data["signals"]),
            "saliency": SaliencyData.make(**data["saliency"]),
        }
        return cls(**fields)

    @property
    def run_key(self) -> str:
        return stable_key(
            {
                **self.as_dict(),
                "signals": sorted(self.signals),
                "kind": "rank_quality",
                "trial_version": TRIAL_VERSION,
                "schema_version": SCHEMA_VERSION,
                "prunetax": __version__,
            }
        )


def run_rank_job(job: RankJob, env: Environment = LOCAL) -> tuple[list[dict], list[dict]]:
    """``(scores rows, oracle rows)`` of one job (write the oracle rows last: they mark it done)."""
    base = load_base(job.model, job.dataset, job.base_seed, env)
    splits = base.splits
    groups = build_groups(base.model, tuple(splits.train.x.shape[1:]))
    batches, _ = job.saliency.draw(splits.eval.x, splits.eval.y, splits.indices["eval"], job.seed)
    signals = [parse(s) for s in job.signals if parse(s).reference is not Reference.ORACLE]
    signals.append(SignalSpec(reference=Reference.ORACLE))
    rngs = [torch.Generator().manual_seed(job.seed) for _ in signals]
    ws = Workspace(base.model, groups, job.saliency.tap)
    scores, errors = unit_scores(ws, signals, batches, job.aggregation, rngs)
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
            "tap": job.saliency.tap,
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


def execute_rank_job(job: RankJob, store, env: Environment = LOCAL) -> bool:  # noqa: ANN001 - a Store
    """Run ``job`` unless the store holds it; write its scores, then its oracle rows (which
    mark it done). Returns True if it ran."""
    if store.has("oracle", job.run_key):
        return False
    scores, oracle = run_rank_job(job, env)
    store.write("scores", job.run_key, scores)
    store.write("oracle", job.run_key, oracle)
    return True
