"""Coupled channel groups (Torch-Pruning's DependencyGraph) as index maps.

A *unit* is one prunable channel of a coupled group: pruning it removes the filter of
every coupled conv channel (residual adds, depthwise convs), their biases and BN
entries, and every consumer's input slice (convs, and the linear columns of a
flattened map). Torch-Pruning finds the coupling; here it is turned into plain tensors:
for every parameter, an *owner* map per dimension giving the unit each slice belongs to
(-1 = no unit). Masks, counts and ``weights_removed`` are all computed from these maps
(see :mod:`study.masks`), so no model code is special-cased.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache

import torch
import torch_pruning as tp
from torch import Tensor, nn

from study.graph import ConvSite, conv_sites, trace
from taxonomy.equivalence import Context
from taxonomy.errors import PrunetaxError

__all__ = ["ParamOwners", "ConvLayer", "ChannelGroups", "build_groups", "network_context"]


@dataclass
class ParamOwners:
    """Unit owner maps of one parameter; each map broadcasts to the parameter's shape."""

    module: str
    param: str
    owners: list[Tensor]
    is_weight: bool  # a conv/linear weight: counts toward sparsity and weights_removed
    spatial: int = 1  # kh*kw for conv weights (FLOPs and per-channel counts)
    out_positions: int = 1  # H_out*W_out of a conv (FLOPs = positions x weights)

    @property
    def qualname(self) -> str:
        return f"{self.module}.{self.param}" if self.module else self.param


@dataclass
class ConvLayer:
    """A prunable conv: a layer of the statistics and of the score matrix."""

    site: ConvSite
    unit: Tensor  # [C_out] unit of each output channel
    in_unit: Tensor  # [C_out, C_in/groups] unit of each filter input slice (-1 = none)
    kernel: int  # kh*kw
    out_hw: int  # H_out*W_out at the model's input size
    has_bias: bool

    @property
    def name(self) -> str:
        return self.site.name

    @property
    def channels(self) -> int:
        return self.unit.numel()


@dataclass
class ChannelGroups:
    """The static coupling structure of a model (computed once per architecture)."""

    n_units: int
    unit_group: Tensor  # [U] group index
    group_roots: list[str]  # root conv of each group
    group_sizes: list[int]
    layers: list[ConvLayer]
    params: list[ParamOwners]
    input_shape: tuple[int, ...]
    members: Tensor = field(init=False)  # [sum C] unit of every layer channel, layer order

    def __post_init__(self) -> None:
        self.members = torch.cat([layer.unit for layer in self.layers])

    @property
    def coupled(self) -> bool:
        """True if some unit spans several conv channels (residual adds, concatenations,
        depthwise convs): then a unit's score must pool its members (and rule 4c may break)."""
        return bool(torch.bincount(self.members, minlength=self.n_units).max() > 1)

    def unit_names(self) -> list[str]:
        """A readable id per unit: ``root_conv:channel``."""
        names = []
        for g, (root, size) in enumerate(zip(self.group_roots, self.group_sizes, strict=True)):
            names.extend(f"{root}:{j}" for j in range(size))
            del g
        return names


def _handler_kind(dg: tp.DependencyGraph, handler: object) -> str:
    return "out" if dg.is_out_channel_pruning_fn(handler) else "in"


class _OwnerTable:
    """Accumulates owner vectors per (module, dim) from Torch-Pruning group items."""

    def __init__(self, model: nn.Module) -> None:
        self.modules = dict(model.named_modules())
        self.out: dict[str, Tensor] = {}
        self.inp: dict[str, Tensor] = {}

    def _vec(self, table: dict[str, Tensor], name: str, size: int) -> Tensor:
        if name not in table:
            table[name] = torch.full((size,), -1, dtype=torch.long)
        return table[name]

    def add(self, name: str, module: nn.Module, kind: str, idxs: list[int], units: list[int]) -> None:
        if isinstance(module, nn.Conv2d):
            size = module.out_channels if kind == "out" else module.in_channels
        elif isinstance(module, nn.Linear):
            size = module.out_features if kind == "out" else module.in_features
        elif isinstance(module, nn.BatchNorm2d | nn.BatchNorm1d):
            size, kind = module.num_features, "out"
        elif isinstance(module, nn.PReLU) and module.num_parameters > 1:
            size, kind = module.num_parameters, "out"
        else:
            raise PrunetaxError(
                f"module {name} ({type(module).__name__}) is coupled to a pruned "
                "channel but prunetax cannot mask it."
            )
        vec = self._vec(self.out if kind == "out" else self.inp, name, size)
        vec[torch.tensor(idxs, dtype=torch.long)] = torch.tensor(units, dtype=torch.long)


def _conv_in_owner(conv: nn.Conv2d, in_vec: Tensor | None) -> Tensor:
    """``[C_out, C_in/groups]`` unit of each filter input slice of a (grouped) conv."""
    c_out, per_group = conv.out_channels, conv.in_channels // conv.groups
    if conv.groups == conv.in_channels and conv.groups > 1:  # depthwise: coupled to the output
        return torch.full((c_out, 1), -1, dtype=torch.long)
    if in_vec is None:
        return torch.full((c_out, per_group), -1, dtype=torch.long)
    group_of_out = torch.arange(c_out) // (c_out // conv.groups)
    index = group_of_out[:, None] * per_group + torch.arange(per_group)[None, :]
    return in_vec[index]


def _param_owners(table: _OwnerTable, out_hw: dict[str, int]) -> list[ParamOwners]:
    params = []
    for name, module in table.modules.items():
        out = table.out.get(name)
        if isinstance(module, nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1]
            out_vec = out if out is not None else torch.full((module.out_channels,), -1)
            in_map = _conv_in_owner(module, table.inp.get(name))
            params.append(
                ParamOwners(
                    name,
                    "weight",
                    [out_vec.view(-1, 1, 1, 1), in_map[:, :, None, None]],
                    True,
                    k,
                    out_hw.get(name, 0),
                )
            )
            if module.bias is not None:
                params.append(ParamOwners(name, "bias", [out_vec], False))
        elif isinstance(module, nn.Linear):
            out_vec = out if out is not None else torch.full((module.out_features,), -1)
            in_vec = table.inp.get(name, torch.full((module.in_features,), -1))
            params.append(ParamOwners(name, "weight", [out_vec.view(-1, 1), in_vec.view(1, -1)], True))
            if module.bias is not None:
                params.append(ParamOwners(name, "bias", [out_vec], False))
        elif out is not None:  # BN / PReLU
            for pname, p in module.named_parameters(recurse=False):
                if p.dim() == 1 and p.numel() == out.numel():
                    params.append(ParamOwners(name, pname, [out], False))
    return params


def _conv_out_hw(model: nn.Module, example: Tensor) -> dict[str, int]:
    sizes: dict[str, int] = {}
    hooks = [
        m.register_forward_hook(lambda mod, a, out, n=n: sizes.__setitem__(n, out.shape[-2] * out.shape[-1]))
        for n, m in model.named_modules()
        if isinstance(m, nn.Conv2d)
    ]
    try:
        with torch.no_grad():
            model(example)
    finally:
        for h in hooks:
            h.remove()
    return sizes


def build_groups(model: nn.Module, input_shape: tuple[int, ...]) -> ChannelGroups:
    """Coupled groups of ``model`` for inputs of shape ``(C, H, W)``.

    Every conv is a root candidate; linear layers are never units, they only lose the
    input columns of pruned channels.
    """
    was_training = model.training
    model.eval()
    example = torch.zeros(1, *input_shape, device=next(model.parameters()).device)
    try:
        dg = tp.DependencyGraph().build_dependency(model, example_inputs=example, verbose=False)
        out_hw = _conv_out_hw(model, example)
    finally:
        model.train(was_training)
    names = {m: n for n, m in model.named_modules()}
    table = _OwnerTable(model)
    roots, sizes, offset = [], [], 0
    for group in dg.get_all_groups(root_module_types=(nn.Conv2d,)):
        root = group[0].dep.target.module
        roots.append(names[root])
        sizes.append(root.out_channels)
        for item in group.items:
            module = item.dep.target.module
            if not isinstance(module, nn.Module) or module not in names:
                continue  # element-wise, reshape and concat ops hold no parameters
            units = [offset + int(r) for r in item.root_idxs]
            table.add(names[module], module, _handler_kind(dg, item.dep.handler), list(item.idxs), units)
        offset += root.out_channels
    unit_group = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes, dtype=torch.long))
    layers = []
    for site in conv_sites(trace(model)):
        conv = model.get_submodule(site.name)
        unit = table.out.get(site.name)
        if unit is None or bool((unit < 0).any()):
            continue  # not prunable (Torch-Pruning found no group for it)
        layers.append(
            ConvLayer(
                site,
                unit,
                _conv_in_owner(conv, table.inp.get(site.name)),
                conv.kernel_size[0] * conv.kernel_size[1],
                out_hw[site.name],
                conv.bias is not None,
            )
        )
    return ChannelGroups(
        offset, unit_group, roots, sizes, layers, _param_owners(table, out_hw), tuple(input_shape)
    )


@cache
def _model_coupled(model: str) -> bool:
    from study import models

    size = max(32, models.entry(model).min_image_size)  # coupling does not depend on sizes
    net = models.build(model, 3, 10, size)
    return build_groups(net, (3, size, size)).coupled


def network_context(model: str, aggregation: str = "pooled") -> Context:
    """The equivalence context of registry model ``model`` under ``aggregation``: which rules
    hold at the unit level, hence which cells are distinct (built once per model, untrained)."""
    return Context(_model_coupled(model), aggregation)
