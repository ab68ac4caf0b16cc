"""``cucb``: train with combinatorial-UCB channel execution, prune the least executed
(Spasov & Liò, BMVC 2019).

Training (from scratch by default: ``start``) runs the model's SGD recipe, but at every
step each layer executes only its ``keep`` fraction of units, the top-k by the CUCB index
(:mod:`study.bandit`; a layer = a coupled group, a unit = one arm). The others are gated
off (:mod:`study.gating`): they output nothing, get no gradient, and their weights, momentum
and BN statistics stay as they were, so the step computes exactly what the network without
them computes (tested against masking). The training MACs saved against dense training are
recorded (``train_macs*``).

Reward of an executed unit u at a step (the magnitude of its first-order Taylor term on the
step's batch of B examples, Molchanov et al. 2017, as the paper measures a channel's
contribution): with l_n the loss of example n and g_{n,u} the unit's gate on example n,

    s_u = (1/B) sum_n | d l_n / d g_{n,u} |   (= |sum over its channels' maps of a * dl_n/da|)
    r_u = s_u / sqrt(sum_{j executed in u's layer} s_j^2)   in [0, 1] (0 if all s_j are 0)

i.e. the taxonomy's ``taylor_fo`` (activation-taylor-abs_sum-l2) over the layer's executed
units, on the training batch (BN in training mode). After training, units are ranked by
their selection count T_u (ties: lower mean reward first, then a seeded permutation) and
cut one-shot to each target weight sparsity; every step row is evaluated as cut
(``test_acc``) and after ``finetune_steps`` SGD steps (``finetune_acc``). Step 0 is the
trained network with every channel.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field
from pydantic.dataclasses import dataclass

from study.params import STRICT
from study.protocols.base import OnStep, Protocol, register_protocol
from study.protocols.greedy import Percent

if TYPE_CHECKING:
    from torch import Tensor, nn

    from study.bandit import CUCB
    from study.dynamic import Recipe
    from study.trajectory import Run, Setup, Trajectory, TrajectoryResult
    from taxonomy.spec import SignalSpec

__all__ = ["Cucb", "train_cucb", "taylor_rewards"]


@register_protocol
@dataclass(frozen=True, config=STRICT)
class Cucb(Protocol):
    name = "cucb"
    random_only = "chooses channels by its own bandit statistics"
    summary = (
        "train executing each layer's top-k units by combinatorial UCB (Spasov & Liò 2019), prune the "
        "least executed to each target (signal random only)"
    )

    start: Annotated[
        Literal["scratch", "base"],
        Field(
            description="train a new network initialised as the base model was (scratch) or the base model"
        ),
    ] = "scratch"
    keep: Annotated[
        float, Field(gt=0, le=1, description="fraction of each layer's units executed per training step")
    ] = 0.5
    exploration: Annotated[
        float,
        Field(ge=0, description="CUCB exploration constant c of mu + c sqrt(ln t / T) (CUCB: sqrt 1.5)"),
    ] = 1.5**0.5
    train_steps: Annotated[
        int | None,
        Field(ge=1, description="training steps (default: the model's epochs x batches per epoch)"),
    ] = None
    train_lr: Annotated[
        float | None, Field(gt=0, description="training learning rate (default: the model's)")
    ] = None
    train_batch_size: Annotated[
        int | None, Field(ge=1, description="training mini-batch size (default: the model's)")
    ] = None
    train_weight_decay: Annotated[
        float | None, Field(ge=0, description="training weight decay (default: the model's)")
    ] = None
    train_augment: Annotated[
        Literal["none", "crop_flip"],
        Field(description="training augmentation (none for digits, crop_flip for CIFAR)"),
    ] = "none"
    targets: Annotated[
        tuple[Percent, ...], Field(min_length=1, description="target weight sparsities (%), e.g. 10,20,40")
    ] = (10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0)
    finetune_steps: Annotated[
        int, Field(ge=0, description="SGD steps of the short fine-tune after each cut (finetune_acc)")
    ] = 50
    finetune_lr: Annotated[float, Field(gt=0, description="fine-tuning learning rate")] = 0.01

    def run(
        self,
        setup: Setup,
        signals: Sequence[SignalSpec],
        on_step: OnStep = None,
        draws: Sequence[int] | None = None,
    ) -> list[TrajectoryResult]:
        from study.trajectory import TrajectoryResult

        draws = [0] * len(signals) if draws is None else list(draws)
        results = []
        for signal, draw in zip(signals, draws, strict=True):
            try:  # each draw is an independent training run: one failing does not stop the others
                self.check_signal(signal)
                results.append(self._one(setup, signal, draw, on_step))
            except Exception as err:
                results.append(
                    TrajectoryResult(signal, stop_reason="failed", error=f"{type(err).__name__}: {err}")
                )
        return results

    def recipe(self, setup: Setup) -> Recipe:
        from study.dynamic import recipe

        return recipe(
            setup,
            self.train_steps,
            self.train_lr,
            self.train_batch_size,
            self.train_weight_decay,
            self.train_augment,
        )

    def _one(self, setup: Setup, signal: SignalSpec, draw: int, on_step: OnStep) -> TrajectoryResult:
        from study import trajectory
        from study.dynamic import start_network, training_columns

        seed = trajectory.draw_seed(setup.seed, draw)
        recipe = self.recipe(setup)
        net = start_network(setup, self.start, seed)
        t0 = time.perf_counter()
        bandit, macs = train_cucb(net, setup, recipe, self.keep, self.exploration, seed)
        trained = time.perf_counter() - t0
        run = trajectory.Run(
            dataclasses.replace(setup, model=net), [signal], self.aggregation, self.tap, None, [draw]
        )
        (t,) = run.trajectories
        try:
            run.start()
            t.result.rows[0]["t_retrain"] = trained
            run.on_step = on_step
            run.notify(t)
            self._cut(run, t, bandit.prune_order_scores(), seed)
        finally:
            (result,) = run.finish()
        dense = float(run.initial.macs)
        result.trial.update(training_columns(self.start, recipe.steps, macs, dense, recipe.batch_size))
        return result

    def _cut(self, run: Run, t: Trajectory, scores: Tensor, seed: int) -> None:
        """One row per target: the least executed units cut (from the trained network), evaluated
        as cut and after the short fine-tune."""
        from study.protocols.oneshot import _cut_length

        run.load(run.root)
        order = run.choose(scores, run.setup.groups.n_units)
        done = 0
        for step, target in enumerate(sorted(self.targets), start=1):
            run.load(run.root)
            cut = _cut_length(run.masked, order, done, target, run.initial.weights)
            timing: dict = {}
            t0 = time.perf_counter()
            run.load(run.fork(run.root, order[:cut], [t]))
            timing["prune"] = time.perf_counter() - t0
            evaluated = run.evaluate(timing)
            score = float(scores[order[done:cut]].mean()) if cut > done else math.nan
            row = run.row(step, order[done:cut], score, evaluated, 0, timing)
            t0 = time.perf_counter()
            row["finetune_acc"] = self._finetune(run, seed * 1_000_003 + step)  # as retrain.step_seed
            row["t_retrain"] = time.perf_counter() - t0
            t.result.rows.append(row)
            run.notify(t)
            done = cut
        t.stop("all targets evaluated")

    def _finetune(self, run: Run, seed: int) -> float:
        """Test accuracy (%) after ``finetune_steps`` SGD steps (batches seeded by ``seed``) on the
        live (cut) network; its pruned slices stay at zero."""
        from study.retrain import RetrainSettings, retrain

        if self.finetune_steps == 0:
            return math.nan
        recipe = self.recipe(run.setup)
        cfg = RetrainSettings(self.finetune_steps, self.finetune_lr, recipe.momentum, recipe.weight_decay, 64)
        retrain(run.masked, *run.setup.train, cfg, seed)
        return run.evaluate({})[0]


def train_cucb(
    net: nn.Module, setup: Setup, recipe: Recipe, keep: float, exploration: float, seed: int
) -> tuple[CUCB, float]:
    """Train ``net`` in place with CUCB channel execution; return the bandit (its counts and mean
    rewards) and the sum over steps of the executed forward MACs per image."""
    import torch

    from study.bandit import CUCB, arms_per_layer
    from study.gating import GatedNetwork, MacForm
    from study.train import augment_batch
    from study.trajectory import tie_order
    from taxonomy.errors import PrunetaxError

    groups = setup.groups
    bandit = CUCB(
        groups.unit_group,
        arms_per_layer(groups.group_sizes, keep),
        exploration,
        tie_order(groups.n_units, seed),
    )
    step_fn = _Stepper(net, setup, recipe)
    form, gated = MacForm(groups), GatedNetwork(net, groups)
    x, y = setup.train
    generator = torch.Generator().manual_seed(seed)
    executed = 0.0
    net.train()
    try:
        for step, idx, lr in recipe.batches(len(y), generator):
            chosen = bandit.select(step + 1)
            idx = idx.to(x.device)
            xb, yb = augment_batch(x[idx], recipe.augment, generator), y[idx]
            gates = chosen.to(x.dtype).to(x.device).expand(len(yb), -1).clone().requires_grad_()
            gated.gates = gates
            loss = step_fn(gated, xb, yb, chosen, lr)
            if not math.isfinite(loss):
                raise PrunetaxError(
                    f"CUCB training diverged at step {step + 1} (loss {loss}); try a smaller train_lr."
                )
            bandit.update(chosen, taylor_rewards(gates.grad * len(yb), chosen, groups.unit_group))
            executed += float(form.macs(chosen))
    finally:
        gated.gates = None
        net.eval()
    return bandit, executed


class _Stepper:
    """One SGD step that touches only the executed units' parameters, momentum and BN statistics."""

    def __init__(self, net: nn.Module, setup: Setup, recipe: Recipe) -> None:
        from study.gating import bn_units
        from study.masks import MaskedModel

        self.recipe = recipe
        self.masked = MaskedModel(net, setup.groups)
        self.named = list(net.named_parameters())
        self.buffers: list[Tensor | None] = [None] * len(self.named)
        self.bns = bn_units(net, setup.groups)
        self.cache: dict[bytes, dict[str, Tensor]] = {}

    def _masks(self, chosen: Tensor) -> dict[str, Tensor]:
        """The parameter masks of the executed units (the last few selections kept: they repeat)."""
        key = chosen.numpy().tobytes()
        if key not in self.cache:
            if len(self.cache) > 16:
                self.cache.clear()
            self.masked.active = chosen
            self.cache[key] = self.masked.masks()
        return self.cache[key]

    def __call__(
        self, forward: Callable[[Tensor], Tensor], x: Tensor, y: Tensor, chosen: Tensor, lr: float
    ) -> float:
        import torch.nn.functional as F

        from study.gating import keep_bn_stats, masked_sgd_step

        before = [(bn.running_mean.clone(), bn.running_var.clone()) for bn, _ in self.bns]
        for _, p in self.named:
            p.grad = None
        loss = F.cross_entropy(forward(x), y)
        loss.backward()
        keep_bn_stats(self.bns, before, chosen)
        masks = self._masks(chosen)
        params = [(p, masks.get(name)) for name, p in self.named]
        masked_sgd_step(params, self.buffers, lr, self.recipe.momentum, self.recipe.weight_decay)
        return float(loss.detach())


def taylor_rewards(taylor: Tensor, executed: Tensor, layer: Tensor) -> Tensor:
    """``[U]`` CUCB rewards from per-example Taylor terms ``[B, U]`` (d l_n / d g_{n,u}): the mean
    magnitude over the batch, divided by the L2 norm over the executed units of the layer."""
    import torch

    s = taylor.detach().double().abs().mean(0) * executed.to(taylor.device)
    s = s.cpu()
    norm = torch.zeros(int(layer.max()) + 1, dtype=torch.float64).index_add_(0, layer, s.square()).sqrt()
    denom = norm[layer]
    return torch.where(denom > 0, s / torch.where(denom > 0, denom, 1.0), 0.0).clamp(0.0, 1.0)
