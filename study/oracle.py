"""The oracle (SPEC §5): the measured loss change when one unit is removed.

``oracle[u] = L(network without u) - L(network)``, mean cross-entropy over the eval
batches, for every active unit (inactive units get +inf). The lowest change is the
unit the oracle would prune. Each unit's owned slices are zeroed in place, the loss is
measured, and the slices are restored - cheap because a unit owns few parameters.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from study.evaluation import mean_loss
from study.masks import MaskedModel

__all__ = ["unit_slices", "oracle_scores"]


def unit_slices(masked: MaskedModel) -> list[list[tuple[nn.Parameter, tuple[Tensor, ...]]]]:
    """For each unit, the index tuples of the slices it owns in each parameter.

    Index tuples (not flat indices) so that any memory layout works (channels-last too).
    """
    n = masked.groups.n_units
    out: list[list[tuple[nn.Parameter, tuple[Tensor, ...]]]] = [[] for _ in range(n)]
    params = dict(masked.model.named_parameters())
    for owners in masked.groups.params:
        param = params[owners.qualname]
        full = torch.stack([o.expand(param.shape).reshape(-1) for o in owners.owners])  # [dims, numel]
        flat = torch.arange(param.numel()).expand_as(full)
        keep = full >= 0
        pairs = torch.unique(torch.stack([full[keep], flat[keep]]), dim=1)  # sorted by unit, then index
        for u, idx in zip(*_split_by(pairs[0], pairs[1]), strict=True):
            out[u].append((param, torch.unravel_index(idx, param.shape)))
    return out


def _split_by(keys: Tensor, values: Tensor) -> tuple[list[int], list[Tensor]]:
    uniq, counts = torch.unique_consecutive(keys, return_counts=True)
    return uniq.tolist(), list(torch.split(values, counts.tolist()))


def oracle_scores(
    masked: MaskedModel,
    batches: Sequence[tuple[Tensor, Tensor]],
    slices: list[list[tuple[nn.Parameter, Tensor]]] | None = None,
    units: Sequence[int] | None = None,
) -> Tensor:
    """``[U]`` loss change of removing each active unit (only ``units``, when given: the myopic
    oracle's candidates); +inf for pruned and unmeasured units."""
    model = masked.model
    was_training = model.training
    model.eval()
    slices = unit_slices(masked) if slices is None else slices
    base = mean_loss(model, batches)
    out = torch.full((masked.groups.n_units,), float("inf"), dtype=torch.float64)
    try:
        active = torch.nonzero(masked.active).flatten().tolist()
        for u in active if units is None else [u for u in units if masked.active[u]]:
            saved = []
            with torch.no_grad():
                for param, idx in slices[u]:
                    saved.append(param[idx].clone())
                    param[idx] = 0
            try:
                out[u] = mean_loss(model, batches) - base
            finally:
                with torch.no_grad():
                    for (param, idx), values in zip(slices[u], saved, strict=True):
                        param[idx] = values
    finally:
        model.train(was_training)
    return out
