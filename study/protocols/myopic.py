"""``myopic``: the myopic oracle (Persand, Anderson & Gregg 2020).

The paper's greedy loop (no retraining) with one change in how a step chooses: the
trajectory's signal, and each signal of ``candidates_from``, nominate their ``k`` lowest-
scoring units among those that could be pruned now (active and not the last of their
group; equal scores in the seeded tie order every greedy step uses); the true eval-loss
change of removing each nominee is measured exactly as the oracle measures it
(:func:`study.oracle.oracle_scores` on the eval batches, only for those units), and the
unit with the smallest change is pruned (``channels_per_step`` > 1: the smallest few; at
least that many candidates are nominated per signal). With ``k`` at least the number of
units it is the oracle itself.

The cost is logged: each steps row's ``oracle_evals`` is the number of distinct
candidates measured for that trajectory's step, and the trials row's their sum (what it
costs run alone; trajectories of one branch share the measurements, which changes no result).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from pydantic import Field, field_validator
from pydantic.dataclasses import dataclass

from study.params import STRICT
from study.protocols.base import register_protocol
from study.protocols.greedy import Chooser, Greedy
from taxonomy.errors import PrunetaxError
from taxonomy.spec import parse

if TYPE_CHECKING:
    from torch import Tensor

    from study.trajectory import Run, Trajectory, TrajectoryResult

__all__ = ["Myopic"]


@register_protocol
@dataclass(frozen=True, config=STRICT)
class Myopic(Greedy):
    name = "myopic"
    summary = (
        "myopic oracle (Persand et al. 2020): measure the loss change of the k lowest candidates of the "
        "signal(s), prune the best"
    )

    k: Annotated[
        int, Field(ge=1, description="candidates per signal: its k lowest-scoring units are measured")
    ] = 5
    candidates_from: Annotated[
        tuple[str, ...],
        Field(
            description="further signals (ids or aliases, comma-separated) whose k lowest units join the "
            "trial signal's candidates (default: none)"
        ),
    ] = ()

    @field_validator("candidates_from")
    @classmethod
    def _canonical(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        """Canonical ids (an alias and its id are one experiment, one run_key)."""
        out = []
        for item in value:
            spec = parse(item)
            if spec.id in ("random", "oracle"):
                raise PrunetaxError(
                    f"`candidates_from` takes deterministic signals; got {spec.id}. For random candidates "
                    "run the trial with signal random; the oracle measures every unit (protocol sensitivity)."
                )
            out.append(spec.id)
        return tuple(dict.fromkeys(out))

    def chooser(self, run: Run) -> Chooser:
        return _Candidates(self, run)


class _Candidates:
    """The myopic choice of one run: nominate, measure, prune the best. Measurements are kept
    for the branch loaded now (its trajectories share the live network)."""

    def __init__(self, protocol: Myopic, run: Run) -> None:
        self.run, self.k = run, protocol.k
        self.extra = [parse(s) for s in protocol.candidates_from]
        self.branch: object = None
        self.measured: dict[int, float] = {}
        self.extra_scores: Tensor | None = None
        self.spent: dict[int, int] = {}
        self.inner, run.on_step = run.on_step, self._log  # Run calls on_step after each row

    def _log(self, result: TrajectoryResult) -> None:
        """Write the step's measured count into the row just logged, then pass it on."""
        spent = self.spent.pop(id(result), None)
        if spent is not None:
            result.rows[-1]["oracle_evals"] = spent
        if self.inner is not None:
            self.inner(result)

    def __call__(self, t: Trajectory, scores: Tensor, k: int) -> list[int]:
        import torch

        run = self.run
        if run.ws.loaded is not self.branch:
            self.branch, self.measured, self.extra_scores = run.ws.loaded, {}, None
        nominees = max(self.k, k)
        candidates = self._nominate(scores, nominees)
        for row in self._extra_scores():
            candidates += self._nominate(row, nominees)
        candidates = list(dict.fromkeys(candidates))
        self._measure(candidates)
        self.spent[id(t.result)] = len(candidates)
        t.result.trial["oracle_evals"] = t.result.trial.get("oracle_evals", 0) + len(candidates)
        losses = torch.full((run.setup.groups.n_units,), torch.inf, dtype=torch.float64)
        losses[candidates] = torch.tensor([self.measured[u] for u in candidates], dtype=torch.float64)
        nominated = set(candidates)
        return [u for u in run.choose(losses, k) if u in nominated]

    def _nominate(self, scores: Tensor, k: int) -> list[int]:
        """The ``k`` lowest-scoring units that could each be pruned now (active, and not the last
        of their group), equal scores in the run's seeded tie order."""
        import torch

        run = self.run
        group, active = run.setup.groups.unit_group, run.masked.active
        left = torch.bincount(group[active], minlength=len(run.setup.groups.group_sizes))
        prunable = active & (left[group] > 1)
        order = run.ties[torch.sort(scores[run.ties], stable=True).indices]
        return [u for u in order.tolist() if prunable[u]][:k]

    def _measure(self, units: list[int]) -> None:
        from study.oracle import oracle_scores

        todo = [u for u in units if u not in self.measured]
        if todo:
            ws = self.run.ws
            change = oracle_scores(ws.masked, self.run.setup.eval_batches, ws.slices, todo)
            self.measured.update({u: float(change[u]) for u in todo})

    def _extra_scores(self) -> Tensor | list:
        """Scores of ``candidates_from`` on the live network (once per branch)."""
        if not self.extra:
            return []
        if self.extra_scores is None:
            from study.unit_scores import unit_scores

            run = self.run
            scores, errors = unit_scores(run.ws, self.extra, run.setup.eval_batches, run.aggregation)
            if errors:
                k, err = next(iter(errors.items()))
                raise PrunetaxError(f"`candidates_from` signal {self.extra[k].id} could not be scored: {err}")
            self.extra_scores = scores
        return self.extra_scores
