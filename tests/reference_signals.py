"""A slow, obviously-correct reference of SPEC §2: the oracle the signal bank is tested against.

Written independently of :mod:`taxonomy.bank` (it never imports it): every score is
computed with explicit Python loops over layers, channels, examples and elements, on
plain floats, straight from the formulas of the SPEC tables. It is meant to be read,
not to be fast.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from taxonomy.components import Input, Pointwise, Reduction, Scaling
from taxonomy.errors import PrunetaxError
from taxonomy.spec import SignalSpec
from taxonomy.statistics import InputStats, LayerStats

__all__ = ["reference_score", "pointwise", "reduce"]


def pointwise(p: Pointwise, x: float, g: float, h: float, mean: float = math.nan) -> float:
    """f(x) of SPEC §2.2 for one element of one example; ``mean`` is the element's mean over
    the examples (read by ``centered`` only)."""
    if p is Pointwise.CENTERED:
        return x - mean
    if p is Pointwise.VALUE:
        return x
    if p is Pointwise.GRADIENT:
        return g
    if p is Pointwise.TAYLOR:
        return -x * g
    if p is Pointwise.HESSIAN_LM:
        return 0.5 * x * x * h
    if p is Pointwise.HESSIAN_GN:
        return 0.5 * (x * g) ** 2
    if p is Pointwise.TAYLOR2_LM:
        return -x * g + 0.5 * x * x * h
    if p is Pointwise.TAYLOR2_GN:
        return -x * g + 0.5 * (x * g) ** 2
    if p is Pointwise.APOZ:
        return 1.0 if x > 0 else 0.0
    raise AssertionError(p)


def reduce(r: Reduction, fs: list[float]) -> float:
    """The per-example reduction of SPEC §2.3 over one channel's elements."""
    if r is Reduction.SUM:
        return sum(fs)
    if r is Reduction.L1:
        return sum(abs(f) for f in fs)
    if r is Reduction.L2:
        return sum(f * f for f in fs)
    if r is Reduction.ABS_SUM:
        return abs(sum(fs))
    if r is Reduction.SQR_SUM:
        return sum(fs) ** 2
    raise AssertionError(r)


def _as_list(t: torch.Tensor | None) -> list | None:
    return None if t is None else t.double().tolist()


_READS_GRAD = {
    Pointwise.GRADIENT,
    Pointwise.TAYLOR,
    Pointwise.HESSIAN_GN,
    Pointwise.TAYLOR2_LM,
    Pointwise.TAYLOR2_GN,
}
_READS_HESS = {Pointwise.HESSIAN_LM, Pointwise.TAYLOR2_LM}


def _unscaled(spec: SignalSpec, stats: InputStats) -> list[float]:
    """S_i of every channel of one layer: mean over examples of the per-example reduction."""
    p, r = spec.pointwise, spec.reduction
    value = _as_list(stats.value)
    grad = _as_list(stats.get("grad")) if p in _READS_GRAD else None
    hess = _as_list(stats.get("hess")) if p in _READS_HESS else None
    if p in _READS_GRAD and grad is None:
        raise PrunetaxError(f"reference: {spec.id} needs grad")
    if p in _READS_HESS and hess is None:
        raise PrunetaxError(f"reference: {spec.id} needs hess")
    # Examples: one per gradient/hessian row when those are read; otherwise the value rows
    # (a single data-free row for weights, N rows for activations).
    per_example = grad if grad is not None else hess if hess is not None else value
    n_examples = len(per_example)
    n_channels, n_elements = stats.value.shape[1], stats.value.shape[2]
    scores = []
    for c in range(n_channels):
        # The mean of each element over the value rows (one data-free row for weights).
        means = [sum(row[c][e] for row in value) / len(value) for e in range(n_elements)]
        total = 0.0
        for n in range(n_examples):
            # A weight value has one row shared by every example (broadcast).
            xs = value[0][c] if len(value) == 1 else value[n][c]
            fs = []
            for e in range(n_elements):
                g = grad[n][c][e] if grad is not None else math.nan
                h = hess[n][c][e] if hess is not None else math.nan
                fs.append(pointwise(p, xs[e], g, h, means[e]))
            total += reduce(r, fs)
        scores.append(total / n_examples)
    return scores


def _or_one(d: float) -> float:
    return 1.0 if d == 0 else d


def _denominators(spec: SignalSpec, layer: LayerStats, stats: InputStats, s: list[float]) -> list[float]:
    """D of SPEC §2.4 for each channel of one layer."""
    active = layer.active.tolist()
    sc = spec.scaling
    if sc is Scaling.NONE:
        return [1.0] * len(s)
    if sc is Scaling.L1:
        d = sum(abs(v) for v, a in zip(s, active, strict=True) if a)
        return [_or_one(d)] * len(s)
    if sc is Scaling.L2:
        d = math.sqrt(sum(v * v for v, a in zip(s, active, strict=True) if a))
        return [_or_one(d)] * len(s)
    if sc is Scaling.L0:
        return [float(c) for c in stats.count.tolist()]
    if sc is Scaling.L0_ACTIVE:
        return [_or_one(float(c)) for c in stats.count_active.tolist()]
    if sc is Scaling.WEIGHTS_REMOVED:
        return [_or_one(float(w)) for w in layer.weights_removed.tolist()]
    if sc is Scaling.MACS_REMOVED:
        if layer.macs_removed is None:
            raise PrunetaxError(f"reference: {spec.id} needs macs_removed")
        return [_or_one(float(m)) for m in layer.macs_removed.tolist()]
    raise AssertionError(sc)


def reference_score(spec: SignalSpec, layers: Sequence[LayerStats]) -> torch.Tensor:
    """Scores of one taxonomy signal for every channel of ``layers``: float64 ``[sum C]``."""
    if spec.is_reference:
        raise PrunetaxError(f"reference: {spec.id} is not a taxonomy signal")
    out: list[float] = []
    for layer in layers:
        stats = layer.weight if spec.input is Input.WEIGHT else layer.activation
        if stats is None:
            raise PrunetaxError(f"reference: {spec.id} needs {spec.input.id} statistics")
        s = _unscaled(spec, stats)
        d = _denominators(spec, layer, stats, s)
        out.extend(v / dv for v, dv in zip(s, d, strict=True))
    return torch.tensor(out, dtype=torch.float64)


# --------------------------------------------------------------------------------------
# Test data: a chain of convs with a masked (partly pruned) state, shared by the bank and
# equivalence tests and the benchmark. Not part of the reference computation above.


def random_layers(
    shapes: Sequence[tuple[int, int, int, bool]],
    n: int,
    seed: int,
    in_channels: int = 3,
    dtype: torch.dtype = torch.float64,
    inactive: float = 0.25,
    dead: int | None = None,
    classes: int = 10,
    masked: bool = True,
) -> list[LayerStats]:
    """Random statistics of a chain of convs ``shapes = [(C, k, H*W, bias), ...]``.

    Mimics a masked network so that every scaling branch is exercised:

    * about ``inactive`` of each layer's channels are pruned (at least one; at least two
      stay active): zero in every tensor and ``weights_removed`` 0; the next layer's
      matching input slices are zero, so its weight ``count_active < count``;
    * ``dead`` prunes every channel of that layer: zero layer norms, and a zero
      ``count_active`` downstream;
    * ``masked=False`` leaves pruned channels' own tensors non-zero (a collector that
      forgot a mask): layer norms must still ignore them;
    * activation values have both signs and exact zeros (for ``apoz``); LM second
      derivatives are >= 0; activation ``count_active == count`` (a map has no input
      channels);
    * weights removed = own active filter + the next layer's active slices (a
      ``classes``-way linear head after the last conv) + for about 30% of the channels a
      coupled producer's filter (as across a residual add); MACs removed count each of
      those weights once per output position of its layer (``H*W``; the head's once).
    """
    gen = torch.Generator().manual_seed(seed)

    def randn(*size: int) -> torch.Tensor:
        return torch.randn(*size, generator=gen, dtype=dtype)

    actives = []
    for index, (c, _, _, _) in enumerate(shapes):
        active = torch.rand(c, generator=gen) >= inactive
        order = torch.randperm(c, generator=gen)
        active[order[:2]] = True  # at least two active channels ...
        active[order[2:3]] = False  # ... and at least one pruned
        actives.append(active & (index != dead))
    layers = []
    for index, (c, k, hw, bias) in enumerate(shapes):
        active = actives[index]
        in_active = actives[index - 1] if index else torch.ones(in_channels, dtype=torch.bool)
        c_in = in_active.numel()
        # Weight elements: W[i].flatten() (input-channel major, k*k each) then the bias.
        keep = torch.cat([in_active.repeat_interleave(k * k), torch.ones(int(bias), dtype=torch.bool)])
        own = active if masked else torch.ones_like(active)
        w_mask = (own[:, None] & keep[None, :]).to(dtype)
        e_w = c_in * k * k + int(bias)
        weight = InputStats(
            {
                "value": randn(1, c, e_w) * w_mask,
                "grad": randn(n, c, e_w) * w_mask,
                "hess": randn(n, c, e_w).abs() * w_mask,
            },
            count=torch.full((c,), c_in * k * k),
            count_active=torch.full((c,), int(in_active.sum()) * k * k),
        )
        a_mask = own[None, :, None].to(dtype)
        a_value = randn(n, c, hw) * (torch.rand(n, c, hw, generator=gen) > 0.2).to(dtype)
        activation = InputStats(
            {
                "value": a_value * a_mask,
                "grad": randn(n, c, hw) * a_mask,
                "hess": randn(n, c, hw).abs() * a_mask,
            },
            count=torch.full((c,), hw),
            count_active=torch.full((c,), hw),
        )
        consumer, consumer_macs = _consumer_slices(shapes, actives, index, classes)
        # Some channels are coupled to another producer (e.g. a residual add): its filter too.
        coupled = (torch.rand(c, generator=gen) < 0.3).long() * int(in_active.sum()) * k * k
        own = int(in_active.sum()) * k * k + coupled
        removed = torch.where(active, own + consumer, 0)
        macs = torch.where(active, own * hw + consumer_macs, 0)
        layers.append(LayerStats(f"conv{index}", weight, activation, removed, active, macs))
    return layers


def _consumer_slices(
    shapes: Sequence[tuple[int, int, int, bool]], actives: list[torch.Tensor], index: int, classes: int
) -> tuple[int, int]:
    """Weights and MACs of one channel's slices in the next layer's active filters (the last
    conv feeds a ``classes``-way linear head over its ``H*W`` map: one MAC per weight)."""
    if index + 1 == len(shapes):
        return classes * shapes[index][2], classes * shapes[index][2]
    _, k_next, hw_next, _ = shapes[index + 1]
    weights = int(actives[index + 1].sum()) * k_next * k_next
    return weights, weights * hw_next
