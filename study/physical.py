"""Physical removal of pruned channels (for export, latency and count checks).

Slices are selected with the same owner maps the masks use, so a physically pruned
model computes what the masked one computes (tests prove it on every registry model).
Torch-Pruning finds the groups (``study.groups``) but is not used to cut tensors here:
in 1.6.1 its grouped-conv input pruning keeps the first ``n/groups`` indices instead of
the requested ones, and its ``torch.split`` index map swaps the split halves (both
measured on a 2-group conv), so a grouped conv is cut here, becoming a
:class:`SplitConv` of dense per-group convs when the groups end up uneven.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from study.masks import MaskedModel

__all__ = ["SplitConv", "physically_pruned"]


class SplitConv(nn.Module):
    """A grouped conv whose groups differ in size: one dense conv per surviving group.

    ``in_sizes`` gives the input channels of every original group (a group whose
    outputs are all pruned still receives its inputs, which are then dropped). A group
    that keeps outputs but lost all its inputs outputs its bias (or zeros): it holds no
    weights, exactly like the masked conv.
    """

    def __init__(
        self,
        convs: list[nn.Conv2d | None],
        in_sizes: list[int],
        kept: list[int],
        constants: dict[int, Tensor],
        geometry: nn.Conv2d,
    ) -> None:
        super().__init__()
        self.convs = nn.ModuleList([c for c in convs if c is not None])
        self.in_sizes, self.kept = in_sizes, kept
        self.is_conv = [c is not None for c in convs]
        for k, value in constants.items():
            self.register_buffer(f"const{k}", value)
        self.kernel_size, self.stride = geometry.kernel_size, geometry.stride
        self.padding, self.dilation = geometry.padding, geometry.dilation

    def _out_hw(self, x: Tensor) -> tuple[int, int]:
        return tuple(
            (x.shape[2 + d] + 2 * self.padding[d] - self.dilation[d] * (self.kernel_size[d] - 1) - 1)
            // self.stride[d]
            + 1
            for d in range(2)
        )

    def forward(self, x: Tensor) -> Tensor:
        parts = torch.split(x, self.in_sizes, dim=1)
        convs = iter(self.convs)
        outs = []
        for k, is_conv in zip(self.kept, self.is_conv, strict=True):
            if is_conv:
                outs.append(next(convs)(parts[k]))
            else:
                const = getattr(self, f"const{k}")
                outs.append(const.view(1, -1, 1, 1).expand(x.shape[0], -1, *self._out_hw(x)))
        return torch.cat(outs, dim=1)


def _conv_like(conv: nn.Conv2d, weight: Tensor, bias: Tensor | None, groups: int) -> nn.Conv2d:
    new = nn.Conv2d(
        weight.shape[1] * groups,
        weight.shape[0],
        conv.kernel_size,
        conv.stride,
        conv.padding,
        conv.dilation,
        groups,
        bias is not None,
        conv.padding_mode,
        device=weight.device,
        dtype=weight.dtype,
    )
    with torch.no_grad():
        new.weight.copy_(weight)
        if bias is not None:
            new.bias.copy_(bias)
    return new


def _cut_conv(conv: nn.Conv2d, keep_out: Tensor, keep_in2d: Tensor) -> nn.Module:
    """``keep_in2d`` is the ``[C_out, C_in/groups]`` bool map of kept filter inputs."""
    w, b, g = conv.weight.detach(), conv.bias, conv.groups
    bias = None if b is None else b.detach()
    depthwise = g == conv.in_channels and g > 1
    if g == 1 or depthwise:
        keep_in = keep_in2d[0] if g == 1 else torch.ones(1, dtype=torch.bool)
        new_w = w[keep_out][:, keep_in]
        return _conv_like(
            conv, new_w, None if bias is None else bias[keep_out], int(keep_out.sum()) if depthwise else 1
        )
    per_out = conv.out_channels // g
    pieces, in_sizes, kept, constants = [], [], [], {}
    for k in range(g):
        rows = torch.arange(k * per_out, (k + 1) * per_out)
        rows = rows[keep_out[rows]]
        cols = keep_in2d[k * per_out]
        in_sizes.append(int(cols.sum()))
        if rows.numel() == 0:
            continue
        kept.append(k)
        if not cols.any():  # outputs survive but every input is pruned: a constant map
            constants[k] = bias[rows].clone() if bias is not None else w.new_zeros(rows.numel())
            pieces.append(None)
            continue
        pieces.append((w[rows][:, cols], None if bias is None else bias[rows]))
    shapes = {tuple(p[0].shape[:2]) for p in pieces if p is not None}
    if len(shapes) == 1 and len(kept) == g and not constants:
        weight = torch.cat([p[0] for p in pieces])
        bias_cat = None if bias is None else torch.cat([p[1] for p in pieces])
        return _conv_like(conv, weight, bias_cat, g)
    convs = [None if p is None else _conv_like(conv, p[0], p[1], 1) for p in pieces]
    return SplitConv(convs, in_sizes, kept, constants, conv)


def _cut_vector_module(module: nn.Module, keep: Tensor) -> nn.Module:
    new = copy.deepcopy(module)
    for name, tensor in list(module.named_parameters(recurse=False)) + list(
        module.named_buffers(recurse=False)
    ):
        if tensor is not None and tensor.dim() == 1 and tensor.numel() == keep.numel():
            value = tensor.detach()[keep].clone()
            if isinstance(tensor, nn.Parameter):
                setattr(new, name, nn.Parameter(value))
            else:
                setattr(new, name, value)
    if hasattr(new, "num_features"):
        new.num_features = int(keep.sum())
    if hasattr(new, "num_parameters"):
        new.num_parameters = int(keep.sum())
    return new


def _set_module(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, attr = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, attr, module)


def physically_pruned(masked: MaskedModel) -> nn.Module:
    """A copy of the model with every pruned slice removed (the original is untouched)."""
    model = copy.deepcopy(masked.model)
    owners = {p.qualname: p for p in masked.groups.params}
    keep_of = masked.keep
    for name, module in list(model.named_modules()):
        weight = owners.get(f"{name}.weight" if name else "weight")
        if isinstance(module, nn.Conv2d) and weight is not None:
            keep_out = keep_of(weight.owners[0]).flatten()
            _set_module(model, name, _cut_conv(module, keep_out, keep_of(weight.owners[1])[:, :, 0, 0]))
        elif isinstance(module, nn.Linear) and weight is not None:
            keep_out, keep_in = keep_of(weight.owners[0]).flatten(), keep_of(weight.owners[1]).flatten()
            new = nn.Linear(
                int(keep_in.sum()),
                int(keep_out.sum()),
                module.bias is not None,
                device=module.weight.device,
                dtype=module.weight.dtype,
            )
            with torch.no_grad():
                new.weight.copy_(module.weight[keep_out][:, keep_in])
                if module.bias is not None:
                    new.bias.copy_(module.bias[keep_out])
            _set_module(model, name, new)
        elif weight is not None:  # BN / PReLU: per-channel vectors
            _set_module(model, name, _cut_vector_module(module, keep_of(weight.owners[0])))
    return model
