"""``oneshot``: rank the units once on the unpruned network and cut to each target (SPEC §3).

For large networks: one scoring pass, then for every target sparsity the smallest
prefix of the ranking that reaches it is removed (from the unpruned network) and
evaluated. Step k of the log is the k-th target, in increasing order.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated

from pydantic import Field
from pydantic.dataclasses import dataclass

from study.params import STRICT
from study.protocols.base import OnStep, Protocol, register_protocol
from study.protocols.greedy import Percent

if TYPE_CHECKING:
    from torch import Tensor

    from study.masks import MaskedModel
    from study.trajectory import Run, Setup, Trajectory, TrajectoryResult
    from taxonomy.spec import SignalSpec

__all__ = ["OneShot"]


@register_protocol
@dataclass(frozen=True, config=STRICT)
class OneShot(Protocol):
    name = "oneshot"
    summary = "rank once on the unpruned network, cut to each target sparsity"

    targets: Annotated[
        tuple[Percent, ...], Field(min_length=1, description="target weight sparsities (%), e.g. 10,20,40")
    ] = (10.0, 20.0, 30.0, 40.0, 50.0)

    def run(
        self,
        setup: Setup,
        signals: Sequence[SignalSpec],
        on_step: OnStep = None,
        draws: Sequence[int] | None = None,
    ) -> list[TrajectoryResult]:
        return self._in_lockstep(setup, signals, on_step, draws, self._drive)

    def _drive(self, run: Run) -> None:
        """Score every signal on the unpruned network once, then cut each to the targets (a
        subclass that reaches its targets another way overrides this, not :meth:`run`)."""
        run.load(run.root)
        timing: dict = {}
        scores, errors = run.scores(run.trajectories, timing)
        for i, t in enumerate(run.trajectories):
            if run.usable(t, i, scores, errors):
                self._cut(run, t, scores[i], timing)

    def _cut(self, run: Run, t: Trajectory, scores: Tensor, timing: dict) -> None:
        run.load(run.root)
        order = run.choose(scores, run.setup.groups.n_units)
        done = 0
        for step, target in enumerate(sorted(self.targets), start=1):
            cut = _cut_length(run.masked, order, done, target, run.initial.weights)
            t_step = {"score": timing.get("score", 0.0), "stats": timing.get("stats", 0.0)}
            t0 = time.perf_counter()
            run.load(run.fork(run.root, order[:cut], [t]))
            t_step["prune"] = time.perf_counter() - t0
            evaluated = run.evaluate(t_step)
            unit_score = float(scores[order[done:cut]].mean()) if cut > done else math.nan
            t.result.rows.append(run.row(step, order[done:cut], unit_score, evaluated, 0, t_step))
            done = cut
        t.stop("all targets evaluated")
        run.notify(t)


def _cut_length(masked: MaskedModel, order: list[int], done: int, target: float, initial: int) -> int:
    """Smallest prefix of ``order`` (>= done) whose removal reaches ``target`` sparsity."""
    base = masked.active.clone()

    def sparsity(p: int) -> float:
        trial = base.clone()
        trial[order[:p]] = False
        masked.active = trial
        try:
            return 100.0 * (1 - masked.counts().weights / initial)
        finally:
            masked.active = base

    lo, hi = done, len(order)
    if sparsity(hi) < target:
        return hi
    while lo < hi:
        mid = (lo + hi) // 2
        if sparsity(mid) >= target:
            hi = mid
        else:
            lo = mid + 1
    return lo
