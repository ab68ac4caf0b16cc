"""The paper's greedy loop (SPEC §3), shared by ``sensitivity``, ``retrain`` and ``characterise``.

Each step scores every active unit on the eval batches, prunes the global argmin
(``channels_per_step`` units at a time: a count, or a fraction of all units), optionally
retrains (the subclass's :meth:`Greedy.retrainer`), evaluates test accuracy every
``test_interval`` steps, and stops at ``stop_acc``, ``stop_drop`` points below the
reference, at ``target_sparsity`` or when every group is down to one unit.

Work is shared exactly (:mod:`study.trajectory`): trajectories with identical histories
share one branch; and trajectories that reach the same network by different paths (the
same pruned units with the base weights, e.g. two equivalent-in-practice signals that
pruned two units in opposite orders) merge into one branch, evaluated once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass as plain_dataclass
from dataclasses import field
from typing import TYPE_CHECKING, Annotated

from pydantic import Field
from pydantic.dataclasses import dataclass

from study.params import STRICT
from study.protocols.base import OnStep, Protocol

if TYPE_CHECKING:
    from torch import Tensor

    from study.masks import MaskedModel
    from study.trajectory import Branch, Run, Setup, Trajectory, TrajectoryResult
    from taxonomy.spec import SignalSpec

__all__ = ["Greedy", "Retrainer", "Chooser", "Percent"]

MERGE_STATES = True
"""Merge trajectories that reach the same network by different paths (exact; a benchmark
switches it off to measure what it saves)."""

Retrainer = Callable[["MaskedModel", int], int]
"""``retrainer(masked, step) -> SGD steps used``, run on the live network after a prune."""

Chooser = Callable[["Trajectory", "Tensor", int], list[int]]
"""``choose(trajectory, scores, k) -> units`` it prunes from the live network this step."""

Percent = Annotated[float, Field(ge=0, le=100)]


@dataclass(frozen=True, config=STRICT)
class Greedy(Protocol):
    """Greedy global pruning, one prune decision per step (abstract: subclasses register)."""

    channels_per_step: Annotated[
        float,
        Field(gt=0, description="units pruned per step: a whole count >= 1 or a fraction < 1 of all units"),
    ] = 1.0
    test_interval: Annotated[int, Field(ge=1, description="evaluate test accuracy every N steps")] = 1
    stop_acc: Annotated[
        Percent | None, Field(description="stop when test accuracy (%) falls below this (default: prune on)")
    ] = None
    target_sparsity: Annotated[Percent | None, Field(description="stop at this weight sparsity (%)")] = None
    stop_drop: Annotated[
        float | None,
        Field(
            gt=0,
            description="stop once test accuracy is more than this many points below the reference "
            "(every headline drop up to it is still read exactly)",
        ),
    ] = None

    def __post_init__(self) -> None:
        cps = self.channels_per_step
        if not (cps >= 1 and float(cps).is_integer()) and not 0 < cps < 1:
            raise ValueError(
                f"`channels_per_step` must be a whole count >= 1 or a fraction in (0, 1); got {cps!r}"
            )

    def units_per_step(self, total_units: int) -> int:
        """Units pruned per step for a network with ``total_units`` units."""
        if self.channels_per_step >= 1:
            return int(self.channels_per_step)
        return max(1, round(self.channels_per_step * total_units))

    def retrainer(self, setup: Setup) -> Retrainer | None:
        """What runs after each prune; None = nothing (sensitivity)."""
        return None

    def chooser(self, run: Run) -> Chooser:
        """How a trajectory picks its units: the ``k`` lowest-scoring (:meth:`Run.choose`, seeded
        ties); a subclass may look further (the myopic oracle measures candidates)."""
        return lambda t, scores, k: run.choose(scores, k)

    def run(
        self,
        setup: Setup,
        signals: Sequence[SignalSpec],
        on_step: OnStep = None,
        draws: Sequence[int] | None = None,
    ) -> list[TrajectoryResult]:
        from study.batched import engine_for  # the Run class of the engine in force (lockstep or batched)

        retrainer = self.retrainer(setup)
        run = engine_for(self, setup, retrainer)(setup, signals, self.aggregation, self.tap, on_step, draws)
        try:
            run.start()
            self._loop(run, retrainer)
        finally:
            results = run.finish()
        return results

    def _loop(self, run: Run, retrainer: Retrainer | None) -> None:
        k = self.units_per_step(run.setup.groups.n_units)
        choose = self.chooser(run)
        branches, step = [run.root], 0
        while branches:
            step += 1
            children: dict[object, _Child] = {}
            for br in branches:
                live = [t for t in br.members if not t.done]
                run.load(br)
                timing: dict = {}
                scores, errors = run.scores(live, timing)
                for i, t in enumerate(live):
                    if not run.usable(t, i, scores, errors):
                        continue
                    units = tuple(choose(t, scores[i], k))
                    if not units:
                        t.stop("nothing left to prune")
                        continue
                    branch = run.fork(br, units, [])
                    # the same network (same active units, base weights) = one child, whatever the path
                    same = br.state is None and MERGE_STATES
                    key = branch.active.numpy().tobytes() if same else (id(br), units)
                    child = children.setdefault(key, _Child(branch, dict(timing)))
                    child.add(t, units, float(scores[i, list(units)].mean()))
            branches = [c.branch for c in children.values() if self._advance(run, retrainer, c, step)]

    def _advance(self, run: Run, retrainer: Retrainer | None, child: _Child, step: int) -> bool:
        """Load the child (its units pruned), retrain, evaluate, log every member's row, check
        stops; True if some member goes on."""
        from study.trajectory import exhausted

        br, timing = child.branch, child.timing
        t0 = time.perf_counter()
        masked = run.load(br)
        timing["prune"] = time.perf_counter() - t0
        used = 0
        if retrainer is not None:
            t0 = time.perf_counter()
            used = retrainer(masked, step)
            if used:
                br.state = run.ws.snapshot()
            timing["retrain"] = time.perf_counter() - t0
        reached = self.target_sparsity is not None and run.sparsity() >= self.target_sparsity
        done = exhausted(masked)
        due = step % self.test_interval == 0 or reached or done
        evaluated = run.evaluate(timing) if due else None
        for t, units, unit_score in zip(br.members, child.units, child.scores, strict=True):
            t.result.rows.append(run.row(step, list(units), unit_score, evaluated, used, timing))
            if evaluated is not None and self._below(run, evaluated[0]):
                t.stop(self._below(run, evaluated[0]))
            elif reached:
                t.stop(f"target sparsity {self.target_sparsity} reached")
            elif done:
                t.stop("nothing left to prune")
            run.notify(t)
        return any(not t.done for t in br.members)

    def _below(self, run: Run, acc: float) -> str:
        """Why accuracy ``acc`` ends the trajectory ("" if it does not)."""
        if self.stop_acc is not None and acc < self.stop_acc:
            return f"test accuracy below stop_acc={self.stop_acc}"
        if self.stop_drop is not None and acc < run.setup.reference_acc - self.stop_drop:
            return f"test accuracy more than stop_drop={self.stop_drop} points below the reference"
        return ""


@plain_dataclass(eq=False)
class _Child:
    """A network state reached at this step, and the trajectories that reached it (each with
    the units it pruned to get there and their score): evaluated once for all of them."""

    branch: Branch
    timing: dict
    units: list[tuple[int, ...]] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)

    def add(self, t: Trajectory, units: tuple[int, ...], score: float) -> None:
        self.branch.members.append(t)
        self.units.append(units)
        self.scores.append(score)
