"""``retrain``: the greedy loop with a fixed number of SGD steps after every prune (SPEC §3).

SGD with the paper's settings (lr 1e-3, momentum 0.9, weight decay 5e-4, or 1e-4 for NIN
and the ResNets); unset values take the model's defaults from the registry (the paper's
k: LeNet-5 256, CIFAR10-quick 256, ResNet-20 50, NIN 25, AlexNet 10; 32 elsewhere).
Mini-batches are seeded by (trial seed, step), so trajectories that pruned the same
units see the same batches.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from pydantic import Field
from pydantic.dataclasses import dataclass

from study.params import STRICT
from study.protocols.base import register_protocol
from study.protocols.greedy import Greedy, Retrainer

if TYPE_CHECKING:
    from study.masks import MaskedModel
    from study.retrain import RetrainSettings
    from study.trajectory import Setup

__all__ = ["Retrain", "step_seed"]

DEFAULT_STEPS = 32
"""Retraining steps for a model whose paper gives no k."""


def step_seed(setup: Setup, step: int) -> int:
    """The retraining batches' seed at ``step`` (common to every signal of the trial)."""
    return setup.seed * 1_000_003 + step


@register_protocol
@dataclass(frozen=True, config=STRICT)
class Retrain(Greedy):
    name = "retrain"
    summary = "greedy global pruning with k SGD steps after every prune"

    retrain_steps: Annotated[
        int | None, Field(ge=0, description="SGD steps after each prune (default: the model's k)")
    ] = None
    retrain_lr: Annotated[float, Field(gt=0, description="retraining learning rate")] = 1e-3
    retrain_momentum: Annotated[float, Field(ge=0, lt=1, description="retraining SGD momentum")] = 0.9
    retrain_weight_decay: Annotated[
        float | None, Field(ge=0, description="retraining weight decay (default: the model's)")
    ] = None
    retrain_batch_size: Annotated[int, Field(ge=1, description="retraining mini-batch size")] = 64

    def settings(self, setup: Setup) -> RetrainSettings:
        """The SGD settings, with the model's defaults filled in."""
        from study import models
        from study.retrain import RetrainSettings

        hp = models.hyperparams(setup.model_name) if setup.model_name else None
        steps = self.retrain_steps
        if steps is None:
            steps = (hp.retrain_steps if hp is not None else None) or DEFAULT_STEPS
        wd = self.retrain_weight_decay
        if wd is None:
            wd = hp.retrain_weight_decay if hp is not None else 5e-4
        return RetrainSettings(steps, self.retrain_lr, self.retrain_momentum, wd, self.retrain_batch_size)

    def retrainer(self, setup: Setup) -> Retrainer | None:
        from study.retrain import retrain

        cfg = self.settings(setup)
        if cfg.steps == 0:
            return None
        x, y = setup.train

        def run(masked: MaskedModel, step: int) -> int:
            return retrain(masked, x, y, cfg, step_seed(setup, step))

        return run
