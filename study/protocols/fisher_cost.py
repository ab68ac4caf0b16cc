"""``fisher_cost``: greedy pruning with a computational cost (Theis et al. 2018).

Theis et al. minimise loss + beta x computational cost, greedily: each step removes the
feature map whose removal increases that objective least. Removing unit ``u`` raises the
loss by about its Fisher score and *lowers* the cost by the MACs it saves, so a unit that
saves more computation is cheaper to remove. Each step prunes

    argmin_u  S_u - beta * dMACs_u / MACs_0,    dMACs_u >= 0 the MACs saved by removing u

(in the paper's notation ``Delta_u + beta * DeltaC_u`` with ``DeltaC_u = -dMACs_u / MACs_0``
<= 0 the change in the normalised cost: the penalty is on the MACs that remain). Here

* ``S_u`` is the trial's signal, scored per unit as in every greedy protocol; with the
  ``fisher`` alias (``activation-taylor-sqr_sum-none``, ``mean_n (sum x*g)^2``) it is Theis's
  Fisher pruning signal (twice his ``Delta = 1/(2N) sum_n (sum x*g)^2``, so this ``beta`` is
  twice his for the same trade-off);
* ``dMACs_u``: the multiply-adds per image removed transitively with ``u`` (its filters,
  its consumers' slices, its coupled producers: :meth:`study.masks.MaskedModel.macs_removed`,
  the ``macs_removed`` scaling's denominator), recomputed at every step, divided by the
  unpruned network's MACs ``MACs_0`` so that one ``beta`` means the same trade-off on
  every network;
* ``beta`` >= 0 is recorded with the trial (a protocol parameter); ``beta = 0`` is the
  ``sensitivity`` protocol. The default 0.1 values 1 % of the network's MACs at 0.001 of
  ``S`` (on the demo networks, a typical unit saves 1-4 % of the MACs and its ``fisher``
  score is 0.0002-0.02).

Otherwise the paper's greedy loop without retraining (``sensitivity``). The steps' ``score``
column holds the signal's own score of the pruned units, not the cost-adjusted one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from pydantic import Field
from pydantic.dataclasses import dataclass

from study.params import STRICT
from study.protocols.base import register_protocol
from study.protocols.greedy import Chooser, Greedy

if TYPE_CHECKING:
    from torch import Tensor

    from study.trajectory import Run, Trajectory

__all__ = ["FisherCost", "DEFAULT_BETA", "delta_macs"]

DEFAULT_BETA = 0.1
"""The value of removing the whole network's MACs, in units of the signal's score."""


@register_protocol
@dataclass(frozen=True, config=STRICT)
class FisherCost(Greedy):
    name = "fisher_cost"
    summary = "greedy pruning by argmin signal - beta x MACs removed / initial MACs (Theis et al. 2018)"

    beta: Annotated[
        float,
        Field(
            ge=0,
            description="value of the MACs a unit's removal saves, as a share of the unpruned network's "
            "MACs: prune argmin signal - beta x that share (Theis et al. 2018; 0 = sensitivity)",
        ),
    ] = DEFAULT_BETA

    def chooser(self, run: Run) -> Chooser:
        """The ``k`` units with the lowest ``S - beta * dMACs / MACs_0`` (seeded ties)."""
        initial = float(run.initial.macs)

        def choose(t: Trajectory, scores: Tensor, k: int) -> list[int]:
            return run.choose(scores + self.beta * delta_macs(run, initial).to(scores), k)

        return choose


def delta_macs(run: Run, initial_macs: float) -> Tensor:
    """``[U]`` the change in the live network's normalised cost if each unit went: minus the
    MACs it removes transitively, as a share of ``initial_macs`` (<= 0; adding ``beta`` times
    it to a score favours the units that save the most computation)."""
    return -run.masked.macs_removed() / initial_macs
