"""The pruning loop (SPEC §3) for several signals at once, sharing all work it can.

Signals of one work unit start from the same network. While two trajectories have
pruned exactly the same units in the same order, their networks are identical
(retraining batches are seeded by step, not by signal), so they share a *branch*: one
statistics pass, one scoring call for all their signals, one pruning, one retraining
and one evaluation. A branch forks only when its signals pick different units. The
result is bit-identical to running each signal alone (tested) and much cheaper.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from study.collect import Collector
from study.groups import ChannelGroups
from study.masks import MaskedModel
from study.oracle import eval_loss, oracle_scores, unit_slices
from study.protocols import Protocol
from study.retrain import RetrainSettings, characterise, retrain
from study.train import evaluate
from taxonomy.bank import score
from taxonomy.components import Reference
from taxonomy.errors import PrunetaxError
from taxonomy.spec import SignalSpec
from taxonomy.statistics import Needs

__all__ = ["Setup", "TrajectoryResult", "run_protocol", "unit_scores"]


@dataclass
class Setup:
    """Everything shared by the trajectories of one work unit."""

    model: nn.Module  # the trained, unpruned base model (eval mode, on device)
    groups: ChannelGroups
    protocol: Protocol
    eval_batches: list[tuple[Tensor, Tensor]]
    test: tuple[Tensor, Tensor]
    train: tuple[Tensor, Tensor]
    reference_acc: float
    seed: int
    retrain: RetrainSettings
    train_probe: tuple[Tensor, Tensor] | None = None  # characterise mode
    eval_examples: list[int] = field(default_factory=list)  # eval-split indices, for the record


@dataclass
class TrajectoryResult:
    """One signal's rows (one per step, step 0 = unpruned) and how it ended."""

    signal: SignalSpec
    rows: list[dict] = field(default_factory=list)
    stop_reason: str = ""
    error: str | None = None


@dataclass
class _Trajectory:
    result: TrajectoryResult
    rng: torch.Generator
    done: bool = False

    @property
    def signal(self) -> SignalSpec:
        return self.result.signal


class _Branch:
    """A network state shared by trajectories with identical histories."""

    def __init__(self, masked: MaskedModel, members: list[_Trajectory]) -> None:
        self.masked = masked
        self.members = members
        self._collector: Collector | None = None
        self._slices = None

    def collector(self, tap: str) -> Collector:
        if self._collector is None:
            self._collector = Collector(self.masked, tap)
        return self._collector

    def slices(self):  # noqa: ANN201 - oracle's unit slices, built on first use
        if self._slices is None:
            self._slices = unit_slices(self.masked)
        return self._slices

    def fork(self, members: list[_Trajectory]) -> _Branch:
        masked = MaskedModel(copy.deepcopy(self.masked.model), self.masked.groups)
        masked.active = self.masked.active.clone()
        return _Branch(masked, members)


def _reduce_to_units(channel_scores: Tensor, groups: ChannelGroups, how: str) -> Tensor:
    """``[S, C] -> [S, U]``: combine member channels of each unit."""
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


def unit_scores(
    branch: _Branch,
    signals: Sequence[SignalSpec],
    setup: Setup,
    rngs: Sequence[torch.Generator] | None = None,
    timing: dict | None = None,
) -> Tensor:
    """``[S, U]`` scores of ``signals`` for the branch's current network (lower = prune first)."""
    timing = {} if timing is None else timing
    masked, protocol = branch.masked, setup.protocol
    taxonomy = [s for s in signals if not s.is_reference]
    out = torch.empty(len(signals), masked.groups.n_units, dtype=torch.float64)
    if taxonomy:
        t0 = time.perf_counter()
        stats = branch.collector(protocol.tap).collect(setup.eval_batches, Needs.of(taxonomy))
        t1 = time.perf_counter()
        ch = score(taxonomy, stats).double()
        rows = _reduce_to_units(ch.cpu(), masked.groups, protocol.group_reduction)
        timing["stats"] = timing.get("stats", 0.0) + t1 - t0
        timing["score"] = timing.get("score", 0.0) + time.perf_counter() - t1
        out[[k for k, s in enumerate(signals) if not s.is_reference]] = rows
    for k, s in enumerate(signals):
        if s.reference is Reference.RANDOM:
            if rngs is None:
                raise PrunetaxError("the random signal needs a seeded generator.")
            out[k] = torch.rand(masked.groups.n_units, generator=rngs[k], dtype=torch.float64)
        elif s.reference is Reference.ORACLE:
            t0 = time.perf_counter()
            out[k] = oracle_scores(masked, setup.eval_batches, branch.slices())
            timing["score"] = timing.get("score", 0.0) + time.perf_counter() - t0
    return out


def _choose(scores: Tensor, masked: MaskedModel, k: int) -> list[int]:
    """Up to ``k`` lowest-scoring active units, keeping one unit per group alive."""
    groups = masked.groups
    left = torch.bincount(groups.unit_group[masked.active], minlength=len(groups.group_sizes))
    order = torch.sort(scores, stable=True).indices.tolist()
    chosen: list[int] = []
    for u in order:
        if len(chosen) == k:
            break
        g = int(groups.unit_group[u])
        if masked.active[u] and left[g] > 1:
            chosen.append(u)
            left[g] -= 1
    return chosen


def _check_finite(scores: Tensor, masked: MaskedModel, signal: SignalSpec) -> None:
    bad = torch.isnan(scores[masked.active])
    if bool(bad.any()):
        raise PrunetaxError(f"signal {signal.id} produced NaN scores for {int(bad.sum())} active units.")


class _Runner:
    """Drives the branches of one work unit through the protocol."""

    def __init__(self, setup: Setup, signals: Sequence[SignalSpec], on_step: Callable | None) -> None:
        self.setup = setup
        self.protocol = setup.protocol
        self.units_per_step = self.protocol.units_per_step(setup.groups.n_units)
        base = MaskedModel(setup.model, setup.groups)
        self.initial = base.counts()
        self.names = setup.groups.unit_names()
        trajs = [_Trajectory(TrajectoryResult(s), torch.Generator().manual_seed(setup.seed)) for s in signals]
        self.trajectories = trajs
        self.root = _Branch(base, trajs)
        self.on_step = on_step
        self.initial_train_acc = math.nan

    def row(
        self,
        step: int,
        masked: MaskedModel,
        units: list[int],
        unit_score: float,
        evaluated: tuple[float, float, float] | None,
        retrain_steps: int,
        timing: dict,
    ) -> dict:
        c = masked.counts()
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
            **{f"t_{k}": timing.get(k, 0.0) for k in ("stats", "score", "prune", "retrain", "eval")},
        }

    def evaluate(self, masked: MaskedModel, timing: dict) -> tuple[float, float, float]:
        t0 = time.perf_counter()
        acc, loss = evaluate(masked.model, *self.setup.test)
        ev = eval_loss(masked.model, self.setup.eval_batches)
        timing["eval"] = timing.get("eval", 0.0) + time.perf_counter() - t0
        return 100.0 * acc, loss, ev

    def start(self) -> None:
        evaluated = self.evaluate(self.root.masked, {})
        for t in self.trajectories:
            t.result.rows.append(self.row(0, self.root.masked, [], math.nan, evaluated, 0, {}))
            if self.on_step is not None:
                self.on_step(t.result)


def _fail(t: _Trajectory, err: Exception) -> None:
    t.done = True
    t.result.error = f"{type(err).__name__}: {err}"
    t.result.stop_reason = "failed"


def _split_by_choice(choices: dict[int, tuple[int, ...]], members: list[_Trajectory]) -> dict:
    by: dict[tuple[int, ...], list[_Trajectory]] = {}
    for i, t in enumerate(members):
        if i in choices:
            by.setdefault(choices[i], []).append(t)
    return by


def _greedy(runner: _Runner) -> None:
    setup = runner.setup
    branches, step = [runner.root], 0
    while branches:
        step += 1
        nxt: list[_Branch] = []
        for br in branches:
            live = [t for t in br.members if not t.done]
            timing: dict = {}
            try:
                scores = unit_scores(br, [t.signal for t in live], setup, [t.rng for t in live], timing)
            except Exception as err:  # a failing signal must not stop the others
                for t in live:
                    _fail(t, err)
                continue
            choices: dict[int, tuple[int, ...]] = {}
            for i, t in enumerate(live):
                try:
                    _check_finite(scores[i], br.masked, t.signal)
                except PrunetaxError as err:
                    _fail(t, err)
                    continue
                chosen = _choose(scores[i], br.masked, runner.units_per_step)
                if not chosen:
                    t.done, t.result.stop_reason = True, "nothing left to prune"
                    continue
                choices[i] = tuple(chosen)
            groups = _split_by_choice(choices, live)
            ordered = sorted(groups.items(), key=lambda kv: -len(kv[1]))
            for n, (units, members) in enumerate(ordered):
                child = br if n == len(ordered) - 1 else br.fork(members)
                child.members = members
                _advance(runner, child, step, list(units), scores, live, timing)
                if any(not t.done for t in members):
                    nxt.append(child)
        branches = nxt


def _advance(
    runner: _Runner,
    br: _Branch,
    step: int,
    units: list[int],
    scores: Tensor,
    live: list[_Trajectory],
    shared_timing: dict,
) -> None:
    setup, protocol = runner.setup, runner.protocol
    timing = dict(shared_timing)
    t0 = time.perf_counter()
    br.masked.prune(units)
    br._slices = None  # noqa: SLF001 - oracle slices are per network state
    timing["prune"] = time.perf_counter() - t0
    steps_used = _retrain(runner, br, step, timing)
    counts = br.masked.counts()
    sparsity = 100.0 * (1 - counts.weights / runner.initial.weights)
    reached = protocol.target_sparsity is not None and sparsity >= protocol.target_sparsity
    exhausted = not _choose(torch.zeros(setup.groups.n_units), br.masked, 1)
    due = step % protocol.test_interval == 0 or reached or exhausted
    evaluated = runner.evaluate(br.masked, timing) if due else None
    for t in br.members:
        i = live.index(t)
        unit_score = float(scores[i, units].mean())
        t.result.rows.append(runner.row(step, br.masked, units, unit_score, evaluated, steps_used, timing))
        if evaluated is not None and protocol.stop_acc is not None and evaluated[0] < protocol.stop_acc:
            t.done, t.result.stop_reason = True, f"test accuracy below stop_acc={protocol.stop_acc}"
        elif reached:
            t.done, t.result.stop_reason = True, f"target sparsity {protocol.target_sparsity} reached"
        elif exhausted:
            t.done, t.result.stop_reason = True, "nothing left to prune"
        if runner.on_step is not None:
            runner.on_step(t.result)


def _retrain(runner: _Runner, br: _Branch, step: int, timing: dict) -> int:
    setup, protocol = runner.setup, runner.protocol
    if not protocol.retrains or setup.retrain.steps == 0:
        return 0
    t0 = time.perf_counter()
    seed = setup.seed * 1_000_003 + step
    x, y = setup.train
    if protocol.name == "retrain":
        used = retrain(br.masked, x, y, setup.retrain, seed)
    else:
        probe = setup.train_probe or setup.train
        used = characterise(br.masked, x, y, probe, runner.initial_train_acc, setup.retrain, seed)
    timing["retrain"] = time.perf_counter() - t0
    return used


def _oneshot(runner: _Runner) -> None:
    setup, protocol = runner.setup, runner.protocol
    live = list(runner.trajectories)
    timing: dict = {}
    scores = unit_scores(runner.root, [t.signal for t in live], setup, [t.rng for t in live], timing)
    for i, t in enumerate(live):
        try:
            _check_finite(scores[i], runner.root.masked, t.signal)
        except PrunetaxError as err:
            _fail(t, err)
            continue
        branch = runner.root.fork([t])
        order = _choose(scores[i], branch.masked, setup.groups.n_units)
        done = 0
        for step, target in enumerate(sorted(protocol.targets), start=1):
            cut = _cut_length(branch.masked, order, done, target, runner.initial.weights)
            t_step = {"score": timing.get("score", 0.0), "stats": timing.get("stats", 0.0)}
            t0 = time.perf_counter()
            branch.masked.prune(order[done:cut])
            t_step["prune"] = time.perf_counter() - t0
            evaluated = runner.evaluate(branch.masked, t_step)
            unit_score = float(scores[i, order[done:cut]].mean()) if cut > done else math.nan
            t.result.rows.append(
                runner.row(step, branch.masked, order[done:cut], unit_score, evaluated, 0, t_step)
            )
            done = cut
        t.done, t.result.stop_reason = True, "all targets evaluated"
        if runner.on_step is not None:
            runner.on_step(t.result)


def _cut_length(masked: MaskedModel, order: list[int], done: int, target: float, initial: int) -> int:
    """Smallest prefix of ``order`` (>= done) whose removal reaches ``target`` sparsity."""

    def sparsity(p: int) -> float:
        trial = masked.active.clone()
        trial[order[:p]] = False
        saved, masked.active = masked.active, trial
        try:
            return 100.0 * (1 - masked.counts().weights / initial)
        finally:
            masked.active = saved

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


def run_protocol(
    setup: Setup, signals: Sequence[SignalSpec], on_step: Callable[[TrajectoryResult], None] | None = None
) -> list[TrajectoryResult]:
    """Run ``setup.protocol`` for every signal; one result per signal, in order.

    The base model is copied, never modified.
    """
    setup = copy.copy(setup)
    setup.model = copy.deepcopy(setup.model).eval()
    runner = _Runner(setup, signals, on_step)
    if setup.protocol.name == "characterise":
        runner.initial_train_acc = 100.0 * evaluate(setup.model, *(setup.train_probe or setup.train))[0]
    runner.start()
    if setup.protocol.name == "oneshot":
        _oneshot(runner)
    else:
        _greedy(runner)
    return [t.result for t in runner.trajectories]
