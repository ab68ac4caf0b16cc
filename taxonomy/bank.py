"""The signal bank: statistics -> scores of many signals at once (SPEC §2.2-2.4).

One engine composes the registered component functions (each option's ``fn`` in
:mod:`taxonomy.components`). Work is shared: the element tensors of a layer are read
once per needed (input, pointwise) pair, products like ``x*g`` are computed once and
reused by ``taylor``, ``hessian_gn`` and ``taylor2_gn``, each per-example sum feeds several
reductions, and all scalings are applied to all base scores with tensor ops. The result
is one ``[signals x channels]`` matrix; there is no Python loop over signals x channels.

To find where a signal is computed: its pointwise measure, reduction and scaling are
records in :mod:`taxonomy.components` (``Pointwise.TAYLOR.fn`` ...); :func:`score`
composes them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import torch
from torch import Tensor

from taxonomy.components import Input
from taxonomy.errors import PrunetaxError
from taxonomy.spec import SignalSpec, parse
from taxonomy.statistics import InputStats, LayerStats

__all__ = ["score", "layer_offsets", "Elements", "Sums", "Layout", "UnitMap"]


class Elements:
    """One layer's element tensors for one input, with shared products computed once."""

    def __init__(self, stats: InputStats) -> None:
        self.stats = stats

    def __getitem__(self, name: str) -> Tensor:
        """Any collected statistic by name (``e["grad"]``)."""
        return self.stats[name]

    @property
    def x(self) -> Tensor:
        return self.stats.value

    @property
    def g(self) -> Tensor:
        return self.stats["grad"]

    @property
    def h(self) -> Tensor:
        return self.stats["hess"]

    @cached_property
    def xg(self) -> Tensor:
        return self.x * self.g

    @cached_property
    def half_xg2(self) -> Tensor:
        return 0.5 * self.xg.square()

    @cached_property
    def half_x2h(self) -> Tensor:
        return 0.5 * self.x.square() * self.h


class Sums:
    """Per-example element sums of a pointwise tensor, ``[N, C]`` each (None = not needed).

    ``signed`` (sum f) feeds ``sum``, ``abs_sum`` and ``sqr_sum``; ``absolute`` (sum |f|) feeds
    ``l1``; ``squares`` (sum f^2) feeds ``l2``. Sums over the elements of several channels
    add, which is what makes a coupled unit's pooled score (:meth:`pool`) exact.
    """

    def __init__(self, signed: Tensor | None, absolute: Tensor | None, squares: Tensor | None) -> None:
        self.signed, self.absolute, self.squares = signed, absolute, squares

    @classmethod
    def of(cls, f: Tensor, kinds: set[str]) -> Sums:
        """The sums of ``f [N, C, E]`` named in ``kinds``."""
        return cls(
            f.sum(-1) if "signed" in kinds else None,
            f.abs().sum(-1) if "absolute" in kinds else None,
            f.square().sum(-1) if "squares" in kinds else None,
        )

    @classmethod
    def cat(cls, parts: Sequence[Sums]) -> Sums:
        """Layers side by side along the channel axis."""
        return cls(*(_cat([getattr(p, k) for p in parts]) for k in _KINDS))

    def pool(self, units: UnitMap) -> Sums:
        """Per-example sums over each unit's members: the unit as one channel of their union."""
        return Sums(*(units.add(getattr(self, k)) for k in _KINDS))


_KINDS = ("signed", "absolute", "squares")


def _cat(items: list[Tensor | None]) -> Tensor | None:
    return None if items[0] is None else torch.cat(items, dim=1)


_SUM_OF = {"sum": "signed", "abs_sum": "signed", "sqr_sum": "signed", "l1": "absolute", "l2": "squares"}


def _kinds(reduction) -> set[str]:  # noqa: ANN001 - a Reduction
    """Which sums a reduction reads (every one for a registered reduction we do not know)."""
    return {_SUM_OF[reduction.id]} if reduction.id in _SUM_OF else set(_KINDS)


@dataclass(frozen=True)
class UnitMap:
    """Coupled units: ``unit[c]`` is the unit of channel c (layer order), ``n_units`` their count."""

    unit: Tensor
    n_units: int

    def add(self, x: Tensor | None) -> Tensor | None:
        """``[K, C] -> [K, U]``: sum over each unit's member channels."""
        if x is None:
            return None
        return x.new_zeros(x.shape[0], self.n_units).index_add_(1, self.unit.to(x.device), x)

    def pick(self, x: Tensor) -> Tensor:
        """``[K, C] -> [K, U]``: a value every member of a unit shares (any member's)."""
        out = x.new_zeros(x.shape[0], self.n_units)
        return out.index_copy_(1, self.unit.to(x.device), x)


class Layout:
    """Where each layer's channels sit in the concatenated channel axis."""

    def __init__(self, layers: Sequence[LayerStats], device: torch.device | None = None) -> None:
        """``device``: where the scores are (counts collected on the CPU are moved there)."""
        sizes = [layer.channels for layer in layers]
        self.device = device
        self.layer_id = torch.repeat_interleave(torch.arange(len(layers)), torch.tensor(sizes)).to(device)
        self.n_layers = len(layers)
        self.active = torch.cat([layer.active for layer in layers]).to(device)
        self.weights_removed = torch.cat([layer.weights_removed for layer in layers]).to(device)
        self.layers = layers

    @cached_property
    def macs_removed(self) -> Tensor:
        """``[C]`` MACs removed transitively per channel's unit (read only by ``macs_removed`` cells)."""
        missing = [layer.name for layer in self.layers if layer.macs_removed is None]
        if missing:
            raise PrunetaxError(
                f"layer {missing[0]} carries no `macs_removed`: collect the statistics with "
                "study.collect.Collector, or pass `macs_removed=` to LayerStats."
            )
        return torch.cat([layer.macs_removed for layer in self.layers]).to(self.device)

    def per_layer_sum(self, x: Tensor) -> Tensor:
        """Sum ``x [K, C]`` over active channels of each layer, broadcast back to ``[K, C]``."""
        x = torch.where(self.active, x, torch.zeros((), dtype=x.dtype))
        sums = x.new_zeros(x.shape[0], self.n_layers).index_add_(1, self.layer_id, x)
        return sums[:, self.layer_id]

    def counts(self, input_: Input, attr: str) -> Tensor:
        return torch.cat([getattr(layer.stats_for(input_), attr) for layer in self.layers]).to(self.device)


def layer_offsets(layers: Sequence[LayerStats]) -> dict[str, slice]:
    """Column slice of each layer (by name) in the score matrix."""
    out, start = {}, 0
    for layer in layers:
        out[layer.name] = slice(start, start + layer.channels)
        start += layer.channels
    return out


def _check_available(spec: SignalSpec, layers: Sequence[LayerStats]) -> None:
    need = spec.pointwise.needs
    for layer in layers:
        try:
            have = layer.stats_for(spec.input).available()
        except PrunetaxError as err:
            raise PrunetaxError(f"signal {spec.id}: {err}") from None
        if not need <= have:
            missing = ", ".join(sorted(need - have))
            raise PrunetaxError(
                f"signal {spec.id} needs {spec.input.id} {missing} but layer "
                f"{layer.name} has none: collect with the signal's Needs."
            )


def _sums(keys: list[tuple], layers: Sequence[LayerStats]) -> dict[tuple, Sums]:
    """Per-example sums of every needed (input, pointwise) pair, all channels side by side.

    One layer at a time: its element tensors are read once, each pointwise tensor is
    reduced to the sums its reductions need, and only those ``[N, C]`` sums are kept.
    """
    kinds: dict[tuple, set[str]] = {}
    for i, p, r in keys:
        kinds.setdefault((i, p), set()).update(_kinds(r))
    parts: dict[tuple, list[Sums]] = {pair: [] for pair in kinds}
    for layer in layers:
        elements = {i: Elements(layer.stats_for(i)) for i in {i for i, _ in kinds}}
        for (i, p), needed in kinds.items():
            parts[(i, p)].append(Sums.of(p.fn(elements[i]), needed))
    return {pair: Sums.cat(found) for pair, found in parts.items()}


def _reduce(keys: list[tuple], sums: dict[tuple, Sums]) -> Tensor:
    """``[K, C]`` (or ``[K, U]``) unscaled scores of each (input, pointwise, reduction) key."""
    return torch.stack([r.fn(sums[(i, p)]) for i, p, r in keys])


def score(
    signals: Sequence[SignalSpec | str], layers: Sequence[LayerStats], units: UnitMap | None = None
) -> Tensor:
    """Scores of every signal for every channel, ``[len(signals), sum of C]``, or for every
    coupled unit, ``[len(signals), n_units]``, when ``units`` is given.

    Columns follow ``layers`` in order (see :func:`layer_offsets`). Scores of pruned
    channels are computed like any other (they are zero for most signals); the
    protocol excludes them, and layer norms ignore them.

    A unit's score is *pooled*: the unit is one channel whose element set is the union of
    its members' elements. Per-example sums add over the members before ``abs_sum`` and
    ``sqr_sum`` take the magnitude or the square; the denominator of a scaling pools as
    the scaling says (:attr:`taxonomy.components.Scaling.pooling`): element counts
    (``l0``, ``l0_active``) and layer norms (``l1``, ``l2``: each member's own layer's
    norm, over that layer's channel scores) add over the members, while unit-level
    quantities (``none``, ``weights_removed``, ``macs_removed``) are the unit's own.

    Raises
    ------
    PrunetaxError
        For a reference signal (``random``/``oracle`` are not computed from statistics),
        or when a needed tensor was not collected.
    """
    specs = [parse(s) for s in signals]
    if not specs:
        raise PrunetaxError("no signals to score: pass at least one signal id.")
    if not layers:
        raise PrunetaxError("no layers to score: the statistics list is empty.")
    for spec in specs:
        if spec.is_reference:
            raise PrunetaxError(
                f"{spec.id!r} is a reference signal; the bank scores taxonomy "
                "signals only (the protocol handles random and oracle)."
            )
        _check_available(spec, layers)
    keys = list(dict.fromkeys((s.input, s.pointwise, s.reduction) for s in specs))
    sums = _sums(keys, layers)
    base = _reduce(keys, sums)
    pooled = None if units is None else _reduce(keys, {pair: z.pool(units) for pair, z in sums.items()})
    layout = Layout(layers, base.device)
    row_of = {key: k for k, key in enumerate(keys)}
    out = base.new_empty(len(specs), base.shape[1] if units is None else units.n_units)
    groups: dict[tuple, list[int]] = {}
    for n, s in enumerate(specs):
        groups.setdefault((s.input, s.scaling), []).append(n)
    for (i, sc), idx in groups.items():
        rows = [row_of[(specs[n].input, specs[n].pointwise, specs[n].reduction)] for n in idx]
        denominator = sc.fn(base[rows], layout, i)
        if units is None:
            out[idx] = base[rows] / denominator
        else:
            pool = units.add if sc.pooling == "sum" else units.pick
            out[idx] = pooled[rows] / pool(denominator)
    return out
