"""The pruning loop (SPEC §3) for several signals at once, sharing all work it can.

Signals of one work unit start from the same network. While two trajectories have
pruned exactly the same units in the same order, their networks are identical
(retraining batches are seeded by step, not by signal), so they share a *branch*: one
statistics pass, one scoring call for all their signals, one pruning, one retraining
and one evaluation. A branch forks only when its signals pick different units.

A branch is data, not a model: its active units, plus a snapshot of the weights once
retraining has made them differ from the base model's. One live network (a
:class:`Workspace`) is loaded with a branch's state before working on it, so forking
costs no model copy and no retracing. The result is bit-identical to running each
signal alone (tested).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from study.collect import Collector
from study.groups import ChannelGroups
from study.masks import MaskedModel
from study.oracle import oracle_scores, unit_slices
from study.protocols import Protocol
from study.retrain import RetrainSettings, characterise, retrain
from study.train import evaluate
from taxonomy.bank import score
from taxonomy.components import Reference
from taxonomy.errors import PrunetaxError
from taxonomy.spec import SignalSpec
from taxonomy.statistics import Needs

__all__ = ["Setup", "TrajectoryResult", "Workspace", "run_protocol", "unit_scores"]


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
    retrain: RetrainSettings | None
    train_probe: tuple[Tensor, Tensor] | None = None  # characterise mode
    eval_examples: list[int] = field(default_factory=list)  # eval-split indices, for the record


@dataclass
class TrajectoryResult:
    """One signal's rows (one per step, step 0 = unpruned) and how it ended."""

    signal: SignalSpec
    rows: list[dict] = field(default_factory=list)
    stop_reason: str = ""
    error: str | None = None


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


@dataclass
class _Trajectory:
    result: TrajectoryResult
    rng: torch.Generator
    done: bool = False

    @property
    def signal(self) -> SignalSpec:
        return self.result.signal


@dataclass(eq=False)
class _Branch:
    """Trajectories with identical histories: their active units and (after retraining) weights."""

    active: Tensor
    members: list[_Trajectory]
    state: dict[str, Tensor] | None = None


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
    ws: Workspace,
    signals: Sequence[SignalSpec],
    batches: list[tuple[Tensor, Tensor]],
    group_reduction: str = "sum",
    rngs: Sequence[torch.Generator] | None = None,
    timing: dict | None = None,
) -> tuple[Tensor, dict[int, Exception]]:
    """``[S, U]`` scores of ``signals`` for the live network (lower = prune first), and the
    errors of the signals that could not be scored (their rows are NaN): taxonomy signals
    share one statistics pass and fail together; each reference fails alone."""
    timing = {} if timing is None else timing
    masked = ws.masked
    out = torch.full((len(signals), masked.groups.n_units), math.nan, dtype=torch.float64)
    errors: dict[int, Exception] = {}
    taxonomy = [k for k, s in enumerate(signals) if not s.is_reference]
    if taxonomy:
        t0 = time.perf_counter()
        try:
            specs = [signals[k] for k in taxonomy]
            stats = ws.collector.collect(batches, Needs.of(specs))
            t1 = time.perf_counter()
            out[taxonomy] = _reduce_to_units(
                score(specs, stats).double().cpu(), masked.groups, group_reduction
            )
            timing["stats"] = timing.get("stats", 0.0) + t1 - t0
            timing["score"] = timing.get("score", 0.0) + time.perf_counter() - t1
        except Exception as err:  # recorded per signal by the caller
            errors.update(dict.fromkeys(taxonomy, err))
    for k, s in enumerate(signals):
        t0 = time.perf_counter()
        try:
            if s.reference is Reference.RANDOM:
                if rngs is None:
                    raise PrunetaxError("the random signal needs a seeded generator.")
                out[k] = torch.rand(masked.groups.n_units, generator=rngs[k], dtype=torch.float64)
            elif s.reference is Reference.ORACLE:
                out[k] = oracle_scores(masked, batches, ws.slices)
        except Exception as err:  # recorded per signal by the caller
            errors[k] = err
        timing["score"] = timing.get("score", 0.0) + time.perf_counter() - t0
    return out, errors


def _choose(scores: Tensor, masked: MaskedModel, k: int) -> list[int]:
    """Up to ``k`` lowest-scoring active units, keeping one unit per group alive."""
    groups = masked.groups
    left = torch.bincount(groups.unit_group[masked.active], minlength=len(groups.group_sizes))
    chosen: list[int] = []
    for u in torch.sort(scores, stable=True).indices.tolist():
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


def _fail(t: _Trajectory, err: Exception) -> None:
    t.done = True
    t.result.error = f"{type(err).__name__}: {err}"
    t.result.stop_reason = "failed"


def _usable(
    t: _Trajectory, i: int, scores: Tensor, errors: dict[int, Exception], masked: MaskedModel
) -> bool:
    """True if row ``i`` holds the trajectory's scores; else it fails (alone) and is done."""
    try:
        if i in errors:
            raise errors[i]
        _check_finite(scores[i], masked, t.signal)
    except Exception as err:  # a failing signal must not stop the others
        _fail(t, err)
        return False
    return True


class _Runner:
    """Drives the branches of one work unit through the protocol."""

    def __init__(self, setup: Setup, signals: Sequence[SignalSpec], on_step: Callable | None) -> None:
        self.setup, self.protocol, self.on_step = setup, setup.protocol, on_step
        self.ws = Workspace(setup.model, setup.groups, setup.protocol.tap)
        self.units_per_step = self.protocol.units_per_step(setup.groups.n_units)
        self.initial = self.ws.masked.counts()
        self.names = setup.groups.unit_names()
        self.trajectories = [
            _Trajectory(TrajectoryResult(s), torch.Generator().manual_seed(setup.seed)) for s in signals
        ]
        self.root = _Branch(self.ws.masked.active.clone(), list(self.trajectories))
        # test and eval examples in one forward pass per evaluation
        (tx, ty), (ex, ey) = (
            setup.test,
            (torch.cat([b[0] for b in setup.eval_batches]), torch.cat([b[1] for b in setup.eval_batches])),
        )
        self.eval_x, self.eval_y, self.n_test = torch.cat([tx, ex]), torch.cat([ty, ey]), ty.shape[0]
        self.initial_train_acc = math.nan
        if self.protocol.name == "characterise":
            self.initial_train_acc = 100.0 * evaluate(setup.model, *(setup.train_probe or setup.train))[0]

    def load(self, branch: _Branch) -> MaskedModel:
        self.ws.load(branch.active, branch.state, branch)
        return self.ws.masked

    @torch.inference_mode()
    def evaluate(self, timing: dict) -> tuple[float, float, float]:
        """(test accuracy %, test loss, eval loss) of the live network."""
        t0 = time.perf_counter()
        model = self.ws.masked.model
        model.eval()
        losses, correct = [], []
        for i in range(0, self.eval_x.shape[0], 1024):
            logits = model(self.eval_x[i : i + 1024])
            y = self.eval_y[i : i + 1024]
            losses.append(F.cross_entropy(logits, y, reduction="none").double())
            correct.append(logits.argmax(1) == y)
        loss, hit, n = torch.cat(losses), torch.cat(correct), self.n_test
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
        c = self.ws.masked.counts()
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

    def start(self) -> None:
        self.load(self.root)
        evaluated = self.evaluate({})
        for t in self.trajectories:
            t.result.rows.append(self.row(0, [], math.nan, evaluated, 0, {}))
            self.notify(t)

    def notify(self, t: _Trajectory) -> None:
        if self.on_step is not None:
            self.on_step(t.result)

    def scores(self, members: list[_Trajectory], timing: dict) -> tuple[Tensor, dict[int, Exception]]:
        p = self.protocol
        return unit_scores(
            self.ws,
            [t.signal for t in members],
            self.setup.eval_batches,
            p.group_reduction,
            [t.rng for t in members],
            timing,
        )

    def retrain(self, branch: _Branch, step: int, timing: dict) -> int:
        """Retrain the live network (loaded with ``branch``) and snapshot its weights."""
        setup, protocol = self.setup, self.protocol
        if not protocol.retrains or setup.retrain is None or setup.retrain.steps == 0:
            return 0
        t0 = time.perf_counter()
        seed, (x, y) = setup.seed * 1_000_003 + step, setup.train
        masked = self.ws.masked
        if protocol.name == "retrain":
            used = retrain(masked, x, y, setup.retrain, seed)
        else:
            used = characterise(
                masked, x, y, setup.train_probe or setup.train, self.initial_train_acc, setup.retrain, seed
            )
        if used:
            branch.state = self.ws.snapshot()
        timing["retrain"] = time.perf_counter() - t0
        return used


def _greedy(runner: _Runner) -> None:
    branches, step = [runner.root], 0
    while branches:
        step += 1
        nxt: list[_Branch] = []
        for br in branches:
            live = [t for t in br.members if not t.done]
            masked = runner.load(br)
            timing: dict = {}
            scores, errors = runner.scores(live, timing)
            by_choice: dict[tuple[int, ...], list[int]] = {}
            for i, t in enumerate(live):
                if not _usable(t, i, scores, errors, masked):
                    continue
                chosen = _choose(scores[i], masked, runner.units_per_step)
                if not chosen:
                    t.done, t.result.stop_reason = True, "nothing left to prune"
                    continue
                by_choice.setdefault(tuple(chosen), []).append(i)
            for units, idx in by_choice.items():
                active = br.active.clone()
                active[list(units)] = False
                child = _Branch(active, [live[i] for i in idx], br.state)
                _advance(runner, child, step, list(units), scores[idx], dict(timing))
                if any(not t.done for t in child.members):
                    nxt.append(child)
        branches = nxt


def _advance(runner: _Runner, br: _Branch, step: int, units: list[int], scores: Tensor, timing: dict) -> None:
    """Prune ``units`` (load the child branch), retrain, evaluate, log, check stops."""
    protocol = runner.protocol
    t0 = time.perf_counter()
    masked = runner.load(br)
    timing["prune"] = time.perf_counter() - t0
    steps_used = runner.retrain(br, step, timing)
    sparsity = 100.0 * (1 - masked.counts().weights / runner.initial.weights)
    reached = protocol.target_sparsity is not None and sparsity >= protocol.target_sparsity
    exhausted = not _choose(torch.zeros(masked.groups.n_units), masked, 1)
    due = step % protocol.test_interval == 0 or reached or exhausted
    evaluated = runner.evaluate(timing) if due else None
    for k, t in enumerate(br.members):
        unit_score = float(scores[k, units].mean())
        t.result.rows.append(runner.row(step, units, unit_score, evaluated, steps_used, timing))
        if evaluated is not None and protocol.stop_acc is not None and evaluated[0] < protocol.stop_acc:
            t.done, t.result.stop_reason = True, f"test accuracy below stop_acc={protocol.stop_acc}"
        elif reached:
            t.done, t.result.stop_reason = True, f"target sparsity {protocol.target_sparsity} reached"
        elif exhausted:
            t.done, t.result.stop_reason = True, "nothing left to prune"
        runner.notify(t)


def _oneshot(runner: _Runner) -> None:
    live = list(runner.trajectories)
    masked = runner.load(runner.root)
    timing: dict = {}
    scores, errors = runner.scores(live, timing)
    for i, t in enumerate(live):
        if not _usable(t, i, scores, errors, masked):
            continue
        order = _choose(scores[i], runner.load(runner.root), runner.ws.masked.groups.n_units)
        done = 0
        for step, target in enumerate(sorted(runner.protocol.targets), start=1):
            cut = _cut_length(runner.ws.masked, order, done, target, runner.initial.weights)
            t_step = {"score": timing.get("score", 0.0), "stats": timing.get("stats", 0.0)}
            t0 = time.perf_counter()
            active = runner.root.active.clone()
            active[order[:cut]] = False
            runner.load(_Branch(active, [t]))
            t_step["prune"] = time.perf_counter() - t0
            evaluated = runner.evaluate(t_step)
            unit_score = float(scores[i, order[done:cut]].mean()) if cut > done else math.nan
            t.result.rows.append(runner.row(step, order[done:cut], unit_score, evaluated, 0, t_step))
            done = cut
        t.done, t.result.stop_reason = True, "all targets evaluated"
        runner.notify(t)


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


def run_protocol(
    setup: Setup, signals: Sequence[SignalSpec], on_step: Callable[[TrajectoryResult], None] | None = None
) -> list[TrajectoryResult]:
    """Run ``setup.protocol`` for every signal; one result per signal, in order.

    The base model is left as it was (its weights are restored at the end).
    """
    runner = _Runner(setup, signals, on_step)
    try:
        runner.start()
        if setup.protocol.name == "oneshot":
            _oneshot(runner)
        else:
            _greedy(runner)
    finally:
        runner.ws.load(torch.ones_like(runner.root.active), None, None)
        runner.ws.masked.active = torch.ones_like(runner.root.active)
    return [t.result for t in runner.trajectories]
