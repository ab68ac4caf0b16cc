"""Statistics of M trajectories from one stacked pass, split into each trajectory's share.

The registered statistic passes (:mod:`study.passes`) run unchanged through the collector
(:class:`study.collect.Collector`) on a gated traced copy of the base model: the eval
examples are stacked M times, gate row m prunes block m, and one forward, one backward
and one LM pass give every trajectory's per-example statistics. Each trajectory then gets
exactly the :class:`~taxonomy.statistics.LayerStats` the lockstep engine would collect on
its masked network: its block of every per-example tensor; its own masked filters as the
weight ``value`` (any data-free weight statistic is masked the same way); and, from the
collector's own assembly, its own counts, removal counts and active channels (moved to the
statistics' device).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields, is_dataclass, replace

import torch
from torch import Tensor, nn

from study.batched.forward import GatedNet, stack
from study.collect import Collector
from study.groups import ChannelGroups
from study.masks import MaskedModel
from taxonomy.components import Input
from taxonomy.statistics import LayerStats, Needs

__all__ = ["StackedStatistics"]


class StackedStatistics:
    """Collects the statistics of many pruning states of one base network at once.

    Parameters
    ----------
    model
        The base network (its weights are never masked here; a private copy is best).
    groups
        Its units.
    tap
        The activation tap point.
    batches
        The saliency batches (inputs, labels), the same for every trajectory.
    """

    def __init__(self, model: nn.Module, groups: ChannelGroups, tap: str, batches: Sequence) -> None:
        self.counter = MaskedModel(model, groups)  # counts per pruning state; never applied
        self.collector = Collector(self.counter, tap)
        self.net = GatedNet(self.collector.tapped.module, groups)
        self.layers = groups.layers
        self.x = torch.cat([b[0] for b in batches])
        self.y = torch.cat([b[1] for b in batches])
        device, n = self.net.device, groups.n_units
        self._out = [layer.unit.to(device) for layer in self.layers]
        self._in = [torch.where(layer.in_unit < 0, n, layer.in_unit).to(device) for layer in self.layers]

    def __call__(self, actives: Tensor, needs: Needs) -> list[list[LayerStats]]:
        """Each trajectory's statistics: row m of ``actives [M, U]`` is trajectory m's active units."""
        m = actives.shape[0]
        with self.net.gates.applied(actives):
            stats = self.collector.collect([(stack(self.x, m), self.y.repeat(m))], needs)
        masks = self._filter_masks(actives)
        return [self._share(stats, k, actives[k], masks) for k in range(m)]

    def _filter_masks(self, actives: Tensor) -> list[Tensor]:
        """Per layer, ``[M, C, E]``: each trajectory's mask of the weight ``value`` elements
        (filter, then bias), as :meth:`study.masks.MaskedModel.masks` masks the parameters."""
        gates = self.net.gates
        ones = torch.ones(actives.shape[0], 1, dtype=torch.bool)
        ext = torch.cat([actives.cpu(), ones], 1).to(gates.device, gates.dtype)
        out = []
        for layer, own, inp in zip(self.layers, self._out, self._in, strict=True):
            rows = ext[:, own]  # [M, C]
            mask = (rows[:, :, None] * ext[:, inp]).repeat_interleave(layer.kernel, dim=2)
            out.append(torch.cat([mask, rows[:, :, None]], 2) if layer.has_bias else mask)
        return out

    def _share(
        self, stats: list[LayerStats], k: int, active: Tensor, masks: list[Tensor]
    ) -> list[LayerStats]:
        """Trajectory ``k``'s statistics: block k of every per-example tensor, its own masked
        filters, assembled by the collector's own assembly with this trajectory's counts."""
        n = self.y.shape[0]
        rows = masks[0].shape[0] * n
        first = stats[0]
        pairs = {(Input.WEIGHT, name) for name in first.weight.tensors}
        if first.activation is not None:
            pairs |= {(Input.ACTIVATION, name) for name in first.activation.tensors}

        def block(input_: Input, name: str, j: int) -> Tensor:
            t = stats[j].stats_for(input_)[name]
            if input_ is Input.WEIGHT and (name == "value" or t.shape[0] != rows):  # data-free
                return t * masks[j][k][None]
            return t[k * n : (k + 1) * n]

        found = {(i, name): [block(i, name, j) for j in range(len(stats))] for i, name in pairs}
        self.counter.active = active.cpu()
        own = self.collector._assemble(found, Needs(frozenset(pairs)))  # the lockstep assembly
        return [_on(layer.weight.value.device, layer) for layer in own]


def _on(device: torch.device, obj: object) -> object:
    """``obj`` (a LayerStats or InputStats) with every tensor field on ``device`` (counts are
    computed on the CPU; scores are computed where the statistics are)."""
    changes = {}
    for f in fields(obj):
        value = getattr(obj, f.name)
        if isinstance(value, Tensor) and value.device != device:
            changes[f.name] = value.to(device)
        elif is_dataclass(value):
            changes[f.name] = _on(device, value)
    return replace(obj, **changes) if changes else obj
