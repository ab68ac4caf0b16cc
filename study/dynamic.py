"""What the training-time protocols share (``cucb``, ``gated``): the training recipe, the
network they start from, the signal they accept and the ``trials`` columns they add.

A *recipe* is the base model's SGD recipe (``study.train``: the model's registry
hyperparameters, seeded batch order, learning-rate schedule, augmentation) with any value
the protocol overrides. A network trained *from scratch* is built and initialised exactly
as the base model was (``models.build`` under ``torch.manual_seed(seed)``), and its batches
come from a generator seeded the same way, so with trial seed = base seed (draw 0) a
run differs from the base model's training only by what the protocol changes.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from study.trajectory import Setup
from taxonomy.errors import PrunetaxError

__all__ = [
    "Recipe",
    "recipe",
    "start_network",
    "training_columns",
    "TRAIN_MAC_FACTOR",
]

TRAIN_MAC_FACTOR = 3
"""Multiply-adds of one training example = 3 x its forward MACs (forward, gradient of the
inputs, gradient of the weights: each costs one forward's MACs per conv/linear layer)."""

_GENERIC = {
    "lr": 0.05,
    "batch_size": 32,
    "momentum": 0.9,
    "weight_decay": 5e-4,
    "schedule": "cosine",
    "epochs": 12,
}
"""The recipe of a network that is not in the model registry (tests' tiny networks)."""


@dataclass(frozen=True)
class Recipe:
    """A resolved SGD recipe: ``steps`` mini-batches of ``batch_size``, like ``study.train``."""

    steps: int
    lr: float
    momentum: float
    weight_decay: float
    batch_size: int
    schedule: str
    augment: str

    def batches(self, n: int, generator: torch.Generator) -> Iterator[tuple[int, Tensor, float]]:
        """``(step, example indices, learning rate)`` for steps 0..steps-1: epochs of a seeded
        permutation (``study.train``'s batching and schedule, the epochs the steps span)."""
        from study.train import TrainConfig, _batches, _lr_at

        per_epoch = len(_batches(n, self.batch_size, torch.Generator()))
        epochs = math.ceil(self.steps / per_epoch)
        cfg = TrainConfig(lr=self.lr, epochs=epochs, schedule=self.schedule)
        step = 0
        for epoch in range(epochs):
            for idx in _batches(n, self.batch_size, generator):
                if step == self.steps:
                    return
                yield step, idx, _lr_at(cfg, epoch, step, self.steps)
                step += 1


def recipe(
    setup: Setup,
    steps: int | None,
    lr: float | None,
    batch_size: int | None,
    weight_decay: float | None,
    augment: str,
) -> Recipe:
    """The model's registry recipe with the given overrides; ``steps`` None = the base model's
    (its epochs x mini-batches per epoch)."""
    from study import models
    from study.train import _batches

    hp = dict(_GENERIC)
    if setup.model_name:
        entry = models.hyperparams(setup.model_name)
        hp = {k: getattr(entry, k) for k in _GENERIC}
    bs = batch_size or hp["batch_size"]
    n = int(setup.train[1].shape[0])
    if steps is None:
        steps = len(_batches(n, bs, torch.Generator())) * hp["epochs"]
    return Recipe(
        steps=steps,
        lr=hp["lr"] if lr is None else lr,
        momentum=hp["momentum"],
        weight_decay=hp["weight_decay"] if weight_decay is None else weight_decay,
        batch_size=bs,
        schedule=hp["schedule"],
        augment=augment,
    )


def start_network(setup: Setup, start: str, seed: int) -> nn.Module:
    """The network a run trains: a copy of the base model (``start="base"``) or a new one,
    initialised as the base model was with ``torch.manual_seed(seed)`` (``"scratch"``)."""
    device = next(setup.model.parameters()).device
    if start == "base":
        net = copy.deepcopy(setup.model)
    elif start == "scratch":
        net = _fresh(setup, seed)
    else:
        raise PrunetaxError(f"`start` must be scratch or base; got {start!r}.")
    return net.to(device, memory_format=torch.channels_last).eval()


def _fresh(setup: Setup, seed: int) -> nn.Module:
    from study import models

    x = setup.train[0]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if setup.model_name:
            with torch.no_grad():
                classes = int(setup.model(x[:1]).shape[1])
            return models.build(setup.model_name, int(x.shape[1]), classes, int(x.shape[-1]))
        net = copy.deepcopy(setup.model)  # not a registry model: PyTorch's default initialisation
        for module in net.modules():
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
            if hasattr(module, "reset_running_stats"):
                module.reset_running_stats()
        return net


def training_columns(
    start: str, steps: int, executed_macs: float, dense_macs: float, batch_size: int
) -> dict[str, object]:
    """The ``trials`` columns of a training run: where it started, its SGD steps, and the
    multiply-adds it executed against dense training with the same recipe
    (:data:`TRAIN_MAC_FACTOR` x batch size x the sum over steps of the forward MACs per image)."""
    per_step = TRAIN_MAC_FACTOR * batch_size
    dense = per_step * dense_macs * steps
    return {
        "started_from": start,
        "train_steps": steps,
        "train_macs": round(per_step * executed_macs),
        "train_macs_dense": round(dense),
        "train_macs_saved": 100.0 * (1 - per_step * executed_macs / dense) if dense else math.nan,
    }
