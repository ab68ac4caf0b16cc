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
from functools import cached_property

import torch
from torch import Tensor

from taxonomy.components import Input
from taxonomy.errors import PrunetaxError
from taxonomy.spec import SignalSpec, parse
from taxonomy.statistics import InputStats, LayerStats

__all__ = ["score", "layer_offsets", "Elements", "Sums", "Layout"]


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
    """Per-example element sums of one pointwise tensor ``f``: each computed once."""

    def __init__(self, f: Tensor) -> None:
        self.f = f

    @cached_property
    def signed(self) -> Tensor:
        return self.f.sum(-1)

    @cached_property
    def absolute(self) -> Tensor:
        return self.f.abs().sum(-1)

    @cached_property
    def squares(self) -> Tensor:
        return self.f.square().sum(-1)


class Layout:
    """Where each layer's channels sit in the concatenated channel axis."""

    def __init__(self, layers: Sequence[LayerStats]) -> None:
        sizes = [layer.channels for layer in layers]
        self.layer_id = torch.repeat_interleave(torch.arange(len(layers)), torch.tensor(sizes))
        self.n_layers = len(layers)
        self.active = torch.cat([layer.active for layer in layers])
        self.weights_removed = torch.cat([layer.weights_removed for layer in layers])
        self.layers = layers

    def per_layer_sum(self, x: Tensor) -> Tensor:
        """Sum ``x [K, C]`` over active channels of each layer, broadcast back to ``[K, C]``."""
        x = torch.where(self.active, x, torch.zeros((), dtype=x.dtype))
        sums = x.new_zeros(x.shape[0], self.n_layers).index_add_(1, self.layer_id, x)
        return sums[:, self.layer_id]

    def counts(self, input_: Input, attr: str) -> Tensor:
        return torch.cat([getattr(layer.stats_for(input_), attr) for layer in self.layers])


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


def _base_scores(keys: list[tuple], layers: Sequence[LayerStats]) -> Tensor:
    """Unscaled scores ``[K, C]`` for each (input, pointwise, reduction) key."""
    pairs: dict[tuple, list[int]] = {}
    for k, (i, p, _) in enumerate(keys):
        pairs.setdefault((i, p), []).append(k)
    columns = []
    for layer in layers:
        col = [None] * len(keys)
        elements = {i: Elements(layer.stats_for(i)) for i in {i for i, _ in pairs}}
        for (i, p), rows in pairs.items():
            sums = Sums(p.fn(elements[i]))
            for k in rows:
                col[k] = keys[k][2].fn(sums)
        columns.append(torch.stack(col))
    return torch.cat(columns, dim=1)


def score(signals: Sequence[SignalSpec | str], layers: Sequence[LayerStats]) -> Tensor:
    """Scores of every signal for every channel: ``[len(signals), sum of C]``.

    Columns follow ``layers`` in order (see :func:`layer_offsets`). Scores of pruned
    channels are computed like any other (they are zero for most signals); the
    protocol excludes them, and layer norms ignore them.

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
    base = _base_scores(keys, layers)
    layout = Layout(layers)
    row_of = {key: k for k, key in enumerate(keys)}
    out = base.new_empty(len(specs), base.shape[1])
    groups: dict[tuple, list[int]] = {}
    for n, s in enumerate(specs):
        groups.setdefault((s.input, s.scaling), []).append(n)
    for (i, sc), idx in groups.items():
        rows = base[[row_of[(specs[n].input, specs[n].pointwise, specs[n].reduction)] for n in idx]]
        out[idx] = rows / sc.fn(rows, layout, i)
    return out
