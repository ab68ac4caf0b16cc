"""``best_of_n``: the best of N random masks at each target sparsity (Anwar et al. 2017).

A search baseline, run one-shot like ``oneshot``: N (``n_masks``) random masks of the
unpruned network are drawn at each target; each one's mean cross-entropy on the eval
batches (the saliency data every signal sees) is measured, the mask with the lowest (the
first drawn among equals) is kept and its row logged: test accuracy, eval loss, the units
it removes (all of them: the winners of two targets need not be nested) and
``oracle_evals`` = N. Step k is the k-th target in increasing order.

A random mask: N random unit orders are drawn once per trajectory (uniform keys from the
trajectory's generator, seeded by the trial seed and the draw), each filtered so that every
group keeps one unit (:func:`study.trajectory.choose_units`); at a target, each order is cut
at its smallest prefix whose removal reaches the target weight sparsity (all of it when
the target is out of reach). So every target sees N independent uniformly random masks.
The trial's signal must be ``random``: the masks are random draws, and a repeat runs
``random_draws`` independent searches (the ``draw`` column), like the ``random`` signal.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated

from pydantic import Field
from pydantic.dataclasses import dataclass

from study.params import STRICT
from study.protocols.base import register_protocol
from study.protocols.oneshot import OneShot
from taxonomy.errors import PrunetaxError

if TYPE_CHECKING:
    from torch import Tensor

    from study.groups import ChannelGroups
    from study.trajectory import Run, Trajectory

__all__ = ["BestOfN", "PrefixSparsity"]


class PrefixSparsity:
    """Weight sparsity after removing every prefix of a unit order, all prefixes at once.

    A weight entry (one output x input slice of a conv or linear weight, ``spatial`` weights)
    goes when its output unit or its input unit goes, so it goes at position
    ``min(pos[out], pos[in])`` of the order; the cumulative sum of what goes at each position
    is the removal curve. Equal to :meth:`study.masks.MaskedModel.counts` (tested) at a
    fraction of the cost of one count per prefix.
    """

    def __init__(self, groups: ChannelGroups, initial_weights: int) -> None:
        import torch

        outs, ins, sizes = [], [], []
        for owners in groups.params:
            if not owners.is_weight:
                continue
            out, inp = (o.reshape(o.shape[0], -1) for o in owners.owners)
            shape = torch.broadcast_shapes(out.shape, inp.shape)
            outs.append(out.expand(shape).flatten())
            ins.append(inp.expand(shape).flatten())
            sizes.append(torch.full((outs[-1].numel(),), owners.spatial, dtype=torch.int64))
        self.out, self.inp, self.size = torch.cat(outs), torch.cat(ins), torch.cat(sizes)
        self.n_units, self.initial = groups.n_units, initial_weights

    def curve(self, order: Sequence[int]) -> Tensor:
        """``[len(order) + 1]`` weight sparsity (%) after removing the first p units, p = 0..len."""
        import torch

        n = len(order)
        pos = torch.full((self.n_units + 1,), n, dtype=torch.int64)  # never removed: position n
        pos[torch.as_tensor(list(order), dtype=torch.int64)] = torch.arange(n)
        goes = torch.minimum(pos[self.out], pos[self.inp])  # owner -1 reads pos[n_units] = n
        removed = torch.cumsum(torch.bincount(goes, self.size, minlength=n + 1), 0)[:n]
        removed = torch.cat([removed.new_zeros(1), removed])
        return 100.0 * (1 - (self.initial - removed).double() / self.initial)

    @staticmethod
    def cut(curve: Tensor, target: float) -> int:
        """Smallest prefix whose removal reaches ``target`` % on ``curve`` (all of it if none does)."""
        reached = (curve >= target).nonzero()
        return int(reached[0]) if len(reached) else len(curve) - 1


@register_protocol
@dataclass(frozen=True, config=STRICT)
class BestOfN(OneShot):
    name = "best_of_n"
    random_only = "draws its own random masks"
    summary = (
        "search baseline (Anwar et al. 2017): at each target, the best of N random masks by eval loss "
        "(signal random only)"
    )

    n_masks: Annotated[
        int, Field(ge=1, description="random masks drawn and evaluated on the eval batches per target (N)")
    ] = 100

    def _drive(self, run: Run) -> None:
        """Each trajectory searches its targets on its own (no signal scores)."""
        for t in run.trajectories:
            try:
                self.check_signal(t.signal)
            except PrunetaxError as err:
                t.fail(err)
                continue
            self._search(run, t)

    def _search(self, run: Run, t: Trajectory) -> None:
        """One row per target: of ``n_masks`` random masks, the one with the lowest eval loss."""
        import torch

        from study.evaluation import mean_loss

        n = run.setup.groups.n_units
        run.load(run.root)
        t0 = time.perf_counter()
        orders = [
            run.choose(torch.rand(n, generator=t.rng, dtype=torch.float64), n) for _ in range(self.n_masks)
        ]
        prefix = PrefixSparsity(run.setup.groups, run.initial.weights)
        curves = [prefix.curve(order) for order in orders]
        drawn = time.perf_counter() - t0
        for step, target in enumerate(sorted(self.targets), start=1):
            t0 = time.perf_counter()
            best, best_loss = None, math.inf
            for order, curve in zip(orders, curves, strict=True):
                mask = order[: prefix.cut(curve, target)]
                loss = mean_loss(run.load(run.fork(run.root, mask, [])).model, run.setup.eval_batches)
                if best is None or loss < best_loss:
                    best, best_loss = mask, loss
            timing = {"score": time.perf_counter() - t0 + (drawn if step == 1 else 0.0)}
            t0 = time.perf_counter()
            run.load(run.fork(run.root, best, [t]))
            timing["prune"] = time.perf_counter() - t0
            row = run.row(step, best, math.nan, run.evaluate(timing), 0, timing)
            t.result.rows.append({**row, "oracle_evals": self.n_masks})
        t.result.trial["oracle_evals"] = self.n_masks * len(self.targets)
        t.stop("all targets evaluated")
        run.notify(t)
