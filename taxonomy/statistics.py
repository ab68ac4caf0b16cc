"""The statistics container: everything the signal bank needs, collected once.

The collector in ``study.collect`` fills one :class:`LayerStats` per prunable conv from
the registered statistic passes (forward values, per-example gradients, the LM
second-derivative pass, ...); the bank in :mod:`taxonomy.bank` turns a list of them into
scores for any number of signals at once. Shapes use N = evaluation examples, C = output
channels of the conv, E = elements per channel of the input set.

Conventions
-----------
* Statistics are named tensors: ``value`` ``[Nv, C, E]`` (``Nv = 1`` for weights, which are
  data-free), and per-example statistics ``[N, C, E]`` such as ``grad`` (``dl_n/dx``, where
  ``l_n`` is example n's cross-entropy, BN in eval mode, loss summed over the batch) and
  ``hess`` (the per-example LM diagonal second derivative, >= 0). A pointwise measure says
  which names it reads (:attr:`taxonomy.components.Pointwise.needs`).
* ``weight`` elements of channel i are its filter ``W[i].flatten()`` followed by its bias
  ``b_i`` when the conv has one: ``E = C_in/groups * kh * kw (+1)``.
* ``activation`` elements of channel i are its feature map ``A[n, i].flatten()``
  (``E = H*W``) at the tap point recorded by the collector.
* Pruned channels and pruned input slices are zero in every tensor (masks applied).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from torch import Tensor

from taxonomy.components import Input
from taxonomy.errors import PrunetaxError

__all__ = ["InputStats", "LayerStats", "Needs"]


@dataclass(frozen=True)
class InputStats:
    """One input type's statistics for one layer.

    Attributes
    ----------
    tensors
        Statistic name -> tensor: ``value`` ``[Nv, C, E]`` always; every other statistic
        ``[N, C, E]`` with the same N.
    count
        ``[C]`` cardinality of the element set at original size (``l0`` scaling):
        weight ``C_in/groups*kh*kw`` (bias not counted), activation ``H*W``.
    count_active
        ``[C]`` the same, counting only active input channels (``l0_active``).
    """

    tensors: Mapping[str, Tensor]
    count: Tensor
    count_active: Tensor

    def __post_init__(self) -> None:
        if "value" not in self.tensors:
            raise PrunetaxError("statistics must include `value` (the elements themselves).")
        value = self.tensors["value"]
        if value.dim() != 3:
            raise PrunetaxError(f"`value` must be [N, C, E]; got shape {tuple(value.shape)}.")
        _, c, e = value.shape
        examples = set()
        for name, t in self.tensors.items():
            if name != "value":
                if t.dim() != 3 or tuple(t.shape[1:]) != (c, e):
                    raise PrunetaxError(f"`{name}` must be [N, {c}, {e}]; got {tuple(t.shape)}.")
                examples.add(t.shape[0])
        if len(examples) > 1:
            raise PrunetaxError("per-example statistics must have the same number of examples.")
        for name in ("count", "count_active"):
            if tuple(getattr(self, name).shape) != (c,):
                raise PrunetaxError(f"`{name}` must be [{c}]; got {tuple(getattr(self, name).shape)}.")

    @property
    def value(self) -> Tensor:
        return self.tensors["value"]

    def __getitem__(self, name: str) -> Tensor:
        return self.tensors[name]

    def get(self, name: str) -> Tensor | None:
        return self.tensors.get(name)

    @property
    def channels(self) -> int:
        return self.value.shape[1]

    def available(self) -> frozenset[str]:
        """Names of the statistics present."""
        return frozenset(self.tensors)


@dataclass(frozen=True)
class LayerStats:
    """Statistics of one prunable conv layer.

    Attributes
    ----------
    name
        Qualified module name of the conv (``layer1.0.conv1``).
    weight, activation
        Per-input statistics; ``activation`` is None when only weight signals are needed.
    weights_removed
        ``[C]`` weights removed transitively if the channel (its coupled group) is pruned,
        at the current state of the network (``weights_removed`` scaling).
    active
        ``[C]`` bool, False for pruned channels; layer norms (``l1``/``l2`` scaling) sum
        over active channels only.
    macs_removed
        ``[C]`` multiply-adds (per image) removed transitively if the channel's unit is
        pruned, at the current state (``macs_removed`` scaling). Optional so that hand-built
        statistics need not invent it: scoring a ``macs_removed`` signal without it is an error.
    """

    name: str
    weight: InputStats
    activation: InputStats | None
    weights_removed: Tensor
    active: Tensor
    macs_removed: Tensor | None = None

    def __post_init__(self) -> None:
        c = self.weight.channels
        if self.activation is not None and self.activation.channels != c:
            raise PrunetaxError(
                f"layer {self.name}: activation has {self.activation.channels} channels, weight has {c}."
            )
        for name in ("weights_removed", "active", "macs_removed"):
            value = getattr(self, name)
            if value is not None and tuple(value.shape) != (c,):
                raise PrunetaxError(f"layer {self.name}: `{name}` must be [{c}].")

    @property
    def channels(self) -> int:
        return self.weight.channels

    def stats_for(self, input_: Input) -> InputStats:
        """The statistics of one input type (raises if not collected)."""
        stats = self.weight if input_ is Input.WEIGHT else self.activation
        if stats is None:
            raise PrunetaxError(f"layer {self.name}: no {input_.id} statistics were collected.")
        return stats


@dataclass(frozen=True)
class Needs:
    """The statistics a set of signals reads: (input, statistic name) pairs."""

    pairs: frozenset[tuple[Input, str]] = field(default_factory=frozenset)

    @classmethod
    def of(cls, signals: Iterable) -> Needs:  # iterable of SignalSpec
        """Union of the statistics read by ``signals`` (references need none here)."""
        pairs = {(s.input, name) for s in signals if not s.is_reference for name in s.pointwise.needs}
        return cls(frozenset(pairs))

    @classmethod
    def from_names(cls, by_input: Mapping[Input, Iterable[str]]) -> Needs:
        """``{Input.WEIGHT: {"value", "grad"}, ...}`` as a :class:`Needs`."""
        return cls(frozenset((i, name) for i, names in by_input.items() for name in names))

    def names(self, input_: Input) -> frozenset[str]:
        """Statistic names needed for one input type."""
        return frozenset(name for i, name in self.pairs if i is input_)

    def __bool__(self) -> bool:
        return bool(self.pairs)
