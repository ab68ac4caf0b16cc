"""The statistics container: everything the signal bank needs, collected once.

The collector in ``study.collect`` fills one :class:`LayerStats` per prunable conv from
a forward/backward (and optional LM second-derivative) pass over the evaluation
batches; the bank in :mod:`taxonomy.bank` turns a list of them into scores for any
number of signals at once. Shapes use N = evaluation examples, C = output channels of
the conv, E = elements per channel of the input set.

Conventions
-----------
* Gradients and LM second derivatives are **per example**: ``grad[n] = dl_n/dx`` where
  ``l_n`` is example n's cross-entropy (BN in eval mode, loss summed over the batch).
* ``weight`` elements of channel i are its filter ``W[i].flatten()`` followed by its bias
  ``b_i`` when the conv has one: ``E = C_in/groups * kh * kw (+1)``.
* ``activation`` elements of channel i are its feature map ``A[n, i].flatten()``
  (``E = H*W``) at the tap point recorded by the collector.
* Pruned channels and pruned input slices are zero in every tensor (masks applied).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from taxonomy.components import Input, Pointwise
from taxonomy.errors import PrunetaxError

__all__ = ["InputStats", "LayerStats", "Needs", "POINTWISE_NEEDS"]

POINTWISE_NEEDS: dict[Pointwise, frozenset[str]] = {
    Pointwise.VALUE: frozenset({"value"}),
    Pointwise.GRADIENT: frozenset({"grad"}),
    Pointwise.TAYLOR: frozenset({"value", "grad"}),
    Pointwise.HESSIAN_LM: frozenset({"value", "hess"}),
    Pointwise.HESSIAN_GN: frozenset({"value", "grad"}),
    Pointwise.TAYLOR2_LM: frozenset({"value", "grad", "hess"}),
    Pointwise.TAYLOR2_GN: frozenset({"value", "grad"}),
    Pointwise.APOZ: frozenset({"value"}),
}
"""Which tensors (``value``, ``grad``, ``hess``) each pointwise measure reads."""


@dataclass(frozen=True)
class InputStats:
    """One input type's tensors for one layer.

    Attributes
    ----------
    value
        ``[Nv, C, E]`` element values x. ``Nv = 1`` for weights (data-free), ``N`` for
        activations.
    grad
        ``[N, C, E]`` per-example gradients ``dl_n/dx``, or None if not collected.
    hess
        ``[N, C, E]`` per-example LM diagonal second derivatives (>= 0), or None.
    count
        ``[C]`` cardinality of the element set at original size (``l0`` scaling):
        weight ``C_in/groups*kh*kw`` (bias not counted), activation ``H*W``.
    count_active
        ``[C]`` the same, counting only active input channels (``l0_active``).
    """

    value: Tensor
    grad: Tensor | None = None
    hess: Tensor | None = None
    count: Tensor = field(default_factory=lambda: torch.empty(0))
    count_active: Tensor = field(default_factory=lambda: torch.empty(0))

    def __post_init__(self) -> None:
        if self.value.dim() != 3:
            raise PrunetaxError(f"`value` must be [N, C, E]; got shape {tuple(self.value.shape)}.")
        _, c, e = self.value.shape
        for name in ("grad", "hess"):
            t = getattr(self, name)
            if t is not None and (t.dim() != 3 or tuple(t.shape[1:]) != (c, e)):
                raise PrunetaxError(f"`{name}` must be [N, {c}, {e}]; got {tuple(t.shape)}.")
        if self.grad is not None and self.hess is not None and self.grad.shape != self.hess.shape:
            raise PrunetaxError("`grad` and `hess` must have the same number of examples.")
        for name in ("count", "count_active"):
            if tuple(getattr(self, name).shape) != (c,):
                raise PrunetaxError(f"`{name}` must be [{c}]; got {tuple(getattr(self, name).shape)}.")

    @property
    def channels(self) -> int:
        return self.value.shape[1]

    def available(self) -> frozenset[str]:
        """Names of the tensors present."""
        return frozenset(n for n in ("value", "grad", "hess") if getattr(self, n) is not None)


@dataclass(frozen=True)
class LayerStats:
    """Statistics of one prunable conv layer.

    Attributes
    ----------
    name
        Qualified module name of the conv (``layer1.0.conv1``).
    weight, activation
        Per-input tensors; ``activation`` is None when only weight signals are needed.
    weights_removed
        ``[C]`` weights removed transitively if the channel (its coupled group) is pruned,
        at the current state of the network (``weights_removed`` scaling).
    active
        ``[C]`` bool, False for pruned channels; layer norms (``l1``/``l2`` scaling) sum
        over active channels only.
    """

    name: str
    weight: InputStats
    activation: InputStats | None
    weights_removed: Tensor
    active: Tensor

    def __post_init__(self) -> None:
        c = self.weight.channels
        if self.activation is not None and self.activation.channels != c:
            raise PrunetaxError(
                f"layer {self.name}: activation has {self.activation.channels} channels, weight has {c}."
            )
        for name in ("weights_removed", "active"):
            if tuple(getattr(self, name).shape) != (c,):
                raise PrunetaxError(f"layer {self.name}: `{name}` must be [{c}].")

    @property
    def channels(self) -> int:
        return self.weight.channels

    def stats_for(self, input_: Input) -> InputStats:
        """The tensors of one input type (raises if not collected)."""
        stats = self.weight if input_ is Input.WEIGHT else self.activation
        if stats is None:
            raise PrunetaxError(f"layer {self.name}: no {input_.id} statistics were collected.")
        return stats


@dataclass(frozen=True)
class Needs:
    """What a set of signals requires from the collector, per input type."""

    weight: frozenset[str] = frozenset()
    activation: frozenset[str] = frozenset()

    @classmethod
    def of(cls, signals) -> Needs:  # noqa: ANN001 - iterable of SignalSpec
        """Union of the tensors read by ``signals`` (references need nothing here)."""
        need = {Input.WEIGHT: set(), Input.ACTIVATION: set()}
        for s in signals:
            if not s.is_reference:
                need[s.input] |= POINTWISE_NEEDS[s.pointwise]
        return cls(frozenset(need[Input.WEIGHT]), frozenset(need[Input.ACTIVATION]))

    @property
    def backward(self) -> bool:
        """True if any per-example gradient is needed."""
        return "grad" in self.weight or "grad" in self.activation

    @property
    def lm(self) -> bool:
        """True if the LM second-derivative pass is needed."""
        return "hess" in self.weight or "hess" in self.activation

    @property
    def forward(self) -> bool:
        """True if a data pass is needed at all (weight values alone are data-free)."""
        return bool(self.activation) or bool(self.weight - {"value"})
