"""Retraining between pruning steps (SPEC §3): fixed-budget and "characterise" modes.

Pruned slices stay at zero: gradients are masked by :meth:`MaskedModel.freeze` hooks and
the masks are re-applied after every optimiser step. Mini-batches come from a generator
seeded by (trial seed, step), so trajectories that pruned the same units see the same
batches (common random numbers) and a rerun is bit-identical. A fresh SGD optimiser is
made for each retraining phase (momentum does not carry across pruning steps).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from study.masks import MaskedModel

__all__ = ["RetrainSettings", "retrain", "characterise"]


@dataclass(frozen=True)
class RetrainSettings:
    steps: int
    lr: float
    momentum: float
    weight_decay: float
    batch_size: int


def _sgd_steps(
    masked: MaskedModel, x: Tensor, y: Tensor, steps: int, cfg: RetrainSettings, generator: torch.Generator
) -> None:
    model = masked.model
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    masked.freeze()
    model.train()
    try:
        for _ in range(steps):
            idx = torch.randint(0, x.shape[0], (cfg.batch_size,), generator=generator).to(x.device)
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
            masked.apply()
    finally:
        model.eval()
        masked.unfreeze()


def retrain(masked: MaskedModel, x: Tensor, y: Tensor, cfg: RetrainSettings, seed: int) -> int:
    """``cfg.steps`` SGD steps on (x, y); returns the steps run."""
    if cfg.steps > 0:
        _sgd_steps(masked, x, y, cfg.steps, cfg, torch.Generator().manual_seed(seed))
    return cfg.steps


def characterise(
    masked: MaskedModel,
    x: Tensor,
    y: Tensor,
    probe: tuple[Tensor, Tensor],
    initial_train_acc: float,
    cfg: RetrainSettings,
    seed: int,
    check_every: int = 10,
) -> int:
    """Retrain only if train accuracy (on ``probe``) fell below 90% of its initial value,
    then until it recovers, capped at ``cfg.steps``; returns the steps used."""
    from study.evaluation import evaluate

    threshold = 0.9 * initial_train_acc

    def accuracy() -> float:
        return 100.0 * evaluate(masked.model, *probe)[0]

    if accuracy() >= threshold:
        return 0
    generator, used = torch.Generator().manual_seed(seed), 0
    while used < cfg.steps:
        chunk = min(check_every, cfg.steps - used)
        _sgd_steps(masked, x, y, chunk, cfg, generator)
        used += chunk
        if accuracy() >= threshold:
            break
    return used
