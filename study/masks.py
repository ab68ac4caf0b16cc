"""Pruning state as data: one bool per unit, applied to a model as parameter masks.

``MaskedModel`` owns a model and the ``active`` vector of its units. Pruning a unit
zeroes every parameter slice it owns (filter, bias, BN entries, consumer slices) and
keeps them at zero during retraining (gradient hooks plus re-masking after each
optimiser step). Every count of SPEC §4 - remaining weights, MACs, channels, and the
per-channel denominators of the ``l0``/``l0_active``/``weights_removed``/``macs_removed``
scalings - is computed analytically from the owner maps; tests prove them equal to the
physically pruned model's parameter count and fvcore's MACs.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from study.groups import ChannelGroups, ParamOwners

__all__ = ["Counts", "MaskedModel"]


@dataclass(frozen=True)
class Counts:
    """Size of the (masked) network. ``macs`` are multiply-adds per image (fvcore's "flops")."""

    weights: int  # conv + linear weights, no biases
    macs: int
    channels: int  # active conv output channels
    units: int  # active units (coupled groups count once)


class MaskedModel:
    """A model plus the active/pruned state of its units."""

    def __init__(self, model: nn.Module, groups: ChannelGroups) -> None:
        self.model = model
        self.groups = groups
        self.active = torch.ones(groups.n_units, dtype=torch.bool)
        self._params = {p.qualname: p for p in groups.params}
        self._hooks: list = []
        self._masks: dict[str, Tensor] = {}
        self._parameters = dict(model.named_parameters())
        self._cache: dict[tuple[str, bytes], object] = {}

    def _memo(self, name: str, compute):  # noqa: ANN001, ANN202
        """Counts depend only on the active set: compute each once per state."""
        key = (name, self.active.numpy().tobytes())
        if key not in self._cache:
            if len(self._cache) > 16:
                self._cache.clear()
            self._cache[key] = compute()
        return self._cache[key]

    # -- state -----------------------------------------------------------------------------
    def _ext(self, device: torch.device | None = None) -> Tensor:
        """Active vector with a trailing 1 so that owner -1 (no unit) reads as active."""
        ext = torch.cat([self.active, torch.ones(1, dtype=torch.bool)]).float()
        return ext if device is None else ext.to(device)

    def mask_of(self, owners: ParamOwners, device: torch.device | None = None) -> Tensor:
        ext = self._ext(device)
        mask = ext[owners.owners[0].to(ext.device)]
        for owner in owners.owners[1:]:
            mask = mask * ext[owner.to(ext.device)]
        return mask

    def keep(self, owner: Tensor) -> Tensor:
        """Bool map of the slices that stay, for one owner map."""
        return self._ext().bool()[owner]

    def masks(self) -> dict[str, Tensor]:
        """Current 0/1 mask per masked parameter (broadcastable to the parameter)."""
        return {name: self.mask_of(p) for name, p in self._params.items()}

    def prune(self, units: Iterable[int]) -> None:
        """Mark ``units`` pruned and zero what they own."""
        idx = torch.as_tensor(list(units), dtype=torch.long)
        if idx.numel():
            self.active[idx] = False
        self.apply()

    def apply(self) -> None:
        """Zero every pruned slice (also after each optimiser step: masks are built once per state)."""
        self._masks = self._memo(
            "param_masks",
            lambda: {
                name: self.mask_of(owners, self._parameters[name].device)
                for name, owners in self._params.items()
            },
        )
        with torch.no_grad():
            for name, mask in self._masks.items():
                self._parameters[name].mul_(mask)

    def freeze(self) -> None:
        """Zero the gradients of pruned slices (call once before retraining)."""
        if self._hooks:
            return
        for name in self._params:
            param = self._parameters[name]
            self._hooks.append(
                param.register_hook(lambda g, n=name: g * self._masks[n] if n in self._masks else g)
            )

    def unfreeze(self) -> None:
        for h in self._hooks:
            h.remove()
        self._hooks.clear()

    # -- counts ----------------------------------------------------------------------------
    def _weight_entries(self, owners: ParamOwners) -> tuple[Tensor, Tensor, Tensor]:
        """Active 2-D entries [out, in] of a weight and the out/in owner maps expanded to it."""
        ext = self._ext()
        out, inp = owners.owners
        out2 = out.reshape(out.shape[0], -1)
        in2 = inp.reshape(inp.shape[0], -1)
        shape = torch.broadcast_shapes(out2.shape, in2.shape)
        out2, in2 = out2.expand(shape), in2.expand(shape)
        return ext[out2] * ext[in2], out2, in2

    def counts(self) -> Counts:
        """Remaining weights, MACs, channels and units."""
        return self._memo("counts", self._counts)

    def _counts(self) -> Counts:
        weights = macs = 0
        for owners in self._params.values():
            if owners.is_weight:
                active = int(self._weight_entries(owners)[0].sum().item()) * owners.spatial
                weights += active
                macs += active * owners.out_positions
        ext = self._ext()
        channels = int(sum(ext[layer.unit].sum().item() for layer in self.groups.layers))
        return Counts(weights, macs, channels, int(self.active.sum().item()))

    def weights_removed(self) -> Tensor:
        """``[U]`` weights removed transitively if each unit were pruned now (SPEC §2.4)."""
        return self._memo("removed", self._removed)[0].clone()

    def macs_removed(self) -> Tensor:
        """``[U]`` multiply-adds per image removed transitively if each unit were pruned now: the
        same weight entries as :meth:`weights_removed`, each counted once per output position
        of its layer (a linear layer's entry once), so it is the drop of :meth:`counts` ``.macs``."""
        return self._memo("removed", self._removed)[1].clone()

    def _removed(self) -> Tensor:
        """``[2, U]``: weights and MACs removed per unit, in one pass over the weight owner maps.

        An entry goes with its output unit and with its input unit (counted once when both
        are the same unit, as in a coupled group); owner -1 (no unit) is dropped.
        """
        n = self.groups.n_units
        total = torch.zeros(2, n + 1, dtype=torch.float64)
        for owners in self._params.values():
            if not owners.is_weight:
                continue
            active, out2, in2 = self._weight_entries(owners)
            w = active.double().flatten() * owners.spatial
            o, i = out2.flatten() % (n + 1), in2.flatten() % (n + 1)  # -1 -> n (dropped)
            per_unit = torch.bincount(o, w, n + 1) + torch.bincount(i, w, n + 1)
            per_unit -= torch.bincount(o, w * (o == i), n + 1)
            total[0] += per_unit
            total[1] += per_unit * owners.out_positions
        return total[:, :n]

    def layer_counts(self) -> list[dict[str, Tensor]]:
        """Per layer: weight ``count``/``count_active`` and activation count (``[C]`` each)."""
        return self._memo("layer_counts", self._layer_counts)

    def _layer_counts(self) -> list[dict[str, Tensor]]:
        ext = self._ext()
        out = []
        for layer in self.groups.layers:
            per_group = layer.in_unit.shape[1]
            count = torch.full((layer.channels,), float(per_group * layer.kernel))
            active_in = ext[layer.in_unit].sum(1) * layer.kernel
            hw = torch.full((layer.channels,), float(layer.out_hw))
            out.append({"weight": count, "weight_active": active_in, "activation": hw})
        return out
