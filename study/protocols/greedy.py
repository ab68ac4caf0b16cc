"""The paper's greedy loop (SPEC §3), shared by ``sensitivity``, ``retrain`` and ``characterise``.

Each step scores every active unit on the eval batches, prunes the global argmin
(``channels_per_step`` units at a time: a count, or a fraction of all units), optionally
retrains (the subclass's :meth:`Greedy.retrainer`), evaluates test accuracy every
``test_interval`` steps, and stops at ``stop_acc``, at ``target_sparsity`` or when every
group is down to one unit. Trajectories with identical histories share one branch
(:mod:`study.trajectory`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Annotated

from pydantic import Field
from pydantic.dataclasses import dataclass

from study.params import STRICT
from study.protocols.base import OnStep, Protocol

if TYPE_CHECKING:
    from torch import Tensor

    from study.masks import MaskedModel
    from study.trajectory import Branch, Run, Setup, TrajectoryResult
    from taxonomy.spec import SignalSpec

__all__ = ["Greedy", "Retrainer", "Percent"]

Retrainer = Callable[["MaskedModel", int], int]
"""``retrainer(masked, step) -> SGD steps used``, run on the live network after a prune."""

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

    def run(
        self,
        setup: Setup,
        signals: Sequence[SignalSpec],
        on_step: OnStep = None,
        draws: Sequence[int] | None = None,
    ) -> list[TrajectoryResult]:
        from study import trajectory  # torch-heavy: imported when a protocol runs

        retrainer = self.retrainer(setup)
        run = trajectory.Run(setup, signals, self.aggregation, self.tap, on_step, draws)
        try:
            run.start()
            self._loop(run, retrainer)
        finally:
            results = run.finish()
        return results

    def _loop(self, run: Run, retrainer: Retrainer | None) -> None:
        k = self.units_per_step(run.setup.groups.n_units)
        branches, step = [run.root], 0
        while branches:
            step += 1
            nxt: list[Branch] = []
            for br in branches:
                live = [t for t in br.members if not t.done]
                run.load(br)
                timing: dict = {}
                scores, errors = run.scores(live, timing)
                by_choice: dict[tuple[int, ...], list[int]] = {}
                for i, t in enumerate(live):
                    if not run.usable(t, i, scores, errors):
                        continue
                    chosen = run.choose(scores[i], k)
                    if not chosen:
                        t.stop("nothing left to prune")
                        continue
                    by_choice.setdefault(tuple(chosen), []).append(i)
                for units, idx in by_choice.items():
                    child = run.fork(br, units, [live[i] for i in idx])
                    self._advance(run, retrainer, child, step, list(units), scores[idx], dict(timing))
                    if any(not t.done for t in child.members):
                        nxt.append(child)
            branches = nxt

    def _advance(
        self,
        run: Run,
        retrainer: Retrainer | None,
        br: Branch,
        step: int,
        units: list[int],
        scores: Tensor,
        timing: dict,
    ) -> None:
        """Prune ``units`` (load the child branch), retrain, evaluate, log, check stops."""
        from study.trajectory import exhausted

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
        for k, t in enumerate(br.members):
            t.result.rows.append(
                run.row(step, units, float(scores[k, units].mean()), evaluated, used, timing)
            )
            if evaluated is not None and self.stop_acc is not None and evaluated[0] < self.stop_acc:
                t.stop(f"test accuracy below stop_acc={self.stop_acc}")
            elif reached:
                t.stop(f"target sparsity {self.target_sparsity} reached")
            elif done:
                t.stop("nothing left to prune")
            run.notify(t)
