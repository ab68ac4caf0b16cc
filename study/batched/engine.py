"""The batched engine: a :class:`~study.trajectory.Run` whose statistics passes and evaluations
serve many branches at once.

The protocol's loop is unchanged (:class:`study.protocols.greedy.Greedy`): it asks, branch
after branch, for scores (:meth:`BatchedRun.scores`) and, child after child, for an
evaluation (:meth:`BatchedRun.evaluate`). The first request of a step is answered for all
of that step's branches: branches whose signals read the same statistics are stacked M at
a time into one gated pass (:class:`~study.batched.stats.StackedStatistics`), each scored by
the unit-scoring service from its own share; the children a step will evaluate are run
side by side through one gated forward (:func:`~study.batched.forward.gated_losses`).
Answers are cached until the loop asks. Decisions (seeded ties), merges, rows and stops stay
the protocol's own code, so both engines give the same rows (tested: equal within 1e-5;
decisions equal except between scores that tie within 1e-6 relative).

Loading a branch is a *view* here: the live network's active units change, its weights do
not (the gated passes run on a private copy of the base model). A branch is loaded for real
only to score reference signals (``random``, ``oracle``, ...), which may read the live
network. The engine therefore serves protocols that neither retrain nor measure candidates
on the live network (:mod:`study.batched.select` checks).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from study.batched.forward import GatedNet, gated_losses, summarise
from study.batched.memory import CPU_OVERHEAD, fit, halving, images_per_pass, nbytes, peak_bytes
from study.batched.select import Batching
from study.batched.stats import StackedStatistics
from study.masks import MaskedModel
from study.passes import PASSES
from study.trajectory import Branch, Run, Trajectory, exhausted
from study.unit_scores import unit_scores
from taxonomy.statistics import Needs

__all__ = ["BatchedRun"]

_VIEW = object()
"""``Workspace.loaded`` while the live network is only viewed (its weights are another state's)."""

Evaluated = tuple[float, float, float]


@dataclass
class _Scored:
    """A branch's answer to :meth:`Run.scores`, for the members it was computed for."""

    members: list[Trajectory]
    scores: Tensor
    errors: dict[int, Exception] = field(default_factory=dict)
    timing: dict = field(default_factory=dict)


def _live(branch: Branch) -> list[Trajectory]:
    return [t for t in branch.members if not t.done]


def _add(timing: dict, more: dict) -> None:
    for k, v in more.items():
        timing[k] = timing.get(k, 0.0) + v


class BatchedRun(Run):
    """A :class:`~study.trajectory.Run` that scores and evaluates a step's branches in stacked
    passes; ``protocol`` (its ``test_interval`` and ``target_sparsity``) tells which children a
    step will evaluate, ``batching`` how many trajectories go into one statistics pass."""

    def __init__(
        self, *args: Any, protocol: object = None, batching: Batching | None = None, **kw: Any
    ) -> None:
        super().__init__(*args, **kw)  # the Run's own arguments: setup, signals, aggregation, tap, ...
        self.protocol, self.batching = protocol, batching or Batching("batched")
        setup = self.setup
        base = copy.deepcopy(setup.model)  # the live network is loaded with branch states for references
        self.stats = StackedStatistics(base, setup.groups, self.ws.tap, setup.eval_batches)
        self.net = GatedNet.of(base, setup.groups)
        self.device = self.net.device
        self.images = images_per_pass(self.device)
        self.sizes: dict[Needs, int] = {}  # trajectories per statistics pass, by what is collected
        self.current = self.root
        self.generation: dict[Branch, int] = {self.root: 0}
        self.steps: dict[int, list[Branch]] = {0: [self.root]}
        self._scored: dict[Branch, _Scored] = {}
        self._evaluated: dict[Branch, tuple[Evaluated, float]] = {}

    # -- the Run interface ---------------------------------------------------------------
    def load(self, branch: Branch) -> MaskedModel:
        """View ``branch``: the live network's active units become its units (weights unchanged)."""
        self.current = branch
        self.ws.masked.active = branch.active.clone()
        self.ws.loaded = _VIEW
        return self.ws.masked

    def fork(self, parent: Branch, units: Sequence[int], members: list[Trajectory]) -> Branch:
        child = super().fork(parent, units, members)
        step = self.generation.get(parent, 0) + 1
        self.generation[child] = step
        self.steps.setdefault(step, []).append(child)
        return child

    def scores(self, members: Sequence[Trajectory], timing: dict) -> tuple[Tensor, dict[int, Exception]]:
        branch = self.current
        if branch not in self._scored:
            self._prefetch_scores(branch)
        hit = self._scored.pop(branch, None)
        if hit is None or [id(t) for t in hit.members] != [id(t) for t in members]:
            hit = self._score_all([(branch, list(members))])[branch]  # other members than foreseen
        self.load(branch)
        _add(timing, hit.timing)
        return hit.scores, hit.errors

    def evaluate(self, timing: dict) -> Evaluated:
        branch = self.current
        if branch not in self._evaluated:
            self._prefetch_evaluations(branch)
        result, seconds = self._evaluated.pop(branch)
        timing["eval"] = timing.get("eval", 0.0) + seconds
        return result

    # -- scoring -------------------------------------------------------------------------
    def _prefetch_scores(self, branch: Branch) -> None:
        """Score every branch of ``branch``'s step that has live members."""
        step = self.generation.get(branch)
        for old in [s for s in self.steps if step is None or s < step]:
            for b in self.steps.pop(old):
                self.generation.pop(b, None)
        peers = self.steps.get(step, []) if step is not None else []
        items = [(b, _live(b)) for b in peers if b is not branch and _live(b)]
        self._scored = self._score_all([(branch, _live(branch)), *items])
        self.load(branch)

    def _score_all(self, items: list[tuple[Branch, list[Trajectory]]]) -> dict[Branch, _Scored]:
        """Every branch's scores: taxonomy signals from stacked passes, then references."""
        groups: dict[int, list[tuple[Branch, list[Trajectory]]]] = {}
        wanted: dict[int, set] = {}
        for b, live in items:
            needs = Needs.of([t.signal for t in live])
            if needs:  # stacked with the branches whose costliest pass is the same
                level = max(i for i, name in enumerate(PASSES) if PASSES.get(name).provides & needs.pairs)
                groups.setdefault(level, []).append((b, live))
                wanted.setdefault(level, set()).update(needs.pairs)
        taxonomy: dict[Branch, _Scored] = {}
        for level, group in sorted(groups.items()):
            taxonomy.update(self._taxonomy(Needs(frozenset(wanted[level])), group))
        return {b: self._with_references(b, live, taxonomy.get(b)) for b, live in items}

    def _taxonomy(self, needs: Needs, group: list[tuple[Branch, list[Trajectory]]]) -> dict[Branch, _Scored]:
        """Taxonomy scores of ``group``'s branches, ``size`` per pass (found on the first pass
        from its memory when not given; halved after an out-of-memory error)."""
        out: dict[Branch, _Scored] = {}
        size, i = self.sizes.get(needs) or self.batching.size, 0
        while i < len(group):
            chunk = group[i : i + (size or 1)]
            try:
                with peak_bytes(self.device) if size is None else nullcontext([0]) as peak:
                    done, stats_bytes = self._chunk(needs, chunk)
            except torch.OutOfMemoryError as err:
                torch.cuda.empty_cache()
                if len(chunk) > 1:
                    size = self.sizes[needs] = len(chunk) // 2
                    continue
                done, stats_bytes = self._chunk(needs, chunk, err)  # one alone fails, as in lockstep
            if size is None:
                per_trajectory = peak[0] or CPU_OVERHEAD * stats_bytes
                size = self.sizes[needs] = fit(per_trajectory, self.device, self.batching.share)
            out.update(done)
            i += len(chunk)
        return out

    def _chunk(
        self, needs: Needs, chunk: list[tuple[Branch, list[Trajectory]]], failed: Exception | None = None
    ) -> tuple[dict[Branch, _Scored], int]:
        """One stacked statistics pass for ``chunk``'s branches, each scored from its share (or
        every branch's taxonomy signals failed with ``failed``)."""
        t0 = time.perf_counter()
        actives = torch.stack([b.active for b, _ in chunk])
        shares: list = [failed] * len(chunk)
        try:
            if failed is None:
                shares = self.stats(actives, needs)
        except torch.OutOfMemoryError:
            raise
        except Exception as err:  # a failed collection fails the taxonomy signals (as in lockstep)
            shares = [err] * len(chunk)
        seconds = (time.perf_counter() - t0) / len(chunk)
        out = {}
        batches, how = self.setup.eval_batches, self.aggregation
        for (b, live), share in zip(chunk, shares, strict=True):
            members = [t for t in live if not t.signal.is_reference]
            timing = {"stats": seconds}
            signals = [t.signal for t in members]
            scores, errors = unit_scores(self.ws, signals, batches, how, None, timing, collect=_given(share))
            oom = [e for e in errors.values() if isinstance(e, torch.OutOfMemoryError)]
            if oom and failed is None:
                raise oom[0]
            out[b] = _Scored(members, scores, errors, timing)
        return out, nbytes(shares[0]) if not isinstance(shares[0], Exception) else 0

    def _with_references(self, branch: Branch, live: list[Trajectory], taxonomy: _Scored | None) -> _Scored:
        """The branch's rows in member order: its taxonomy scores, then its reference signals
        scored on the live network loaded with the branch's state."""
        scores = torch.full((len(live), self.setup.groups.n_units), math.nan, dtype=torch.float64)
        done = _Scored(live, scores)
        tax = [i for i, t in enumerate(live) if not t.signal.is_reference]
        if taxonomy is not None:
            scores[tax] = taxonomy.scores
            done.errors.update({tax[i]: e for i, e in taxonomy.errors.items()})
            _add(done.timing, taxonomy.timing)
        refs = [i for i, t in enumerate(live) if t.signal.is_reference]
        if refs:
            Run.load(self, branch)  # references may read the live network: its real state
            signals, rngs = [live[i].signal for i in refs], [live[i].rng for i in refs]
            ref_scores, errors = unit_scores(
                self.ws, signals, self.setup.eval_batches, self.aggregation, rngs, done.timing
            )
            scores[refs] = ref_scores
            done.errors.update({refs[i]: e for i, e in errors.items()})
        return done

    # -- evaluation ----------------------------------------------------------------------
    def _prefetch_evaluations(self, branch: Branch) -> None:
        """Evaluate ``branch`` with every child of its step that the protocol will evaluate."""
        step = self.generation.get(branch)
        self._evaluated = {b: r for b, r in self._evaluated.items() if self.generation.get(b) == step}
        peers = self.steps.get(step, []) if step is not None else []
        rows = [branch]
        rows += [c for c in peers if c is not branch and c.members and c not in self._evaluated]
        rows = [rows[0], *(c for c in rows[1:] if self._due(c))]
        t0 = time.perf_counter()
        actives = torch.stack([b.active for b in rows])
        (loss, hit), self.images = halving(
            lambda images: gated_losses(self.net, actives, self.eval_x, self.eval_y, images), self.images
        )
        seconds = (time.perf_counter() - t0) / len(rows)
        for b, result in zip(rows, summarise(loss, hit, self.n_test), strict=True):
            self._evaluated[b] = (result, seconds)
        self.load(branch)

    def _due(self, child: Branch) -> bool:
        """Whether the protocol will evaluate ``child`` at its step (a forecast: a child asked
        for but not foreseen is evaluated alone, one foreseen but not asked for is wasted)."""
        interval = getattr(self.protocol, "test_interval", None)
        if interval is None:
            return False
        if self.generation[child] % interval == 0:
            return True
        masked = self.load(child)
        target = getattr(self.protocol, "target_sparsity", None)
        return (target is not None and self.sparsity() >= target) or exhausted(masked)


def _given(share: object) -> Callable[[Needs], object]:
    """The unit-scoring service's statistics for one branch: its share of a stacked pass (or the
    error that pass raised)."""

    def collect(needs: Needs) -> object:
        if isinstance(share, Exception):
            raise share
        return share

    return collect
