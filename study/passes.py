"""Statistic passes: each is one function plus one registration (SPEC §2.2 "needs").

A pass computes some named statistics, for every prunable conv, from one collection
context: the tapped network after one forward over the evaluation examples (with
gradient taps when any pass asks for them). :class:`study.collect.Collector` runs
exactly the passes whose statistics the requested signals read
(:attr:`taxonomy.components.Pointwise.needs`), in registration order, so a later pass
may reuse what an earlier one left in ``ctx.shared``.

Built in: ``weights`` (filter values, data-free), ``forward`` (activation values at the
tap), ``backward`` (per-example activation and weight gradients from one backward of the
summed loss) and ``lm`` (the Levenberg-Marquardt second-derivative pass of
:mod:`study.lm`). To add a statistic: write ``fn(ctx) -> {(input, name): [tensor per
layer]}`` and :func:`register_pass` it; any pointwise measure can then read ``name``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from study.graph import Tapped
from study.groups import ConvLayer
from study.lm import lm_second_derivatives
from taxonomy.components import Input
from taxonomy.registry import Registry
from taxonomy.statistics import Needs

__all__ = ["PassContext", "StatisticPass", "PASSES", "register_pass", "per_example_weight_stat", "flat"]

Stat = tuple[Input, str]


@dataclass
class PassContext:
    """What a pass may read: the tapped network after the forward, the data and the needs.

    ``taps`` maps an fx node name to its recorded tensor; ``shared`` carries intermediate
    results between passes of one collection (e.g. the gradients at every tap node).
    """

    tapped: Tapped
    layers: list[ConvLayer]
    convs: list[nn.Conv2d]
    tap: str
    x: Tensor | None
    y: Tensor | None
    logits: Tensor | None
    needs: Needs
    shared: dict = field(default_factory=dict)

    @property
    def conv_nodes(self) -> list[str]:
        return [layer.site.conv_node for layer in self.layers]

    @property
    def tap_nodes(self) -> list[str]:
        return [layer.site.tap_node(self.tap) for layer in self.layers]

    def wants(self, input_: Input, name: str) -> bool:
        return (input_, name) in self.needs.pairs

    def conv_inputs(self) -> list[Tensor]:
        """Each conv's input from the forward (for per-example weight statistics)."""
        return [self.tapped.inputs[layer.name].value for layer in self.layers]


@dataclass(frozen=True)
class StatisticPass:
    """A registered pass.

    Attributes
    ----------
    name
        Registry name.
    provides
        The (input, statistic) pairs it can compute.
    fn
        ``fn(ctx) -> {(input, name): [tensor per layer]}``; per-layer tensors are
        ``[N, C, E]`` (``[1, C, E]`` for data-free weight values).
    data
        True if it needs the forward over the evaluation examples.
    grad
        True if that forward must expose gradients at the tap nodes.
    """

    name: str
    provides: frozenset[Stat]
    fn: Callable[[PassContext], dict[Stat, list[Tensor]]]
    data: bool = True
    grad: bool = False


PASSES: Registry[StatisticPass] = Registry("statistic pass")


def register_pass(
    name: str, provides: set[Stat], fn: Callable, *, data: bool = True, grad: bool = False
) -> StatisticPass:
    """Register a statistic pass (see :class:`StatisticPass`)."""
    return PASSES.add(name, StatisticPass(name, frozenset(provides), fn, data, grad))


def flat(t: Tensor) -> Tensor:
    """``[N, C, H, W] -> [N, C, H*W]``, detached."""
    return t.detach().flatten(2)


def per_example_weight_stat(conv: nn.Conv2d, inp: Tensor, seed: Tensor) -> Tensor:
    """``[N, C_out, C_in/groups*kh*kw (+1)]``: per-example ``sum_p seed * unfold(inp)``.

    With ``seed = dl_n/dy`` this is the per-example weight gradient (bias last, as
    ``sum_p seed``); with ``inp**2`` and ``seed = h_LM`` at the conv output it is the LM
    second derivative of the weights. No per-example backward is needed.
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


def _weights(ctx: PassContext) -> dict[Stat, list[Tensor]]:
    return {(Input.WEIGHT, "value"): [weight_values(conv) for conv in ctx.convs]}


def _forward(ctx: PassContext) -> dict[Stat, list[Tensor]]:
    taps = ctx.tapped.taps
    return {(Input.ACTIVATION, "value"): [flat(taps[t].value) for t in ctx.tap_nodes]}


def _backward(ctx: PassContext) -> dict[Stat, list[Tensor]]:
    taps = ctx.tapped.taps
    loss = F.cross_entropy(ctx.logits, ctx.y, reduction="sum")
    names = list(dict.fromkeys(ctx.conv_nodes + ctx.tap_nodes))
    grads = dict(zip(names, torch.autograd.grad(loss, [taps[n].eps for n in names]), strict=True))
    out: dict[Stat, list[Tensor]] = {}
    if ctx.wants(Input.ACTIVATION, "grad"):
        out[(Input.ACTIVATION, "grad")] = [flat(grads[t]) for t in ctx.tap_nodes]
    if ctx.wants(Input.WEIGHT, "grad"):
        out[(Input.WEIGHT, "grad")] = [
            per_example_weight_stat(conv, inp, grads[c])
            for conv, inp, c in zip(ctx.convs, ctx.conv_inputs(), ctx.conv_nodes, strict=True)
        ]
    return out


def _lm(ctx: PassContext) -> dict[Stat, list[Tensor]]:
    with torch.no_grad():
        inputs = ctx.conv_inputs()
    h = lm_second_derivatives(ctx.tapped, ctx.x)
    out: dict[Stat, list[Tensor]] = {}
    if ctx.wants(Input.ACTIVATION, "hess"):
        out[(Input.ACTIVATION, "hess")] = [flat(h[t]) for t in ctx.tap_nodes]
    if ctx.wants(Input.WEIGHT, "hess"):
        out[(Input.WEIGHT, "hess")] = [
            per_example_weight_stat(conv, inp.square(), h[c])
            for conv, inp, c in zip(ctx.convs, inputs, ctx.conv_nodes, strict=True)
        ]
    return out


register_pass("weights", {(Input.WEIGHT, "value")}, _weights, data=False)
register_pass("forward", {(Input.ACTIVATION, "value")}, _forward)
register_pass("backward", {(Input.ACTIVATION, "grad"), (Input.WEIGHT, "grad")}, _backward, grad=True)
register_pass("lm", {(Input.ACTIVATION, "hess"), (Input.WEIGHT, "hess")}, _lm)
