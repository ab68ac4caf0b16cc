"""Evaluating a network on preloaded tensors: one forward routine for every caller.

Training reports accuracy and loss, the oracle measures mean eval loss with and without
each unit, and the pruning loop measures test accuracy, test loss and eval loss in one
pass. All of them use :func:`losses_and_hits`: per-example cross-entropy in float64 and
per-example hits, in eval mode under ``inference_mode``, the model's mode restored after.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["losses_and_hits", "evaluate", "mean_loss"]


def losses_and_hits(
    model: nn.Module, x: Tensor, y: Tensor, batch_size: int = 1024, device: str | torch.device | None = None
) -> tuple[Tensor, Tensor]:
    """Per-example cross-entropy (float64) and correctness of ``model`` on ``(x, y)``.

    Batches are moved to ``device`` (default: where the model's parameters are).
    """
    if device is None:
        device = next(model.parameters(), torch.empty(0)).device
    was_training = model.training
    model.eval()
    losses, hits = [], []
    try:
        with torch.inference_mode():
            for i in range(0, len(y), batch_size):
                xb, yb = x[i : i + batch_size].to(device), y[i : i + batch_size].to(device)
                logits = model(xb)
                losses.append(F.cross_entropy(logits, yb, reduction="none").double())
                hits.append(logits.argmax(1) == yb)
    finally:
        model.train(was_training)
    if not losses:
        return torch.empty(0, dtype=torch.float64), torch.empty(0, dtype=torch.bool)
    return torch.cat(losses), torch.cat(hits)


def evaluate(
    model: nn.Module, x: Tensor, y: Tensor, batch_size: int = 1024, device: str | torch.device | None = None
) -> tuple[float, float]:
    """(accuracy in [0, 1], mean cross-entropy); NaNs for an empty split."""
    if len(y) == 0:
        return float("nan"), float("nan")
    loss, hit = losses_and_hits(model, x, y, batch_size, device)
    return hit.double().mean().item(), loss.mean().item()


def mean_loss(model: nn.Module, batches: Sequence[tuple[Tensor, Tensor]]) -> float:
    """Mean cross-entropy over ``batches`` of (inputs, labels)."""
    x, y = torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])
    return losses_and_hits(model, x, y)[0].mean().item()
