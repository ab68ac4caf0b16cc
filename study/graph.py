"""The traced graph of a model: prunable convs, tap points and tap insertion (torch.fx).

Statistics are read at a *tap point* per conv (SPEC §2.1): ``conv`` is the raw conv
output (bias included); ``output`` follows the conv through a BN and then an
element-wise nonlinearity while each is the sole consumer, i.e. the channel's own
feature map as the next layer consumes it (before any add, concat or pool). Taps are
inserted as nodes in a :class:`torch.fx.GraphModule` that shares the model's modules
and parameters, so masks applied to the model are seen by the tapped copy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import get_args

import torch
import torch.nn.functional as F
from torch import fx, nn

from study.saliency import Tap
from taxonomy.errors import PrunetaxError, invalid

__all__ = [
    "TAPS",
    "Tap",
    "ACTIVATIONS",
    "ACTIVATION_FUNCTIONS",
    "ConvSite",
    "trace",
    "conv_sites",
    "Tapped",
    "tapped_module",
]

TAPS: tuple[str, ...] = get_args(Tap)

ACTIVATIONS: tuple[type[nn.Module], ...] = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.Hardtanh,
    nn.ELU,
    nn.SiLU,
    nn.GELU,
    nn.Hardswish,
    nn.Sigmoid,
    nn.Tanh,
    nn.PReLU,
)
ACTIVATION_FUNCTIONS = frozenset(
    {
        F.relu,
        torch.relu,
        F.relu6,
        F.leaky_relu,
        F.hardtanh,
        F.silu,
        F.gelu,
        torch.sigmoid,
        torch.tanh,
        F.hardswish,
        F.elu,
    }
)
"""Element-wise nonlinearities called as functions (tap chains and the LM pass know them)."""


def trace(model: nn.Module) -> fx.GraphModule:
    """Symbolically trace ``model`` (clear error if the model is not traceable)."""
    try:
        return fx.symbolic_trace(model)
    except Exception as err:  # fx raises many types for untraceable code
        raise PrunetaxError(
            f"model {type(model).__name__} cannot be traced by torch.fx ({err}); prunetax needs a "
            "traceable forward (no data-dependent control flow)."
        ) from err


def _module(gm: fx.GraphModule, node: fx.Node) -> nn.Module | None:
    return gm.get_submodule(node.target) if node.op == "call_module" else None


def _is_activation(gm: fx.GraphModule, node: fx.Node) -> bool:
    if node.op == "call_module":
        return isinstance(_module(gm, node), ACTIVATIONS)
    return node.op == "call_function" and node.target in ACTIVATION_FUNCTIONS


@dataclass(frozen=True)
class ConvSite:
    """A prunable conv in the traced graph and its tap nodes."""

    name: str  # qualified module name
    conv_node: str  # fx node name of the conv call
    output_node: str  # fx node name of the `output` tap
    bn: str | None  # qualified name of the BN that follows, if any
    activation: str | None  # fx node name of the nonlinearity that follows, if any

    def tap_node(self, tap: str) -> str:
        if tap not in TAPS:
            raise invalid("tap", tap, TAPS)
        return self.conv_node if tap == "conv" else self.output_node


def _sole_user(node: fx.Node) -> fx.Node | None:
    users = list(node.users)
    return users[0] if len(users) == 1 else None


def conv_sites(gm: fx.GraphModule) -> list[ConvSite]:
    """Every ``nn.Conv2d`` call in graph order, with its BN/nonlinearity chain."""
    sites, seen = [], set()
    for node in gm.graph.nodes:
        mod = _module(gm, node)
        if not isinstance(mod, nn.Conv2d):
            continue
        if node.target in seen:
            raise PrunetaxError(
                f"conv {node.target} is called twice in forward; prunetax needs each conv used once."
            )
        seen.add(node.target)
        out, bn, act = node, None, None
        nxt = _sole_user(out)
        if nxt is not None and isinstance(_module(gm, nxt), nn.BatchNorm2d):
            out, bn = nxt, nxt.target
            nxt = _sole_user(out)
        if nxt is not None and _is_activation(gm, nxt):
            out, act = nxt, nxt.name
        sites.append(ConvSite(node.target, node.name, out.name, bn, act))
    return sites


class _Tap(nn.Module):
    """Records the tensor flowing through; adds ``eps`` (zeros) to expose its gradient.

    Without gradients the tensor itself flows on, and an in-place op after it (a
    ``ReLU(inplace=True)``) would overwrite what was recorded: the record is then a copy.
    """

    def __init__(self) -> None:
        super().__init__()
        self.value: torch.Tensor | None = None
        self.eps: torch.Tensor | None = None
        self.with_grad = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.with_grad:
            self.value = x.detach().clone()
            return x
        self.value = x.detach()  # x + eps flows on: x itself is never written again
        self.eps = torch.zeros_like(x, requires_grad=True)
        return x + self.eps


class _Record(nn.Module):
    """Records a conv's input (for per-example weight statistics) and passes it on; off
    when no pass reads it, and a copy without gradients (in-place ops may follow)."""

    def __init__(self) -> None:
        super().__init__()
        self.value: torch.Tensor | None = None
        self.enabled = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.enabled:
            self.value = x.detach() if torch.is_grad_enabled() else x.detach().clone()
        return x


@dataclass
class Tapped:
    """A traced copy of a model with a tap after every conv and every `output` node."""

    module: fx.GraphModule
    sites: list[ConvSite]
    taps: dict[str, _Tap]  # fx node name -> tap module
    inputs: dict[str, _Record]  # conv module name -> recorder of its input

    def set_grad(self, on: bool) -> None:
        for tap in self.taps.values():
            tap.with_grad = on
            tap.eps = None

    def set_record(self, on: bool) -> None:
        """Record the convs' inputs in the next forward (per-example weight statistics)."""
        for rec in self.inputs.values():
            rec.enabled = on

    def clear(self) -> None:
        for rec in self.inputs.values():
            rec.value = None
        for tap in self.taps.values():
            tap.value = tap.eps = None


def tapped_module(model: nn.Module) -> Tapped:
    """Trace ``model`` and insert taps at every conv output and every `output` tap node."""
    gm = trace(model)
    sites = conv_sites(gm)
    nodes = {n.name: n for n in gm.graph.nodes}
    taps: dict[str, _Tap] = {}
    for node_name in dict.fromkeys([s.conv_node for s in sites] + [s.output_node for s in sites]):
        node = nodes[node_name]
        tap = _Tap()
        attr = f"_prunetax_tap_{node_name}"
        gm.add_submodule(attr, tap)
        with gm.graph.inserting_after(node):
            new = gm.graph.call_module(attr, (node,))
        node.replace_all_uses_with(new, delete_user_cb=lambda user, new=new: user is not new)
        taps[node_name] = tap
    inputs: dict[str, _Record] = {}
    for site in sites:
        node = nodes[site.conv_node]
        rec = _Record()
        attr = f"_prunetax_input_{site.conv_node}"
        gm.add_submodule(attr, rec)
        with gm.graph.inserting_before(node):
            new = gm.graph.call_module(attr, (node.args[0],))
        node.replace_input_with(node.args[0], new)
        inputs[site.name] = rec
    gm.recompile()
    return Tapped(gm, sites, taps, inputs)
