"""What every pruning protocol shares: the set-up of a work unit, trajectories, branches,
evaluation and the logged rows (SPEC §3-4).

Signals of one work unit start from the same network. While two trajectories have pruned
exactly the same units in the same order their networks are identical (retraining
batches are seeded by step, not by signal), so they share a *branch*: one statistics
pass, one scoring call for all their signals, one pruning, one retraining and one
evaluation. A branch is data, not a model: its active units, plus a snapshot of the
weights once retraining has made them differ from the base model's. One live network
(:class:`study.unit_scores.Workspace`) is loaded with a branch's state before working on
it, so forking costs no model copy. Results are bit-identical to running each signal
alone (tested). The protocols in :mod:`study.protocols` drive a :class:`Run`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from study import mean_replacement
from study.evaluation import losses_and_hits
from study.groups import ChannelGroups
from study.masks import MaskedModel
from study.unit_scores import Workspace, unit_scores
from taxonomy.errors import PrunetaxError
from taxonomy.spec import SignalSpec

__all__ = [
    "Setup",
    "TrajectoryResult",
    "Trajectory",
    "Branch",
    "Run",
    "choose_units",
    "exhausted",
    "tie_order",
    "draw_seed",
    "TIMINGS",
]

TIMINGS = ("stats", "score", "prune", "retrain", "eval")
"""Timing columns of a steps row (seconds), excluded when results are compared."""

Batches = list[tuple[Tensor, Tensor]]


@dataclass
class Setup:
    """Everything shared by the trajectories of one work unit."""

    model: nn.Module  # the trained, unpruned base model (eval mode, on device)
    groups: ChannelGroups
    eval_batches: Batches
    test: tuple[Tensor, Tensor]
    train: tuple[Tensor, Tensor]
    reference_acc: float
    seed: int
    model_name: str = ""  # registry name (retraining defaults come from its hyperparameters)
    eval_examples: list[int] = field(default_factory=list)  # eval-split indices, for the record

    @property
    def tie_seed(self) -> int:
        """Seeds the permutation that breaks score ties (recorded with every trial)."""
        return self.seed


@dataclass
class TrajectoryResult:
    """One signal's rows (one per step, step 0 = unpruned) and how it ended."""

    signal: SignalSpec
    rows: list[dict] = field(default_factory=list)
    stop_reason: str = ""
    error: str | None = None
    trial: dict = field(default_factory=dict)  # protocol-specific ``trials`` columns (e.g. training MACs)


@dataclass
class Trajectory:
    """A trajectory in progress: its result so far and its seeded generator."""

    result: TrajectoryResult
    rng: torch.Generator
    done: bool = False

    @property
    def signal(self) -> SignalSpec:
        return self.result.signal

    def stop(self, reason: str) -> None:
        self.done, self.result.stop_reason = True, reason

    def fail(self, err: Exception) -> None:
        self.stop("failed")
        self.result.error = f"{type(err).__name__}: {err}"


@dataclass(eq=False)
class Branch:
    """Trajectories with identical histories: their active units and (after retraining) weights."""

    active: Tensor
    members: list[Trajectory]
    state: dict[str, Tensor] | None = None


def draw_seed(seed: int, draw: int) -> int:
    """The generator seed of draw ``draw`` of a randomised signal in a trial seeded ``seed``."""
    if draw == 0:
        return seed
    from study.keys import stable_key

    return int(stable_key({"seed": seed, "draw": draw}, 15), 16)


def tie_order(n_units: int, seed: int) -> Tensor:
    """A seeded random permutation of the units: equal scores are pruned in this order.

    Ties are common (0/1 measures such as APoZ, dead channels); breaking them by unit index
    would prune the last conv first, because Torch-Pruning numbers it first.
    """
    return torch.randperm(n_units, generator=torch.Generator().manual_seed(seed))


def choose_units(scores: Tensor, masked: MaskedModel, k: int, ties: Tensor | None = None) -> list[int]:
    """Up to ``k`` lowest-scoring active units, keeping one unit per group alive; equal
    scores go in the order of ``ties`` (a permutation, :func:`tie_order`), else by index."""
    groups = masked.groups
    left = torch.bincount(groups.unit_group[masked.active], minlength=len(groups.group_sizes))
    order = torch.sort(scores, stable=True).indices
    if ties is not None:
        order = ties[torch.sort(scores[ties], stable=True).indices]
    chosen: list[int] = []
    for u in order.tolist():
        if len(chosen) == k:
            break
        g = int(groups.unit_group[u])
        if masked.active[u] and left[g] > 1:
            chosen.append(u)
            left[g] -= 1
    return chosen


def exhausted(masked: MaskedModel) -> bool:
    """True when no unit can be pruned any more (every group is down to one unit)."""
    return not choose_units(torch.zeros(masked.groups.n_units), masked, 1)


class Run:
    """One work unit's trajectories over one live network: scoring, evaluation, rows.

    Parameters
    ----------
    setup
        The base model, data and seed.
    signals
        One trajectory per signal.
    draws
        The draw of each signal (its random generator's seed; see :func:`draw_seed`).
    aggregation
        How member-channel scores of a coupled unit combine.
    tap
        The activation tap point of the statistics.
    on_step
        Called with a trajectory's result after each of its rows.
    """

    def __init__(
        self,
        setup: Setup,
        signals: Sequence[SignalSpec],
        aggregation: str,
        tap: str,
        on_step: Callable[[TrajectoryResult], None] | None = None,
        draws: Sequence[int] | None = None,
    ) -> None:
        self.setup, self.aggregation, self.on_step = setup, aggregation, on_step
        self.ws = Workspace(setup.model, setup.groups, tap)
        self.replacement = mean_replacement.for_run(self.ws, setup.eval_batches)  # None: drop pruned
        self.initial = self.ws.masked.counts()
        self.names = setup.groups.unit_names()
        self.ties = tie_order(setup.groups.n_units, setup.tie_seed)
        draws = [0] * len(signals) if draws is None else list(draws)
        self.trajectories = [
            Trajectory(TrajectoryResult(s), torch.Generator().manual_seed(draw_seed(setup.seed, d)))
            for s, d in zip(signals, draws, strict=True)
        ]
        self.root = Branch(self.ws.masked.active.clone(), list(self.trajectories))
        (tx, ty), batches = setup.test, setup.eval_batches
        # test and eval examples in one forward pass per evaluation
        self.eval_x = torch.cat([tx, *(b[0] for b in batches)])
        self.eval_y = torch.cat([ty, *(b[1] for b in batches)])
        self.n_test = ty.shape[0]

    @property
    def masked(self) -> MaskedModel:
        return self.ws.masked

    def load(self, branch: Branch) -> MaskedModel:
        """Make the live network ``branch``'s state."""
        self.ws.load(branch.active, branch.state, branch)
        return self.ws.masked

    def choose(self, scores: Tensor, k: int) -> list[int]:
        """Up to ``k`` units to prune from the live network (:func:`choose_units`, seeded ties)."""
        return choose_units(scores, self.masked, k, self.ties)

    def fork(self, parent: Branch, units: Sequence[int], members: list[Trajectory]) -> Branch:
        """A child of ``parent`` that has also pruned ``units`` (its weights, until it retrains;
        under mean replacement, with the units' mean contributions folded into their consumers)."""
        active = parent.active.clone()
        active[list(units)] = False
        if self.replacement is None:
            return Branch(active, members, parent.state)
        self.load(parent)  # the means are those of the network the units are pruned from
        return Branch(active, members, self.replacement.fold(parent, parent.state, units))

    def sparsity(self) -> float:
        """Weight sparsity (%) of the live network."""
        return 100.0 * (1 - self.masked.counts().weights / self.initial.weights)

    def scores(self, members: Sequence[Trajectory], timing: dict) -> tuple[Tensor, dict[int, Exception]]:
        """``[S, U]`` scores of the members' signals on the live network (see :func:`unit_scores`)."""
        signals, rngs = [t.signal for t in members], [t.rng for t in members]
        return unit_scores(self.ws, signals, self.setup.eval_batches, self.aggregation, rngs, timing)

    def usable(self, t: Trajectory, i: int, scores: Tensor, errors: dict[int, Exception]) -> bool:
        """True if row ``i`` holds the trajectory's scores; else it fails (alone) and is done."""
        try:
            if i in errors:
                raise errors[i]
            bad = torch.isnan(scores[i][self.masked.active])
            if bool(bad.any()):
                n_bad = int(bad.sum())
                raise PrunetaxError(f"signal {t.signal.id} produced NaN scores for {n_bad} active units.")
        except Exception as err:  # a failing signal must not stop the others
            t.fail(err)
            return False
        return True

    def evaluate(self, timing: dict) -> tuple[float, float, float]:
        """(test accuracy %, test loss, eval loss) of the live network."""
        t0 = time.perf_counter()
        loss, hit = losses_and_hits(self.masked.model, self.eval_x, self.eval_y)
        n = self.n_test
        timing["eval"] = timing.get("eval", 0.0) + time.perf_counter() - t0
        return 100.0 * hit[:n].double().mean().item(), loss[:n].mean().item(), loss[n:].mean().item()

    def row(
        self,
        step: int,
        units: list[int],
        unit_score: float,
        evaluated: tuple[float, float, float] | None,
        retrain_steps: int,
        timing: dict,
    ) -> dict:
        """One steps row for the live network after pruning ``units`` at ``step``."""
        c = self.masked.counts()
        acc, loss, ev_loss = evaluated if evaluated is not None else (math.nan,) * 3
        return {
            "step": step,
            "pruned": ";".join(self.names[u] for u in units),
            "n_pruned": len(units),
            "units_remaining": c.units,
            "channels_remaining": c.channels,
            "weights_remaining": c.weights,
            "macs_remaining": c.macs,
            "sparsity": 100.0 * (1 - c.weights / self.initial.weights),
            "macs_sparsity": 100.0 * (1 - c.macs / self.initial.macs),
            "test_acc": acc,
            "test_loss": loss,
            "eval_loss": ev_loss,
            "score": unit_score,
            "retrain_steps": retrain_steps,
            **{f"t_{k}": timing.get(k, 0.0) for k in TIMINGS},
        }

    def start(self) -> None:
        """Log step 0 (the unpruned network) for every trajectory."""
        self.load(self.root)
        evaluated = self.evaluate({})
        for t in self.trajectories:
            t.result.rows.append(self.row(0, [], math.nan, evaluated, 0, {}))
            self.notify(t)

    def notify(self, t: Trajectory) -> None:
        if self.on_step is not None:
            self.on_step(t.result)

    def finish(self) -> list[TrajectoryResult]:
        """Restore the base model and return one result per signal, in order."""
        self.ws.restore()
        return [t.result for t in self.trajectories]
