"""Channel gates: the pruning states of M trajectories applied to one network in one pass.

Masks (:mod:`study.masks`) zero parameter slices in place, so a network holds one pruning
state at a time. Gates keep the base weights and multiply activations instead: for a
module whose slices belong to units (a conv, a linear layer, a BN), its output channels
by the trajectory's gate row (the filter, bias and BN entries of pruned units) and,
where needed, its input channels (the consumer slices). Masking computes
``f(x; w * m_out * m_in)``, gating ``g_out * f(g_in * x; w)``: the same products, with a
factor 0 wherever a mask puts one, so every value the network computes for an active
channel is the same (up to the summation order of a larger batch). Inputs are stacked M
times, trajectory-major, and gate row m multiplies block m of the batch.

Two kinds of gate are left out where provably redundant (fewer kernels per pass):

* a conv's output gate when its only consumer is a BN gated by the same units (the BN
  gate zeroes the channel and cuts its gradients; no score ever ranks a pruned unit, so
  the raw conv value of a pruned channel is read by nothing);
* a consumer's input gate when every input channel owned by a unit is already zero once
  that unit is gated off: reached from an output gate of the same unit through element-wise
  maps with f(0) = 0, pools, adds and flattening. An input gate that stays guards a
  network such as conv -> sigmoid -> conv (sigmoid(0) != 0).

A gate is an element-wise map of its input (``x -> g * x``, g fixed) and is typed as one
(it subclasses ``nn.ReLU``), so the LM pass (:mod:`study.lm`) propagates its squared
derivative ``g**2 = g`` like any other nonlinearity's: the second-derivative pass is gated
exactly as well.
"""

from __future__ import annotations

import operator
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, fx, nn

from study.graph import ACTIVATION_FUNCTIONS, ACTIVATIONS, _Record, _Tap
from study.groups import ChannelGroups

__all__ = ["Gate", "GateSet", "install_gates"]

_OWNERS = (nn.Conv2d, nn.Linear, nn.BatchNorm1d, nn.BatchNorm2d)
_KEEP_ZERO = (
    _Tap,
    _Record,
    nn.MaxPool2d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveMaxPool2d,
    nn.Dropout,
    nn.Identity,
    nn.Flatten,
)
_KEEP_ZERO_FUNCTIONS = {torch.flatten, F.max_pool2d, F.avg_pool2d, F.adaptive_avg_pool2d, F.dropout}
_ADDS = {operator.add, operator.iadd, torch.add}
_MULS = {operator.mul, operator.imul, torch.mul}
_KEEP_ZERO_METHODS = {"flatten", "contiguous", "relu"}


class Gate(nn.ReLU):
    """Multiplies channel ``c`` of block ``m`` of a stacked batch by ``rows[m, c]`` (identity
    while ``rows`` is None). An element-wise map, typed as an activation for the LM pass."""

    owner: Tensor  # [C] unit of each channel, -1 = none
    index: Tensor  # the same with -1 -> n_units (the always-open column of a gate table)

    def __init__(self, owner: Tensor, n_units: int) -> None:
        super().__init__()
        self.register_buffer("owner", owner.clone(), persistent=False)
        self.register_buffer("index", torch.where(owner < 0, n_units, owner), persistent=False)
        self.rows: Tensor | None = None

    def forward(self, x: Tensor) -> Tensor:
        g = self.rows
        if g is None:
            return x
        m, c = g.shape
        shape = (m, 1, c) + (1,) * (x.dim() - 2)
        return (x.reshape(m, -1, *x.shape[1:]) * g.view(shape)).reshape(x.shape)

    def extra_repr(self) -> str:
        return f"channels={self.owner.numel()}"


@dataclass
class GateSet:
    """The gates installed in one traced network, set together for each stacked pass."""

    gates: list[Gate]
    n_units: int
    device: torch.device
    dtype: torch.dtype

    @contextmanager
    def applied(self, actives: Tensor) -> Iterator[None]:
        """Gate the network for a stacked batch: row m of ``actives [M, U]`` (bool) is the
        active units of trajectory m, whose inputs are block m of the batch."""
        ones = torch.ones(actives.shape[0], 1, dtype=torch.bool)
        ext = torch.cat([actives.cpu(), ones], 1).to(self.device, self.dtype)
        for gate in self.gates:
            gate.rows = ext[:, gate.index]
        try:
            yield
        finally:
            for gate in self.gates:
                gate.rows = None


def install_gates(gm: fx.GraphModule, groups: ChannelGroups) -> GateSet:
    """Insert the gates of ``groups``' units into ``gm`` (a traced copy of the model, taps or
    not) and return them; the graph is recompiled."""
    outs, ins = _owners(gm, groups)
    param = next(gm.parameters())
    calls = [n for n in gm.graph.nodes if n.op == "call_module" and (n.target in outs or n.target in ins)]
    gates: list[Gate] = []
    gated: dict[str, Tensor] = {}  # gate module name -> owner, for the redundancy walk
    for node in calls:
        if node.target in outs and not _bn_gates_it(gm, node, outs):
            gate = Gate(outs[node.target], groups.n_units).to(param.device)
            name = f"_prunetax_gate_out_{node.name}"
            gm.add_submodule(name, gate)
            with gm.graph.inserting_after(node):
                new = gm.graph.call_module(name, (node,))
            node.replace_all_uses_with(new, delete_user_cb=lambda user, new=new: user is not new)
            gates.append(gate)
            gated[name] = outs[node.target]
    for node in calls:
        if node.target in ins and not _zero_when_off(gm, node.args[0], ins[node.target], gated):
            gate = Gate(ins[node.target], groups.n_units).to(param.device)
            name = f"_prunetax_gate_in_{node.name}"
            gm.add_submodule(name, gate)
            with gm.graph.inserting_before(node):
                new = gm.graph.call_module(name, (node.args[0],))
            node.replace_input_with(node.args[0], new)
            gates.append(gate)
    gm.recompile()
    return GateSet(gates, groups.n_units, param.device, param.dtype)


def _owners(gm: fx.GraphModule, groups: ChannelGroups) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """Unit of each output channel, and of each input channel or column, per owning module."""
    outs: dict[str, Tensor] = {}
    ins: dict[str, Tensor] = {}
    for p in groups.params:
        mod = gm.get_submodule(p.module)
        if not isinstance(mod, _OWNERS):
            continue  # e.g. PReLU: its channel is zeroed by the gate of the conv or BN before it
        out = p.owners[0].reshape(-1)
        if bool((out >= 0).any()):
            outs.setdefault(p.module, out)
        if p.is_weight and len(p.owners) > 1:
            inp = _input_owner(mod, p.owners[1])
            if bool((inp >= 0).any()):
                ins[p.module] = inp
    return outs, ins


def _input_owner(mod: nn.Module, owner: Tensor) -> Tensor:
    """``[C_in]`` (or ``[in_features]``) unit of each input channel, from a weight's input owner map."""
    if isinstance(mod, nn.Linear):
        return owner.reshape(-1)
    per_out = owner.reshape(owner.shape[0], -1)  # [C_out, C_in / groups]
    return per_out.reshape(mod.groups, -1, per_out.shape[1])[:, 0, :].reshape(-1)


def _module(gm: fx.GraphModule, node: object) -> nn.Module | None:
    if isinstance(node, fx.Node) and node.op == "call_module":
        return gm.get_submodule(node.target)
    return None


def _bn_gates_it(gm: fx.GraphModule, conv: fx.Node, outs: dict[str, Tensor]) -> bool:
    """True if ``conv``'s only consumer (past taps) is a BN whose gate covers its units."""
    users = list(conv.users)
    while len(users) == 1 and isinstance(_module(gm, users[0]), _Tap):
        users = list(users[0].users)
    if len(users) != 1 or not isinstance(_module(gm, users[0]), nn.BatchNorm2d):
        return False
    bn = users[0].target
    return bn in outs and _covers(outs[bn], outs[conv.target])


def _covers(gate: Tensor, owner: Tensor) -> bool:
    """True if ``gate`` (per channel) zeroes every slot of ``owner`` (per channel, or per
    flattened column, channel-major) owned by a unit when that unit is off."""
    c = gate.numel()
    if owner.numel() % c:
        return False
    own = owner.reshape(c, -1)
    return bool(((own == gate[:, None]) | (own < 0)).all())


def _maps_zero_to_zero(mod: nn.Module) -> bool:
    with torch.no_grad():
        probe = torch.zeros(1, getattr(mod, "num_parameters", 1))
        return bool((mod(probe) == 0).all())


def _zero_when_off(gm: fx.GraphModule, node: object, owner: Tensor, gated: dict[str, Tensor]) -> bool:
    """True if ``node``'s value is zero in every channel (or column) ``owner`` assigns to a unit,
    whenever that unit is gated off (see the module docstring)."""
    if not isinstance(node, fx.Node):
        return False
    mod = _module(gm, node)
    if node.op == "call_module":
        if node.target in gated:
            return _covers(gated[node.target], owner)
        keeps = isinstance(mod, _KEEP_ZERO) or (
            isinstance(mod, ACTIVATIONS) and not isinstance(mod, Gate) and _maps_zero_to_zero(mod)
        )
        return keeps and _zero_when_off(gm, node.args[0], owner, gated)
    if node.op == "call_function" and node.target in _ADDS:
        return all(_zero_when_off(gm, a, owner, gated) for a in node.args)
    if node.op == "call_function" and node.target in _MULS:
        return any(_zero_when_off(gm, a, owner, gated) for a in node.args)
    if node.op == "call_function" and (node.target in _KEEP_ZERO_FUNCTIONS or _zero_fn(node.target)):
        return _zero_when_off(gm, node.args[0], owner, gated)
    if node.op == "call_method" and node.target in _KEEP_ZERO_METHODS:
        return _zero_when_off(gm, node.args[0], owner, gated)
    return False


def _zero_fn(target: object) -> bool:
    """An element-wise activation function with f(0) = 0 (called with its default arguments)."""
    if target not in ACTIVATION_FUNCTIONS:
        return False
    with torch.no_grad():
        return bool((target(torch.zeros(1)) == 0).all())
