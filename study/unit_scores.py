"""Unit scoring as a service: every signal's score of every unit of the live network.

The pruning loop, rank-quality jobs and ``prunetax scores`` all score through here. A
:class:`Workspace` is the one live network of a work unit (masks, weight snapshots, the
statistics collector and the oracle's parameter slices, built once). :func:`unit_scores`
scores taxonomy signals from one shared statistics pass (the signal bank, then the
channel scores of each coupled unit combined) and reference signals with the scorer
registered under their name in :data:`REFERENCE_SCORERS` (``random``, ``oracle``, ...).
Lower scores are pruned first.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from study.collect import Collector
from study.groups import ChannelGroups
from study.masks import MaskedModel
from study.oracle import oracle_scores, unit_slices
from study.voting import voting_scores
from taxonomy.bank import UnitMap, score
from taxonomy.errors import PrunetaxError
from taxonomy.registry import Registry
from taxonomy.spec import SignalSpec
from taxonomy.statistics import Needs

__all__ = [
    "Workspace",
    "ScoringContext",
    "REFERENCE_SCORERS",
    "register_reference",
    "unit_scores",
    "reduce_to_units",
    "AGGREGATIONS",
]

Batches = Sequence[tuple[Tensor, Tensor]]
AGGREGATIONS = ("pooled", "sum", "mean", "max")


class Workspace:
    """One live network of a work unit, with its collector and oracle slices built once."""

    def __init__(self, model: nn.Module, groups: ChannelGroups, tap: str = "output") -> None:
        self.masked = MaskedModel(model, groups)
        self.tap = tap
        self._state = {**dict(model.named_parameters()), **dict(model.named_buffers())}
        self.base = self.snapshot()
        self._collector: Collector | None = None
        self._slices = None
        self.loaded: object = None

    @property
    def collector(self) -> Collector:
        if self._collector is None:
            self._collector = Collector(self.masked, self.tap)
        return self._collector

    @property
    def slices(self):  # noqa: ANN201 - the oracle's per-unit parameter slices
        if self._slices is None:
            self._slices = unit_slices(self.masked)
        return self._slices

    def snapshot(self) -> dict[str, Tensor]:
        return {k: v.detach().clone() for k, v in self._state.items()}

    def load(self, active: Tensor, state: dict[str, Tensor] | None, tag: object) -> None:
        """Make the live network the given state (base weights when ``state`` is None), masked."""
        if self.loaded is tag:
            return
        with torch.no_grad():
            for k, v in (state or self.base).items():
                self._state[k].copy_(v)
        self.masked.active = active.clone()
        self.masked.apply()
        self.loaded = tag

    def restore(self) -> None:
        """Back to the unpruned base model (weights and masks)."""
        self.loaded = object()  # whatever was loaded, load the base
        self.load(torch.ones(self.masked.groups.n_units, dtype=torch.bool), None, None)


@dataclass
class ScoringContext:
    """What a reference scorer may read: the live network, the saliency batches and the
    trajectory's seeded generator (None where no randomness is allowed)."""

    ws: Workspace
    batches: Batches
    rng: torch.Generator | None


ReferenceScorer = Callable[[ScoringContext], Tensor]
"""``fn(ctx) -> [U]`` float64 scores of every unit (any value for inactive units)."""

REFERENCE_SCORERS: Registry[ReferenceScorer] = Registry("reference scorer")


def register_reference(name: str, fn: ReferenceScorer) -> ReferenceScorer:
    """Register the scorer of the reference signal ``name`` (a :class:`taxonomy.components.Reference`)."""
    return REFERENCE_SCORERS.add(name, fn)


def _random(ctx: ScoringContext) -> Tensor:
    if ctx.rng is None:
        raise PrunetaxError("the random signal needs a seeded generator.")
    return torch.rand(ctx.ws.masked.groups.n_units, generator=ctx.rng, dtype=torch.float64)


def _oracle(ctx: ScoringContext) -> Tensor:
    """Unit by unit, or one gate row per unit in stacked forwards where work is batched (a GPU)."""
    from study.batched.oracle import batched_here, batched_oracle

    if batched_here(ctx.ws.masked.model):
        return batched_oracle(ctx.ws.masked, ctx.batches)
    return oracle_scores(ctx.ws.masked, ctx.batches, ctx.ws.slices)


register_reference("random", _random)
register_reference("oracle", _oracle)
register_reference("activation_voting", voting_scores)  # Anwar et al. 2017, study/voting.py


def reduce_to_units(channel_scores: Tensor, groups: ChannelGroups, how: str) -> Tensor:
    """``[S, C] -> [S, U]``: combine the member channels' scaled scores (``sum``/``mean``/``max``)."""
    s, n = channel_scores.shape[0], groups.n_units
    idx = groups.members.to(channel_scores.device).expand(s, -1)
    if how == "max":
        out = channel_scores.new_full((s, n), -math.inf)
        return out.scatter_reduce(1, idx, channel_scores, "amax")
    out = channel_scores.new_zeros((s, n)).scatter_add(1, idx, channel_scores)
    if how == "mean":
        counts = torch.bincount(groups.members, minlength=n).clamp(min=1).to(out)
        out = out / counts
    return out


def _taxonomy_scores(specs: Sequence[SignalSpec], stats: list, groups: ChannelGroups, how: str) -> Tensor:
    """``[S, U]``: pooled by the bank itself (``pooled``), or channel scores combined after."""
    if how == "pooled":
        return score(specs, stats, UnitMap(groups.members, groups.n_units)).double().cpu()
    return reduce_to_units(score(specs, stats).double().cpu(), groups, how)


def _add_time(timing: dict, key: str, seconds: float) -> None:
    timing[key] = timing.get(key, 0.0) + seconds


def unit_scores(
    ws: Workspace,
    signals: Sequence[SignalSpec],
    batches: Batches,
    aggregation: str = "pooled",
    rngs: Sequence[torch.Generator | None] | None = None,
    timing: dict | None = None,
    *,
    collect: Callable[[Needs], list] | None = None,
) -> tuple[Tensor, dict[int, Exception]]:
    """``[S, U]`` scores of ``signals`` for the live network (lower = prune first), and the
    errors of the signals that could not be scored (their rows are NaN): taxonomy signals
    share one statistics pass and fail together; each reference fails alone. ``collect(needs)``
    replaces the workspace's statistics pass (the batched engine hands each branch its share
    of a stacked pass, :mod:`study.batched`)."""
    timing = {} if timing is None else timing
    out = torch.full((len(signals), ws.masked.groups.n_units), math.nan, dtype=torch.float64)
    errors: dict[int, Exception] = {}
    taxonomy = [k for k, s in enumerate(signals) if not s.is_reference]
    if taxonomy:
        t0 = time.perf_counter()
        try:
            specs = [signals[k] for k in taxonomy]
            needs = Needs.of(specs)
            stats = ws.collector.collect(batches, needs) if collect is None else collect(needs)
            t1 = time.perf_counter()
            out[taxonomy] = _taxonomy_scores(specs, stats, ws.masked.groups, aggregation)
            _add_time(timing, "stats", t1 - t0)
            _add_time(timing, "score", time.perf_counter() - t1)
        except Exception as err:  # recorded per signal by the caller
            errors.update(dict.fromkeys(taxonomy, err))
    for k, s in enumerate(signals):
        if not s.is_reference:
            continue
        t0 = time.perf_counter()
        try:
            rng = rngs[k] if rngs is not None else None
            out[k] = REFERENCE_SCORERS.get(s.id)(ScoringContext(ws, batches, rng))
        except Exception as err:  # recorded per signal by the caller
            errors[k] = err
        _add_time(timing, "score", time.perf_counter() - t0)
    return out, errors
