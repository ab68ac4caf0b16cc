"""The batched oracle: the loss change of removing each unit, one gate row per candidate.

:func:`study.oracle.oracle_scores` zeroes one unit's slices at a time and runs the eval
batches once per unit. Here the live network (its weights as loaded, masks included) is
gated with one row per candidate (the active units less that one) plus a row for the
network itself, and the rows run side by side through stacked forwards: the same
per-example losses, so the same scores (tested), in a few passes instead of one per unit.
The unit-scoring service uses it for the ``oracle`` reference wherever work is batched
(:func:`~study.batched.select.batched_here`: a GPU under ``auto``).
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from study.batched.forward import GatedNet, gated_losses
from study.batched.memory import halving, images_per_pass
from study.batched.select import batched_here
from study.masks import MaskedModel

__all__ = ["batched_oracle", "batched_here"]

_NETS: weakref.WeakKeyDictionary[nn.Module, GatedNet] = weakref.WeakKeyDictionary()
"""One gated traced copy per live network (it shares the network's parameters)."""


def _gated(masked: MaskedModel) -> GatedNet:
    net = _NETS.get(masked.model)
    if net is None:
        net = _NETS[masked.model] = GatedNet.of(masked.model, masked.groups)
    return net


def batched_oracle(
    masked: MaskedModel, batches: Sequence[tuple[Tensor, Tensor]], units: Sequence[int] | None = None
) -> Tensor:
    """``[U]`` loss change (mean cross-entropy over ``batches``) of removing each active unit
    (only ``units``, when given) from the live network; +inf for the others."""
    active = masked.active
    candidates = torch.nonzero(active).flatten()
    if units is not None:
        candidates = torch.tensor([u for u in units if active[u]], dtype=torch.long)
    rows = active.repeat(len(candidates) + 1, 1)
    rows[torch.arange(1, len(candidates) + 1), candidates] = False
    x, y = torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])
    net = _gated(masked)
    (loss, _), _ = halving(lambda k: gated_losses(net, rows, x, y, k), images_per_pass(net.device))
    mean = loss.mean(1).cpu()
    out = torch.full((masked.groups.n_units,), float("inf"), dtype=torch.float64)
    out[candidates] = mean[1:] - mean[0]
    return out
