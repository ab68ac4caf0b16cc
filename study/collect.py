"""Statistics collection: fill the taxonomy's container from a real (masked) network.

One forward over the evaluation examples (with gradient taps only when a needed pass
asks for them), then every registered statistic pass (:mod:`study.passes`) whose
statistics the requested signals read. The loss is summed over the batch with BN in
eval mode, so a single backward yields per-example gradients; per-example weight
gradients follow by one einsum per conv, without any per-example backward.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from study.graph import TAPS, tapped_module
from study.groups import ConvLayer
from study.masks import MaskedModel
from study.passes import PASSES, PassContext, StatisticPass
from taxonomy.components import Input
from taxonomy.errors import PrunetaxError, invalid
from taxonomy.statistics import InputStats, LayerStats, Needs

__all__ = ["Collector"]

_ALWAYS = frozenset({(Input.WEIGHT, "value")})  # every LayerStats carries the filters


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
        """Statistics over ``batches`` of (inputs, labels), concatenated over examples.

        One pass over all eval examples: per-example statistics do not depend on batching
        (BN in eval mode), and one large pass costs less than several small ones.
        """
        wanted = _with_values(needs)
        passes = _passes_for(wanted)
        model = self.masked.model
        was_training = model.training
        model.eval()
        try:
            ctx = self._forward(batches, wanted, passes)
            found: dict[tuple[Input, str], list[Tensor]] = {}
            for p in passes:
                found.update({k: v for k, v in p.fn(ctx).items() if k in wanted.pairs})
        finally:
            model.train(was_training)
            self.tapped.set_grad(False)
            self.tapped.clear()
        return self._assemble(found, wanted)

    def _forward(
        self, batches: Sequence[tuple[Tensor, Tensor]], needs: Needs, passes: list[StatisticPass]
    ) -> PassContext:
        ctx = PassContext(self.tapped, self.layers, self.convs, self.tap, None, None, None, needs)
        if not any(p.data for p in passes):
            return ctx
        ctx.x, ctx.y = torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])
        grad = any(p.grad for p in passes)
        self.tapped.set_grad(grad)
        self.tapped.set_record(bool(needs.names(Input.WEIGHT) - {"value"}))
        with torch.set_grad_enabled(grad):
            ctx.logits = self.tapped.module(ctx.x)
        return ctx

    def _assemble(self, found: dict[tuple[Input, str], list[Tensor]], needs: Needs) -> list[LayerStats]:
        counts = self.masked.layer_counts()
        removed = self.masked.weights_removed().float()
        macs = self.masked.macs_removed().float()
        active = self.masked.active
        has_activation = bool(needs.names(Input.ACTIVATION))
        out = []
        for k, layer in enumerate(self.layers):
            c = counts[k]

            def stats(input_: Input, count: Tensor, count_active: Tensor, k: int = k) -> InputStats:
                tensors = {name: found[(input_, name)][k] for name in sorted(needs.names(input_))}
                return InputStats(tensors, count, count_active)

            weight = stats(Input.WEIGHT, c["weight"], c["weight_active"])
            activation = stats(Input.ACTIVATION, c["activation"], c["activation"]) if has_activation else None
            out.append(
                LayerStats(
                    layer.name,
                    weight,
                    activation,
                    removed[layer.unit].to(weight.value.dtype),
                    active[layer.unit],
                    macs[layer.unit].to(weight.value.dtype),
                )
            )
        return out


def _with_values(needs: Needs) -> Needs:
    """The needs plus the values every collected input carries (InputStats requires them)."""
    pairs = set(needs.pairs) | _ALWAYS
    if needs.names(Input.ACTIVATION):
        pairs.add((Input.ACTIVATION, "value"))
    return Needs(frozenset(pairs))


def _passes_for(needs: Needs) -> list[StatisticPass]:
    """The registered passes that provide something needed, in registration order."""
    passes = [PASSES.get(name) for name in PASSES if PASSES.get(name).provides & needs.pairs]
    provided = set().union(*(p.provides for p in passes))
    missing = sorted(f"{i.id} {name}" for i, name in needs.pairs - provided)
    if missing:
        raise PrunetaxError(
            f"no registered statistic pass provides {', '.join(missing)}; register one with "
            "`study.passes.register_pass` (see docs/extending.md)."
        )
    return passes
