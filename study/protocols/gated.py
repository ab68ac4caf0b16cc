"""``gated``: per-input channel gates (dynamic inference; Fragoulis et al. 2019, Molchanov's IamNN).

Each coupled group gets a small gating head at its first conv (graph order): global average
pooling of that conv's input, one linear layer, a sigmoid: ``p = sigmoid(W avgpool(x) + b)``,
the probability that each of the group's units runs on this input. Starting from the base
model (weights and heads trained jointly; ``b`` starts at +3, ``W`` at 0: gates open), every
cost weight ``lambda`` of ``costs`` fine-tunes a copy for ``gate_steps`` SGD steps on

    loss = CE + lambda * E[MACs(x)] / MACs_dense

where, during training, unit u runs with probability p_u (a Bernoulli draw, gradient by the
straight-through estimator) and E[MACs(x)] is the exact expectation of the MACs executed on
input x under those draws (:class:`study.gating.MacForm`, a quadratic form in p) plus the
heads' own MACs. At test time a unit runs iff p_u > ``threshold``. A learned head (rather
than a fixed rule such as "skip channels a cheap predictor says are near zero") is chosen
because its cost term targets the quantity reported, the expected executed MACs per image,
and one knob (lambda) traces the accuracy-MACs curve.

Rows: step 0 is the base model; step k the k-th smallest lambda. ``macs_remaining`` is the
mean over test images of the MACs executed on each (the heads' included), ``macs_p5`` ...
``macs_p95`` their percentiles, and the weights count the units that run on at least one test image:
dynamic gating saves computation, not storage. The heads' own weights (as many as their MACs
per image: 1,552 on tiny_cnn, against its 19,088) are left out of the weight count, so that
weight sparsity stays a statement about the backbone.
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

if TYPE_CHECKING:
    import torch
    from torch import Tensor, nn

    from study.dynamic import Recipe
    from study.gating import GatedNetwork, MacForm
    from study.trajectory import Run, Setup, Trajectory, TrajectoryResult
    from taxonomy.spec import SignalSpec

__all__ = ["Gated", "GateHeads", "gated_counts"]

PERCENTILES = (5, 25, 50, 75, 95)  # of the MACs executed per test image: steps columns macs_p<p>
HEAD_BIAS = 2.0  # initial logit: p = 0.88, gates open


@register_protocol
@dataclass(frozen=True, config=STRICT)
class Gated(Protocol):
    name = "gated"
    random_only = "gates channels per input with its own learned heads"
    summary = (
        "per-input channel gates (Fragoulis et al. 2019, IamNN) trained from the base model with a cost "
        "on expected executed MACs, one row per cost weight (signal random only)"
    )

    costs: Annotated[
        tuple[Annotated[float, Field(ge=0)], ...],
        Field(min_length=1, description="cost weights lambda of the expected-MACs term, one row each"),
    ] = (0.1, 0.15, 0.2, 0.3, 0.5, 1.0)
    gate_steps: Annotated[
        int, Field(ge=1, description="SGD steps that train the gates (per cost weight)")
    ] = 300
    gate_lr: Annotated[float, Field(gt=0, description="learning rate of the gates and the network")] = 0.01
    gate_batch_size: Annotated[
        int | None, Field(ge=1, description="gate-training mini-batch size (default: the model's)")
    ] = None
    head_lr: Annotated[float, Field(gt=0, description="learning rate of the gating heads")] = 1.0
    threshold: Annotated[
        float, Field(gt=0, lt=1, description="at test time a unit runs iff its gate probability exceeds this")
    ] = 0.5

    def __post_init__(self) -> None:
        if self.mean_replacement:
            raise ValueError(
                "`mean_replacement` does not apply to protocol gated: a gate switches a channel off for one "
                "input and folds nothing into the consumers; run gated without it"
            )

    def run(
        self,
        setup: Setup,
        signals: Sequence[SignalSpec],
        on_step: OnStep = None,
        draws: Sequence[int] | None = None,
    ) -> list[TrajectoryResult]:
        from study.trajectory import draw_seed

        def each_draw(run: Run) -> None:
            for t, draw in zip(run.trajectories, draws or [0] * len(signals), strict=True):
                try:
                    self.check_signal(t.signal)
                    self._curve(run, t, draw_seed(setup.seed, draw))
                except Exception as err:  # one failing draw must not stop the others
                    t.fail(err)

        return self._in_lockstep(setup, signals, on_step, draws, each_draw)

    def recipe(self, setup: Setup) -> Recipe:
        from study.dynamic import recipe

        return recipe(setup, self.gate_steps, self.gate_lr, self.gate_batch_size, None, "none")

    def _curve(self, run: Run, t: Trajectory, seed: int) -> None:
        """One row per cost weight: train the gates from the base model, evaluate them."""
        from study.dynamic import start_network, training_columns
        from study.gating import GatedNetwork, MacForm

        setup, recipe = run.setup, self.recipe(run.setup)
        form = MacForm(setup.groups)
        for step, cost in enumerate(sorted(self.costs), start=1):
            timing: dict = {}
            t0 = time.perf_counter()
            net = start_network(setup, "base", seed)
            gated = GatedNetwork(net, setup.groups)
            heads = GateHeads(gated, net).to(next(net.parameters()).device)
            train_gates(gated, heads, form, setup, recipe, cost, seed, self.head_lr / self.gate_lr)
            timing["retrain"] = time.perf_counter() - t0
            t.result.rows.append(self._row(run, step, gated, heads, form, timing))
            run.notify(t)
        dense = float(run.initial.macs)
        per_step = dense + heads.macs  # the straight-through estimator runs every channel while training
        columns = training_columns(
            "base",
            recipe.steps * len(self.costs),
            per_step * recipe.steps * len(self.costs),
            dense,
            recipe.batch_size,
        )
        t.result.trial.update(columns)
        t.stop("all cost weights evaluated")

    def _row(
        self, run: Run, step: int, gated: GatedNetwork, heads: GateHeads, form: MacForm, timing: dict
    ) -> dict:
        """The steps row of one trained gating: accuracy and executed MACs per test image."""
        import torch

        t0 = time.perf_counter()
        heads.mode, heads.threshold = "threshold", self.threshold
        (tx, ty), batches = run.setup.test, run.setup.eval_batches
        loss, hits, gates = gated_outputs(gated, tx, ty)
        eval_loss = gated_outputs(
            gated, torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])
        )[0]
        timing["eval"] = time.perf_counter() - t0
        counts = gated_counts(form, gates, heads, run.setup.groups)
        ran, mean = counts.pop("ran"), counts.pop("macs_mean")
        names = run.names
        pruned = [names[u] for u in (~ran).nonzero().flatten().tolist()]
        initial = run.initial
        return {
            "step": step,
            "pruned": ";".join(pruned),
            "n_pruned": len(pruned),
            **counts,
            "sparsity": 100.0 * (1 - counts["weights_remaining"] / initial.weights),
            "macs_sparsity": 100.0 * (1 - mean / initial.macs),
            "test_acc": 100.0 * hits.double().mean().item(),
            "test_loss": loss.mean().item(),
            "eval_loss": eval_loss.mean().item(),
            "score": math.nan,
            "retrain_steps": self.gate_steps,
            **{f"t_{k}": timing.get(k, 0.0) for k in ("stats", "score", "prune", "retrain", "eval")},
        }


class GateHeads:
    """The gating heads of a :class:`GatedNetwork`: one linear layer per gated group, fed the
    global average of the input of the group's first conv; installed as the network's head."""

    def __init__(self, gated: GatedNetwork, net: nn.Module) -> None:
        import torch
        from torch import nn

        self.linears = nn.ModuleDict()
        for site in gated.sites:
            if site.computes:
                conv = net.get_submodule(site.conv)
                size = gated.offsets[site.group + 1] - gated.offsets[site.group]
                lin = nn.Linear(conv.in_channels, size)
                with torch.no_grad():
                    lin.weight.zero_()
                    lin.bias.fill_(HEAD_BIAS)
                self.linears[str(site.group)] = lin
        self.mode, self.threshold = "sample", 0.5
        self.generator: torch.Generator | None = None
        self.probs: dict[int, Tensor] = {}
        gated.head = self

    @property
    def macs(self) -> int:
        """Multiply-adds of the heads per image (= their weights)."""
        return sum(lin.weight.numel() for lin in self.linears.values())

    def to(self, device: torch.device) -> GateHeads:
        self.linears.to(device)
        return self

    def __call__(self, group: int, conv_input: Tensor) -> Tensor:
        import torch

        p = torch.sigmoid(self.linears[str(group)](conv_input.mean((2, 3))))
        self.probs[group] = p
        if self.mode == "threshold":
            return (p > self.threshold).to(p.dtype)
        drawn = torch.bernoulli(p.detach().cpu(), generator=self.generator).to(p.device)  # the CPU stream
        return drawn + p - p.detach()  # the draw forward, the probability's gradient backward


def train_gates(
    gated: GatedNetwork,
    heads: GateHeads,
    form: MacForm,
    setup: Setup,
    recipe: Recipe,
    cost: float,
    seed: int,
    head_lr_scale: float = 1.0,
) -> None:
    """Fine-tune the network and its heads on CE + cost x expected executed MACs / dense MACs."""
    import torch
    import torch.nn.functional as F

    from taxonomy.errors import PrunetaxError

    net = gated.model
    groups = [
        {"params": list(net.parameters()), "scale": 1.0},
        {"params": list(heads.linears.parameters()), "scale": head_lr_scale},
    ]
    opt = torch.optim.SGD(groups, lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay)
    dense = float(form.macs(torch.ones(form.n_units)))
    x, y = setup.train
    generator = torch.Generator().manual_seed(seed)
    heads.mode, heads.generator = "sample", generator
    net.train()
    try:
        for step, idx, lr in recipe.batches(len(y), generator):
            for group in opt.param_groups:
                group["lr"] = lr * group["scale"]
            idx = idx.to(x.device)
            ce = F.cross_entropy(gated(x[idx]), y[idx])
            probs = gated.assemble(heads.probs)
            expected = (form.macs(probs, bernoulli=True) + heads.macs).mean() / dense
            loss = ce + cost * expected.to(ce.dtype)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if not math.isfinite(loss.item()):
                raise PrunetaxError(f"gate training diverged at step {step + 1}; try a smaller gate_lr.")
    finally:
        net.eval()


def gated_outputs(
    gated: GatedNetwork, x: Tensor, y: Tensor, batch_size: int = 1024
) -> tuple[Tensor, Tensor, Tensor]:
    """Per-example loss, hits and ``[N, U]`` 0/1 gates of the gated network (eval mode)."""
    import torch
    import torch.nn.functional as F

    losses, hits, gates = [], [], []
    with torch.inference_mode():
        for i in range(0, len(y), batch_size):
            xb, yb = x[i : i + batch_size], y[i : i + batch_size]
            logits = gated(xb)
            losses.append(F.cross_entropy(logits, yb, reduction="none").double())
            hits.append(logits.argmax(1) == yb)
            gates.append(gated.unit_gates().cpu())
    return torch.cat(losses), torch.cat(hits), torch.cat(gates)


def gated_counts(form: MacForm, gates: Tensor, heads: GateHeads, groups) -> dict[str, object]:  # noqa: ANN001
    """What per-input gates ``[N, U]`` execute: per-image MACs (mean, rounded mean, quantiles) with
    the heads', and the units, channels and (backbone) weights that run on at least one input."""
    import torch

    per_image = form.macs(gates) + heads.macs
    ran = gates.bool().any(0)
    channels = sum(int(ran[layer.unit].sum()) for layer in groups.layers)
    q = torch.quantile(per_image, torch.tensor([p / 100 for p in PERCENTILES], dtype=torch.float64))
    mean = float(per_image.mean())
    return {
        "units_remaining": int(ran.sum()),
        "channels_remaining": channels,
        "weights_remaining": round(float(form.weights(ran))),
        "macs_remaining": round(mean),
        "macs_mean": mean,
        **{f"macs_p{p}": float(v) for p, v in zip(PERCENTILES, q, strict=True)},
        "ran": ran,
    }
