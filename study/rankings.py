"""Rank-quality jobs: every signal's unit ranking and the oracle, on the unpruned network and
along the oracle's own trajectory.

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
    every: int = 0
    stop_drop: float = 10.0

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
            "every": self.every,
            "stop_drop": self.stop_drop,
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
    """``(scores rows, oracle rows)`` of one job (write the oracle rows last: they mark it done).

    Step 0 is the unpruned network. With ``every = k > 0`` the job then follows the
    oracle's own greedy trajectory (one unit per step, seeded ties) until test accuracy
    falls ``stop_drop`` points below the reference, and scores every signal again every k
    steps over the units still active: does a signal's agreement with the oracle decay as
    pruning proceeds?
    """
    base = load_base(job.model, job.dataset, job.base_seed, env)
    splits = base.splits
    groups = build_groups(base.model, tuple(splits.train.x.shape[1:]))
    batches, _ = job.saliency.draw(splits.eval.x, splits.eval.y, splits.indices["eval"], job.seed)
    signals = [parse(s) for s in job.signals if parse(s).reference is not Reference.ORACLE]
    signals.append(SignalSpec(reference=Reference.ORACLE))
    ws = Workspace(base.model, groups, job.saliency.tap)
    rows = _Rows(job, groups)
    try:
        for step in _oracle_walk(ws, job, batches, (splits.test.x, splits.test.y), base.reference_acc):
            rngs = [torch.Generator().manual_seed(job.seed) for _ in signals]
            scores, errors = unit_scores(ws, signals, batches, job.aggregation, rngs)
            if errors:
                raise next(iter(errors.values()))
            rows.add(step, signals, scores, ws.masked.active)
    finally:
        ws.restore()
    return rows.scores, rows.oracle


def _oracle_walk(ws: Workspace, job: RankJob, batches: list, test: tuple, reference: float):  # noqa: ANN202
    """Yield 0, then every ``job.every``-th step of the oracle's greedy trajectory (pruning
    the live network in place), until accuracy falls ``job.stop_drop`` below the reference."""
    from study.evaluation import evaluate
    from study.trajectory import choose_units, tie_order

    yield 0
    if job.every <= 0:
        return
    ties, oracle = tie_order(ws.masked.groups.n_units, job.seed), [SignalSpec(reference=Reference.ORACLE)]
    step = 0
    while True:
        scores, _ = unit_scores(ws, oracle, batches, job.aggregation)
        units = choose_units(scores[0], ws.masked, 1, ties)
        if not units:
            return
        ws.masked.prune(units)
        step += 1
        if 100.0 * evaluate(ws.masked.model, *test)[0] < reference - job.stop_drop:
            return
        if step % job.every == 0:
            yield step


class _Rows:
    """The ``scores`` and ``oracle`` rows of one job, over the active units of each step."""

    def __init__(self, job: RankJob, groups) -> None:  # noqa: ANN001 - ChannelGroups
        self.roots = [groups.group_roots[int(g)] for g in groups.unit_group]
        self.within = torch.cat([torch.arange(n) for n in groups.group_sizes]).tolist()
        self.names = groups.unit_names()
        self.tap = job.saliency.tap
        self.common = {
            "run_key": job.run_key,
            "model": job.model,
            "dataset": job.dataset,
            "base_seed": job.base_seed,
            "seed": job.seed,
        }
        self.scores: list[dict] = []
        self.oracle: list[dict] = []

    def add(self, step: int, signals: list[SignalSpec], scores: torch.Tensor, active: torch.Tensor) -> None:
        units = torch.nonzero(active).flatten().tolist()
        for s, row in zip(signals[:-1], scores[:-1], strict=True):
            self.scores += [
                {**self.common, "tap": self.tap, "level": "unit", "signal": s.id, "layer": self.roots[u]}
                | {"channel": self.within[u], "unit": u, "score": float(row[u]), "step": step}
                for u in units
            ]
        self.oracle += [
            {**self.common, "unit": u, "unit_name": self.names[u], "layer": self.roots[u]}
            | {"loss_change": float(scores[-1][u]), "step": step}
            for u in units
        ]


def execute_rank_job(job: RankJob, store, env: Environment = LOCAL) -> bool:  # noqa: ANN001 - a Store
    """Run ``job`` unless the store holds it; write its scores and the unpruned network's
    dead/constant channels (:mod:`study.dead_units`), then its oracle rows (which mark it
    done). Returns True if it ran."""
    from study.dead_units import job_activity

    if store.has("oracle", job.run_key):
        return False
    scores, oracle = run_rank_job(job, env)
    store.write("activity", job.run_key, job_activity(job, env))
    store.write("scores", job.run_key, scores)
    store.write("oracle", job.run_key, oracle)
    return True
