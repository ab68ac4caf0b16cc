"""Gated forwards: the losses of many pruning states of one network in few passes.

A :class:`GatedNet` is a traced copy of a model (sharing its modules and parameters) with
the gates of its units (:mod:`study.batched.gates`). :func:`gated_losses` evaluates R
gate rows on the same examples: rows are stacked side by side into one forward, up to a
number of stacked examples per forward. It serves the evaluation of many children after
a step and the oracle (one row per candidate unit), and computes exactly what
:func:`study.evaluation.losses_and_hits` computes for each network alone: per-example
cross-entropy in float64 and per-example hits, in eval mode under ``inference_mode``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, fx, nn

from study.batched.gates import GateSet, install_gates
from study.graph import trace
from study.groups import ChannelGroups

__all__ = ["GatedNet", "evaluating", "stack", "gated_losses", "summarise"]


class GatedNet:
    """A traced network with gates: ``module`` runs M pruning states at once while
    ``gates.applied(actives)`` is in force."""

    def __init__(self, module: fx.GraphModule, groups: ChannelGroups) -> None:
        self.module = module
        self.gates: GateSet = install_gates(module, groups)

    @classmethod
    def of(cls, model: nn.Module, groups: ChannelGroups) -> GatedNet:
        """A gated traced copy of ``model`` (the copy shares the model's parameters)."""
        return cls(trace(model), groups)

    @property
    def device(self) -> torch.device:
        return self.gates.device


@contextmanager
def evaluating(module: nn.Module) -> Iterator[None]:
    """Every submodule in eval mode for the block, each one's own mode restored after (a traced
    copy shares its submodules with the model, whose modes are the model's)."""
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield
    finally:
        for m, mode in modes:
            m.training = mode


def stack(x: Tensor, m: int) -> Tensor:
    """``m`` copies of the batch ``x`` one after the other (trajectory-major; keeps the memory
    format, channels-last included)."""
    return x if m == 1 else torch.cat([x] * m)


def gated_losses(net: GatedNet, actives: Tensor, x: Tensor, y: Tensor, images: int) -> tuple[Tensor, Tensor]:
    """Per-example cross-entropy (float64) and hits, ``[R, n]`` each, of the network under
    each gate row of ``actives [R, U]`` on the examples ``(x, y)``; at most ``images``
    stacked examples per forward (rows side by side when whole example sets fit)."""
    rows, n = actives.shape[0], y.shape[0]
    per = max(1, min(rows, images // max(1, n)))  # rows per forward
    chunk = n if per > 1 else max(1, min(n, images))  # examples per forward
    device = net.device
    loss = torch.empty(rows, n, dtype=torch.float64, device=device)
    hit = torch.empty(rows, n, dtype=torch.bool, device=device)
    with evaluating(net.module), torch.inference_mode():
        for r in range(0, rows, per):
            part = actives[r : r + per]
            m = part.shape[0]
            with net.gates.applied(part):
                for i in range(0, n, chunk):
                    xb, yb = x[i : i + chunk].to(device), y[i : i + chunk].to(device)
                    logits = net.module(stack(xb, m))
                    ys = yb.repeat(m)
                    loss[r : r + m, i : i + chunk] = (
                        F.cross_entropy(logits, ys, reduction="none").double().view(m, -1)
                    )
                    hit[r : r + m, i : i + chunk] = (logits.argmax(1) == ys).view(m, -1)
    return loss, hit


def summarise(loss: Tensor, hit: Tensor, n_test: int) -> list[tuple[float, float, float]]:
    """Per row: (test accuracy %, test loss, eval loss), the first ``n_test`` examples being the
    test set and the rest the eval examples (as :meth:`study.trajectory.Run.evaluate`)."""
    acc = 100.0 * hit[:, :n_test].double().mean(1)
    test, ev = loss[:, :n_test].mean(1), loss[:, n_test:].mean(1)
    return list(zip(acc.tolist(), test.tolist(), ev.tolist(), strict=True))
