"""Activation-sum voting (Anwar et al. 2017), the reference signal ``activation_voting``.

Each eval image votes for the units it activates least, and the units with the most
votes are pruned first. Definitions (the paper leaves them to the implementation):

* **Activation** of unit u on image n: the sum of the unit's elements at the protocol's
  tap point (``output`` by default: the feature map after BN and the nonlinearity, what
  the next layer reads). A coupled unit is pooled like the taxonomy pools it
  (:mod:`taxonomy.bank`): one channel whose element set is the union of its members'.
* **Where an image votes**: within each group of coupled layers (a plain conv is its own
  group), among the group's active units. Activation sums of different layers live on
  different scales (map sizes, BN gains), so one global vote would prune whole layers in
  turn; a vote within the group asks only which of its units an image uses least.
* **k**: ``ceil(VOTE_FRACTION * m)`` votes per image in a group of m active units
  (:data:`VOTE_FRACTION` = 0.1, so at least one). Units tied at the k-th lowest activation
  (dead units, all exactly 0) share the remaining votes equally: no index order decides.
* **Score**: ``-votes_u / N``, minus the share of images that voted for u; every image
  casts the same number of votes per group, so shares compare across groups. Lower is
  pruned first; global ties are broken by the trajectory's seeded permutation.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from taxonomy.bank import UnitMap
from taxonomy.components import Input
from taxonomy.statistics import Needs

__all__ = ["VOTE_FRACTION", "votes_of_lowest", "activation_votes", "voting_scores"]

VOTE_FRACTION = 0.1
"""Share of a group's active units each image votes for (rounded up: at least one)."""

_VALUES = Needs.from_names({Input.ACTIVATION: {"value"}})


def votes_of_lowest(acts: Tensor, k: int) -> Tensor:
    """``[N, m] -> [N, m]``: each row's k votes for its k lowest entries; entries tied at the
    k-th lowest value share the votes left after the strictly lower ones."""
    kth = acts.sort(dim=1).values[:, k - 1 : k]
    below, tied = acts < kth, acts == kth
    left = k - below.sum(1, keepdim=True)
    share = left.to(torch.float64) / tied.sum(1, keepdim=True)
    return below.to(torch.float64) + tied.to(torch.float64) * share


def activation_votes(acts: Tensor, group: Tensor, active: Tensor, fraction: float = VOTE_FRACTION) -> Tensor:
    """``[U]`` votes each unit gets from the ``N`` images of ``acts [N, U]``, voting within
    each group (``group [U]``) among its ``active`` units; 0 for inactive units."""
    votes = torch.zeros(acts.shape[1], dtype=torch.float64)
    for g in torch.unique(group[active]).tolist():
        idx = torch.nonzero(active & (group == g)).flatten()
        k = max(1, math.ceil(fraction * len(idx)))
        votes[idx] = votes_of_lowest(acts[:, idx], k).sum(0)
    return votes


def voting_scores(ctx) -> Tensor:  # noqa: ANN001 - a study.unit_scores.ScoringContext
    """``[U]`` scores of the live network: minus each unit's share of the images' votes."""
    masked = ctx.ws.masked
    groups = masked.groups
    layers = ctx.ws.collector.collect(ctx.batches, _VALUES)
    sums = torch.cat([layer.stats_for(Input.ACTIVATION).value.double().sum(-1) for layer in layers], dim=1)
    acts = UnitMap(groups.members, groups.n_units).add(sums.cpu())
    votes = activation_votes(acts, groups.unit_group, masked.active.cpu())
    return -votes / acts.shape[0]
