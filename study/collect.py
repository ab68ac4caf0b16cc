"""Statistics collection: fill the taxonomy's container from a real (masked) network.

One forward (and, when any signal needs gradients, one backward) over the evaluation
batches gives, for every prunable conv: activation values and per-example gradients
at the chosen tap point, the conv's input and the per-example gradient of its raw
output. Per-example weight gradients follow without any per-example backward:
``dl_n/dW[o] = sum_p dl_n/dy[n,o,p] * unfold(x)[n,:,p]`` (one einsum per conv). The loss
is summed over the batch with BN in eval mode, so a single backward yields per-example
gradients. The LM pass (``study.lm``) runs only when a requested signal needs it, and
gives the weight second derivatives by the same einsum with the input squared.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from study.graph import TAPS, tapped_module
from study.groups import ConvLayer
from study.lm import lm_second_derivatives
from study.masks import MaskedModel
from taxonomy.errors import invalid
from taxonomy.statistics import InputStats, LayerStats, Needs

__all__ = ["Collector", "per_example_weight_stat", "weight_values"]


def per_example_weight_stat(conv: nn.Conv2d, inp: Tensor, seed: Tensor) -> Tensor:
    """``[N, C_out, C_in/groups*kh*kw (+1)]``: per-example ``sum_p seed * unfold(inp)``.

    With ``seed = dl_n/dy`` this is the per-example weight gradient (bias last, as
    ``sum_p seed``); with ``inp**2`` and ``seed = h_LM`` at the conv output it is the LM
    second derivative of the weights.
    """
    n, g = inp.shape[0], conv.groups
    cols = F.unfold(inp, conv.kernel_size, conv.dilation, conv.padding, conv.stride)
    cols = cols.view(n, g, -1, cols.shape[-1])
    s = seed.reshape(n, g, conv.out_channels // g, -1)
    out = torch.einsum("ngop,ngkp->ngok", s, cols).reshape(n, conv.out_channels, -1)
    if conv.bias is not None:
        out = torch.cat([out, seed.flatten(2).sum(-1, keepdim=True)], dim=2)
    return out


def weight_values(conv: nn.Conv2d) -> Tensor:
    """``[1, C_out, E]``: each channel's filter followed by its bias (if any)."""
    w = conv.weight.detach().flatten(1)
    if conv.bias is not None:
        w = torch.cat([w, conv.bias.detach()[:, None]], dim=1)
    return w[None]


@dataclass
class _Batch:
    """Per-layer tensors of one evaluation batch."""

    act: list[Tensor | None]
    act_grad: list[Tensor | None]
    act_hess: list[Tensor | None]
    w_grad: list[Tensor | None]
    w_hess: list[Tensor | None]


class Collector:
    """Collects :class:`~taxonomy.statistics.LayerStats` for a masked model.

    Parameters
    ----------
    masked
        The model and its pruning state (masks are read live, so one collector serves a
        whole pruning trajectory).
    tap
        ``output`` (after BN and nonlinearity, default) or ``conv`` (raw conv output).
    """

    def __init__(self, masked: MaskedModel, tap: str = "output") -> None:
        if tap not in TAPS:
            raise invalid("tap", tap, TAPS)
        self.masked = masked
        self.tap = tap
        self.tapped = tapped_module(masked.model)
        self.layers: list[ConvLayer] = masked.groups.layers
        self.convs = [masked.model.get_submodule(layer.name) for layer in self.layers]

    def collect(self, batches: Sequence[tuple[Tensor, Tensor]], needs: Needs) -> list[LayerStats]:
        """Statistics over ``batches`` of (inputs, labels), concatenated over examples."""
        model = self.masked.model
        was_training = model.training
        model.eval()
        try:
            # one pass over all eval examples: per-example statistics do not depend on batching
            # (BN in eval mode), and one large pass costs less than several small ones
            x, y = torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])
            parts = [self._batch(x, y, needs)] if needs.forward else []
        finally:
            model.train(was_training)
            self.tapped.clear()
        return self._assemble(parts, needs)

    def _batch(self, x: Tensor, y: Tensor, needs: Needs) -> _Batch:
        tapped, n_layers = self.tapped, len(self.layers)
        tapped.set_grad(needs.backward)
        with torch.set_grad_enabled(needs.backward):
            logits = tapped.module(x)
        conv_nodes = [layer.site.conv_node for layer in self.layers]
        tap_nodes = [layer.site.tap_node(self.tap) for layer in self.layers]
        act = [_flat(tapped.taps[t].value) for t in tap_nodes] if needs.activation else [None] * n_layers
        act_grad, w_grad = [None] * n_layers, [None] * n_layers
        if needs.backward:
            loss = F.cross_entropy(logits, y, reduction="sum")
            names = list(dict.fromkeys(conv_nodes + tap_nodes))
            grads = dict(
                zip(names, torch.autograd.grad(loss, [tapped.taps[n].eps for n in names]), strict=True)
            )
            if "grad" in needs.activation:
                act_grad = [_flat(grads[t]) for t in tap_nodes]
            if "grad" in needs.weight:
                w_grad = [
                    per_example_weight_stat(conv, tapped.inputs[layer.name].value, grads[c])
                    for conv, layer, c in zip(self.convs, self.layers, conv_nodes, strict=True)
                ]
        act_hess, w_hess = [None] * n_layers, [None] * n_layers
        if needs.lm:
            with torch.no_grad():
                inputs = {layer.name: tapped.inputs[layer.name].value for layer in self.layers}
            h = lm_second_derivatives(tapped, x)
            if "hess" in needs.activation:
                act_hess = [_flat(h[t]) for t in tap_nodes]
            if "hess" in needs.weight:
                w_hess = [
                    per_example_weight_stat(conv, inputs[layer.name].square(), h[c])
                    for conv, layer, c in zip(self.convs, self.layers, conv_nodes, strict=True)
                ]
        tapped.set_grad(False)
        return _Batch(act, act_grad, act_hess, w_grad, w_hess)

    def _assemble(self, parts: list[_Batch], needs: Needs) -> list[LayerStats]:
        counts = self.masked.layer_counts()
        removed = self.masked.weights_removed().float()
        active = self.masked.active
        out = []
        for k, (layer, conv) in enumerate(zip(self.layers, self.convs, strict=True)):
            c = counts[k]
            weight = InputStats(
                value=weight_values(conv),
                grad=_cat([p.w_grad[k] for p in parts]) if "grad" in needs.weight else None,
                hess=_cat([p.w_hess[k] for p in parts]) if "hess" in needs.weight else None,
                count=c["weight"],
                count_active=c["weight_active"],
            )
            activation = None
            if needs.activation:
                activation = InputStats(
                    value=_cat([p.act[k] for p in parts]),
                    grad=_cat([p.act_grad[k] for p in parts]) if "grad" in needs.activation else None,
                    hess=_cat([p.act_hess[k] for p in parts]) if "hess" in needs.activation else None,
                    count=c["activation"],
                    count_active=c["activation"],
                )
            out.append(
                LayerStats(
                    layer.name,
                    weight,
                    activation,
                    removed[layer.unit].to(weight.value.dtype),
                    active[layer.unit].clone(),
                )
            )
        return out


def _flat(t: Tensor | None) -> Tensor | None:
    return None if t is None else t.detach().flatten(2)


def _cat(items: list[Tensor | None]) -> Tensor:
    parts = [t for t in items if t is not None]
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=0)
