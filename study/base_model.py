"""A trained base model with its data splits, ready for trials, scores and rank jobs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from study.checkpoint import Checkpoint
from study.data import Splits
from study.environment import LOCAL, Environment
from study.evaluation import evaluate
from taxonomy.errors import PrunetaxError

__all__ = ["Base", "load_base", "base_from_checkpoint"]


@dataclass
class Base:
    """The network (eval mode, on the device), its checkpoint, its splits, and its test
    accuracy (percent) measured here: the reference of every accuracy drop."""

    model: nn.Module
    checkpoint: Checkpoint
    splits: Splits
    reference_acc: float

    @property
    def name(self) -> str:
        return self.checkpoint.arch


def base_from_checkpoint(ckpt: Checkpoint, env: Environment = LOCAL) -> Base:
    """Load the splits a checkpoint was trained on (checked by fingerprint) and its network."""
    from study import data

    splits = data.load(ckpt.dataset, env.data_root, ckpt.splits.seed, env.download)
    if splits.fingerprint() != ckpt.splits.fingerprint:
        raise PrunetaxError(
            f"the {ckpt.dataset} splits differ from those the checkpoint was trained with "
            "(different files or split sizes); retrain the base model."
        )
    # channels-last tensors: measured 2.3x faster evaluation of the tiny default on this CPU
    # (max-pooling in NCHW is slow); results are the same up to float rounding
    splits = splits.to(env.device, torch.channels_last)
    net = ckpt.build_model(env.device).to(memory_format=torch.channels_last)
    acc, _ = evaluate(net, splits.test.x, splits.test.y)
    return Base(net, ckpt, splits, 100.0 * acc)


def load_base(
    model: str,
    dataset: str,
    base_seed: int,
    env: Environment = LOCAL,
    *,
    checkpoint: str | Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> Base:
    """The base model (cached, trained on first use, or read from ``checkpoint``) on ``env.device``."""
    from study.train import TrainConfig, load_or_train

    if checkpoint is not None:
        ckpt = Checkpoint.load(checkpoint)
        if ckpt.dataset != dataset:
            raise PrunetaxError(
                f"checkpoint {checkpoint} was trained on {ckpt.dataset!r}, not {dataset!r}; "
                f"pass --dataset {ckpt.dataset} or a checkpoint for {dataset}."
            )
    else:
        cfg = TrainConfig(model=model, dataset=dataset, seed=base_seed, data_root=env.data_root)
        ckpt, _ = load_or_train(cfg, env.cache_dir, env.device, download=env.download, progress=progress)
    return base_from_checkpoint(ckpt, env)
