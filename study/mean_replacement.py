"""Mean replacement (Evci et al. 2018): a removed channel's mean contribution stays in the network.

Pruning a channel normally drops what it fed its consumers. With mean replacement (the
protocol option ``mean_replacement = true``) its *mean* contribution is folded into each
consumer instead, so the consumers' outputs keep their mean over the data.

Definition. When units ``U`` are pruned from the live network (the parent state), every
*consumer* - a conv or linear layer whose weight has input slices owned by ``U`` (the
owner maps of :mod:`study.groups`) - loses those slices. Each of its outputs ``o`` gets

* conv: ``delta_o = mean_{n,p} sum_{(j,k) in U} W[o, j, k] * a_n[j, p + k]`` - the mean over
  the eval examples ``n`` and the output positions ``p`` of what the removed input
  channels contributed to output ``o`` (zero padding where the conv pads, stride and
  groups as the conv applies them);
* linear: ``delta_o = sum_{j in U} W[o, j] * mean_n a_n[j]`` (a flattened map's columns
  each keep their own mean);

where ``a`` is the consumer's input in the parent state: the removed channel's output
*as the consumer reads it* (after BN, nonlinearity, pooling, a residual add). Both are
linear in ``a``, so ``delta`` comes from the consumer's mean input map over the eval
batches (one forward per parent state). ``delta`` goes into the consumer's bias
(``bias += delta``); a bias-free conv followed directly by a BatchNorm takes it in that
BN's running mean instead (``running_mean -= delta``, the same function in eval mode; and
once retraining re-estimates the running statistics, a constant shift before a BN is
normalised away in any case). A consumer with neither cannot take the fold: the run
fails up front with an error naming it (every registry model qualifies: its bias-free
convs all feed a BN).

What it guarantees: the mean over the eval data of each consumer's pre-activation is the
same after the prune as before (exactly, given the consumer's other inputs), and the
masked network with its folded biases computes what the physically pruned one with the
same biases computes. The ``oracle`` reference still measures plain removal (no fold).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from study.graph import conv_sites, trace
from study.groups import ParamOwners
from taxonomy.errors import PrunetaxError

__all__ = ["Consumer", "MeanReplacement", "for_run"]

Batches = Sequence[tuple[Tensor, Tensor]]


@dataclass(frozen=True, eq=False)
class Consumer:
    """A conv or linear layer that reads prunable channels, and where its fold goes."""

    name: str  # module name
    module: nn.Module
    in_owner: Tensor  # unit of each weight input slice, broadcastable to the weight (-1 = none)
    target: str  # state key the fold is added to (a bias) or subtracted from (a running mean)
    sign: float  # +1 for a bias, -1 for a BN running mean

    def delta(self, mean_input: Tensor, units: Tensor) -> Tensor:
        """``[C_out]`` mean contribution of the input slices owned by ``units``."""
        weight = self.module.weight.detach().double()
        removed = torch.isin(self.in_owner.to(weight.device), units.to(weight.device))
        w = weight * removed
        if isinstance(self.module, nn.Linear):
            return w @ mean_input
        return self.module._conv_forward(mean_input[None], w, None).mean((0, 2, 3))


class MeanReplacement:
    """The consumers of a workspace's network, and the folds of pruned units into them.

    Parameters
    ----------
    ws
        The live network (:class:`study.unit_scores.Workspace`); folds are computed on the
        state loaded in it (the parent of a prune).
    batches
        The eval batches whose mean output is folded.
    """

    def __init__(self, ws, batches: Batches) -> None:  # noqa: ANN001 - a Workspace
        self.ws, self.batches = ws, list(batches)
        self.consumers = _consumers(ws.masked.model, ws.masked.groups.params)
        self._parent: object = None
        self._means: dict[str, Tensor] = {}

    def fold(
        self, parent: object, state: dict[str, Tensor] | None, units: Sequence[int]
    ) -> dict[str, Tensor]:
        """The state of a child of ``parent`` that prunes ``units``, their means folded in.

        ``parent`` must be loaded in the workspace; ``state`` is its weights (None = the base
        model's). The means are measured once per parent."""
        if self._parent is not parent:
            self._means, self._parent = self._mean_inputs(), parent
        base = self.ws.base if state is None else state
        out = dict(base)
        index = torch.as_tensor(list(units), dtype=torch.long)
        for c in self.consumers:
            if c.name not in self._means:  # a layer the forward never reached
                continue
            delta = c.delta(self._means[c.name], index)
            if bool(delta.any()):
                out[c.target] = out[c.target] + c.sign * delta.to(out[c.target])
        return out

    def _mean_inputs(self) -> dict[str, Tensor]:
        """Each consumer's input averaged over the eval examples (float64, batch axis dropped)."""
        sums: dict[str, Tensor] = {}

        def hook(name: str):  # noqa: ANN202
            def record(module: nn.Module, args: tuple) -> None:
                total = args[0].detach().double().sum(0)
                sums[name] = total if name not in sums else sums[name] + total

            return record

        model = self.ws.masked.model
        handles = [c.module.register_forward_pre_hook(hook(c.name)) for c in self.consumers]
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                for x, _ in self.batches:
                    model(x)
        finally:
            model.train(was_training)
            for h in handles:
                h.remove()
        n = sum(int(x.shape[0]) for x, _ in self.batches)
        return {name: total / n for name, total in sums.items()}


def _consumers(model: nn.Module, params: Sequence[ParamOwners]) -> list[Consumer]:
    """Every conv/linear weight with input slices owned by units, and where its fold goes
    (raises for one that has neither a bias nor a BN right after it)."""
    bn_after = {site.name: site.bn for site in conv_sites(trace(model))}
    out = []
    for p in params:
        if not p.is_weight or len(p.owners) < 2 or not bool((p.owners[1] >= 0).any()):
            continue
        module = model.get_submodule(p.module)
        if getattr(module, "bias", None) is not None:
            out.append(Consumer(p.module, module, p.owners[1], f"{p.module}.bias", 1.0))
        elif bn_after.get(p.module):
            out.append(Consumer(p.module, module, p.owners[1], f"{bn_after[p.module]}.running_mean", -1.0))
        else:
            raise PrunetaxError(
                f"mean_replacement folds a removed channel's mean into each consumer's bias, but "
                f"`{p.module}` ({type(module).__name__}) has no bias and no BatchNorm right after it: "
                "give it a bias, or run without mean_replacement."
            )
    return out


def for_run(ws, batches: Batches) -> MeanReplacement | None:  # noqa: ANN001 - a Workspace
    """The folds of the protocol in force (:func:`study.protocols.base.running`), None when it
    does not replace means (or none is in force)."""
    from study.protocols.base import running

    protocol = running()
    if not getattr(protocol, "mean_replacement", False):
        return None
    return MeanReplacement(ws, batches)
