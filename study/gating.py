"""Channel gates as data: one 0/1 (or soft) gate per unit, applied by one mechanism.

A :class:`GatedNetwork` is a traced copy of a model (sharing its modules and parameters)
with a :class:`GateSite` after the ``output`` tap of every prunable conv (after its BN and
nonlinearity: what the next layer consumes), multiplying each channel by its unit's gate.
The gates are either *set* from outside, ``[U]`` for the whole batch (CUCB's per-step
channel subset) or ``[N, U]`` per input, or *computed* per input by a small head per group
(:mod:`study.protocols.gated`). A gate of 0 makes a channel contribute nothing downstream
and get no gradient: the network computes what the network without that channel computes
(tested against masking and physical removal).

:class:`MacForm` counts what a gated network executes: remaining weights and MACs are
quadratic forms ``g^T M g`` of the unit gates, built from the same owner maps as
:class:`study.masks.MaskedModel` (equal to its counts for any 0/1 vector, tested), so the
executed multiply-adds of every image under per-input gates are exact, and their
expectation under independent Bernoulli gates has a closed form.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, fx, nn

from study.graph import conv_sites, trace
from study.groups import ChannelGroups
from taxonomy.errors import PrunetaxError

__all__ = ["MacForm", "GateSite", "GatedNetwork", "masked_sgd_step", "bn_units", "keep_bn_stats"]

_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)

HeadFn = Callable[[int, Tensor], Tensor]
"""``head(group, conv_input) -> [N, n_group]`` gates of a group's units, computed per input."""


class MacForm:
    """Weights and MACs (per image) of a network whose units carry gates ``g`` in [0, 1].

    ``M[a, b]`` sums, over every conv/linear weight entry whose output slice belongs to
    unit ``a`` and input slice to unit ``b`` (index ``U`` = no unit, gate 1), the MACs the
    entry costs per image (kernel area x output positions); ``W`` the same with weights.
    Both are sparse (a unit pair shares a weight only between neighbouring layers), so the
    form costs one sparse product per call, on networks of thousands of units too.
    """

    def __init__(self, groups: ChannelGroups) -> None:
        n = groups.n_units + 1
        self.n_units = groups.n_units
        pairs, weights, macs = [], [], []
        for owners in groups.params:
            if not owners.is_weight:
                continue
            out, inp = (o.reshape(o.shape[0], -1) for o in owners.owners)
            shape = (max(out.shape[0], inp.shape[0]), max(out.shape[1], inp.shape[1]))  # 2-D broadcast
            pair = (out.expand(shape).flatten() % n) * n + inp.expand(shape).flatten() % n  # -1 -> U
            pair, count = torch.unique(pair, return_counts=True)
            pairs.append(pair)
            weights.append(count.double() * owners.spatial)
            macs.append(count.double() * owners.spatial * owners.out_positions)
        pair = torch.cat(pairs) if pairs else torch.zeros(0, dtype=torch.long)
        index = torch.stack([pair // n, pair % n])
        self.macs_matrix = _sparse(index, torch.cat(macs) if macs else torch.zeros(0), n)
        self.weights_matrix = _sparse(index, torch.cat(weights) if weights else torch.zeros(0), n)
        self._moved: dict[tuple[int, str], Tensor] = {}

    def _ext(self, gates: Tensor) -> Tensor:
        g = gates.double()
        return torch.cat([g, g.new_ones(*g.shape[:-1], 1)], dim=-1)

    def _on(self, matrix: Tensor, device: torch.device) -> Tensor:
        key = (id(matrix), str(device))
        if key not in self._moved:
            self._moved[key] = matrix.to(device)
        return self._moved[key]

    def _form(self, matrix: Tensor, gates: Tensor, bernoulli: bool) -> Tensor:
        g = self._ext(gates)
        rows = g.reshape(-1, g.shape[-1])
        m = self._on(matrix, g.device)
        value = (torch.sparse.mm(m, rows.T).T * rows).sum(-1)  # g^T M^T g = g^T M g per row
        if bernoulli:  # E[b_u b_u] = p_u, not p_u^2: a weight whose input and output are the same unit
            diag = self._on(self._diagonal(matrix), g.device)
            value = value + ((rows - rows * rows) * diag).sum(-1)
        return value.reshape(g.shape[:-1])

    def _diagonal(self, matrix: Tensor) -> Tensor:
        index, values = matrix.indices(), matrix.values()
        on = index[0] == index[1]
        return torch.zeros(matrix.shape[0], dtype=torch.float64).index_add_(0, index[0][on], values[on])

    def macs(self, gates: Tensor, bernoulli: bool = False) -> Tensor:
        """MACs per image for gates ``[U]`` or ``[N, U]`` (one value per row). With 0/1 gates the
        executed count; with ``bernoulli`` the expectation when unit u runs with probability g_u."""
        return self._form(self.macs_matrix, gates, bernoulli)

    def weights(self, gates: Tensor) -> Tensor:
        """Conv + linear weights of the executed units (0/1 gates ``[U]`` or ``[N, U]``)."""
        return self._form(self.weights_matrix, gates, False)


def _sparse(index: Tensor, values: Tensor, n: int) -> Tensor:
    return torch.sparse_coo_tensor(index, values.double(), (n, n), check_invariants=True).coalesce()


class GateSite(nn.Module):
    """Multiplies one conv's output channels by their units' gates (see :class:`GatedNetwork`)."""

    def __init__(
        self, net: GatedNetwork, conv: str, unit: Tensor, group: int, offset: int, computes: bool
    ) -> None:
        super().__init__()
        self._net = [net]  # a plain list: the network is not a submodule of its sites
        self.conv = conv  # the conv whose channels it gates
        self.register_buffer("unit", unit.clone(), persistent=False)
        self.group, self.offset, self.computes = group, offset, computes

    def forward(self, x: Tensor, conv_input: Tensor) -> Tensor:
        net = self._net[0]
        if net.head is not None:
            if self.computes:
                net.computed[self.group] = net.head(self.group, conv_input)
            g = net.computed[self.group][:, self.unit - self.offset]
        elif net.gates is not None:
            g = net.gates[..., self.unit]
        else:
            return x
        g = g.to(x.dtype)
        return x * (g[:, :, None, None] if g.dim() == 2 else g[None, :, None, None])


class GatedNetwork:
    """A traced copy of ``model`` (same parameters) with a gate after every prunable conv.

    Set :attr:`gates` (``[U]`` or ``[N, U]``, None = all on) or :attr:`head` (per-input
    gates computed at the first conv of each group, in graph order, from that conv's input;
    None = off) and call it like the model. After a forward with a head, :meth:`unit_gates`
    gives the ``[N, U]`` gates it used.
    """

    def __init__(self, model: nn.Module, groups: ChannelGroups) -> None:
        self.model, self.groups = model, groups
        self.gates: Tensor | None = None
        self.head: HeadFn | None = None
        self.computed: dict[int, Tensor] = {}
        self.offsets = [0]
        for size in groups.group_sizes:
            self.offsets.append(self.offsets[-1] + size)
        self.module, self.sites = self._build(model)

    def _build(self, model: nn.Module) -> tuple[fx.GraphModule, list[GateSite]]:
        gm = trace(model)
        layers = {layer.name: layer for layer in self.groups.layers}
        nodes = {n.name: n for n in gm.graph.nodes}
        sites, seen = [], set()
        device = next(model.parameters()).device
        for site in conv_sites(gm):
            layer = layers.get(site.name)
            if layer is None:
                continue
            group = torch.unique(self.groups.unit_group[layer.unit])
            if group.numel() != 1:
                raise PrunetaxError(f"conv {site.name} spans several coupled groups; it cannot be gated.")
            g = int(group)
            gate = GateSite(self, site.name, layer.unit, g, self.offsets[g], g not in seen).to(device)
            seen.add(g)
            out, conv = nodes[site.output_node], nodes[site.conv_node]
            _check_gate_point(gm, site.name, out)
            attr = f"_prunetax_gate_{site.conv_node}"
            gm.add_submodule(attr, gate)
            with gm.graph.inserting_after(out):
                new = gm.graph.call_module(attr, (out, conv.args[0]))
            out.replace_all_uses_with(new, delete_user_cb=lambda user, new=new: user is not new)
            sites.append(gate)
        gm.recompile()
        return gm, sites

    @property
    def head_groups(self) -> list[int]:
        """Groups whose gates a head computes (those with a gated conv), in graph order."""
        return [s.group for s in self.sites if s.computes]

    def __call__(self, x: Tensor) -> Tensor:
        self.computed = {}
        return self.module(x)

    def unit_gates(self) -> Tensor:
        """``[N, U]`` gates the last forward with a head used (1 for units without a gate)."""
        return self.assemble(self.computed)

    def assemble(self, per_group: dict[int, Tensor]) -> Tensor:
        """``[N, U]`` from ``[N, n_group]`` values of some groups (1 for the other units)."""
        first = next(iter(per_group.values()))
        out = first.new_ones(first.shape[0], self.groups.n_units)
        for g, value in per_group.items():
            out[:, self.offsets[g] : self.offsets[g + 1]] = value
        return out


def _check_gate_point(gm: fx.GraphModule, conv: str, out: fx.Node) -> None:
    """A gate must switch a channel off for every consumer: none may be a BN fed the raw
    (gated) conv output, which would turn the zeros into its shift (masking zeroes the BN too)."""
    for user in out.users:
        if user.op == "call_module" and isinstance(gm.get_submodule(user.target), _BN):
            raise PrunetaxError(
                f"conv {conv} feeds a BN and another consumer; its channels cannot be gated at one point "
                "(gate after the BN: give the BN its own single input)."
            )


def masked_sgd_step(
    params: list[tuple[Tensor, Tensor | None]],
    buffers: list[Tensor | None],
    lr: float,
    momentum: float,
    weight_decay: float,
) -> None:
    """One SGD step (PyTorch's: d = grad + wd p, buf = momentum buf + d, p -= lr buf) on the
    entries where each parameter's mask (broadcastable 0/1, None = all) is 1; elsewhere the
    parameter and its momentum stay as they were. ``buffers[i]`` is None before the first step."""
    with torch.no_grad():
        for i, (p, mask) in enumerate(params):
            grad = p.grad if p.grad is not None else torch.zeros_like(p)
            d = grad + weight_decay * p
            buf = buffers[i]
            new = d.clone() if buf is None else momentum * buf + d
            if mask is None:
                buffers[i] = new
                p.sub_(lr * new)
                continue
            m = mask.to(device=p.device, dtype=p.dtype).expand_as(p)
            buffers[i] = new * m if buf is None else torch.where(m.bool(), new, buf)
            p.sub_(lr * buffers[i] * m)


def bn_units(model: nn.Module, groups: ChannelGroups) -> list[tuple[nn.BatchNorm2d, Tensor]]:
    """Every BN whose channels belong to units, with its ``[C]`` unit map."""
    out = []
    for owners in groups.params:
        module = model.get_submodule(owners.module) if owners.module else model
        if owners.param == "weight" and isinstance(module, _BN) and module.running_mean is not None:
            out.append((module, owners.owners[0]))
    return out


def keep_bn_stats(
    bns: list[tuple[nn.BatchNorm2d, Tensor]], before: list[tuple[Tensor, Tensor]], on: Tensor
) -> None:
    """Undo a training forward's running-statistics update on channels of units not ``on``."""
    ext = torch.cat([on, on.new_ones(1)])
    with torch.no_grad():
        for (bn, units), (mean, var) in zip(bns, before, strict=True):
            keep = ext[units].to(bn.running_mean.device)
            bn.running_mean.copy_(torch.where(keep, bn.running_mean, mean))
            bn.running_var.copy_(torch.where(keep, bn.running_var, var))
