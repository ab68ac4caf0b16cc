"""Combinatorial UCB over channels (Chen, Wang & Yuan, ICML 2013; Spasov & Liò, BMVC 2019).

Every unit (a channel, or a coupled group of channels pruned together) is an arm; the
units of one group (one conv and the convs coupled to it) form one *layer* of arms, and
each round (training step) the layer executes its ``k`` arms with the highest index

    index_i(t) = mu_i + c * sqrt(ln t / T_i)        (+inf while T_i = 0)

where ``t`` is the round (1, 2, ...), ``T_i`` how often arm ``i`` was executed before this
round and ``mu_i`` the mean of its rewards (rewards lie in [0, 1]). ``c = sqrt(3/2)`` is
Chen et al.'s CUCB, ``sqrt(3 ln t / (2 T_i))``. Only executed arms are observed
(semi-bandit feedback): ``T_i += 1`` and ``mu_i += (r_i - mu_i) / T_i``. Equal indices
(every unplayed arm at the start) are broken by a seeded permutation, never by index.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from taxonomy.errors import PrunetaxError

__all__ = ["CUCB", "arms_per_layer", "DEFAULT_EXPLORATION"]

DEFAULT_EXPLORATION = math.sqrt(1.5)
"""Chen et al.'s CUCB confidence radius sqrt(3 ln t / (2 T_i)) as ``c sqrt(ln t / T_i)``."""


def arms_per_layer(sizes: list[int], keep: float) -> list[int]:
    """Arms executed per layer: ``round(keep * size)``, at least 1, at most ``size``."""
    if not 0 < keep <= 1:
        raise PrunetaxError(f"`keep` must be in (0, 1]; got {keep!r}.")
    return [min(n, max(1, round(keep * n))) for n in sizes]


class CUCB:
    """Per-layer top-k CUCB over ``len(layer)`` arms (``layer[i]`` = arm i's layer).

    Parameters
    ----------
    layer
        ``[U]`` layer (group) index of every arm, layers numbered 0..L-1.
    k
        Arms executed per layer and round.
    exploration
        The constant ``c`` of the confidence radius.
    ties
        A permutation of the arms: among equal indices, earlier in ``ties`` goes first.
    """

    def __init__(self, layer: Tensor, k: list[int], exploration: float, ties: Tensor) -> None:
        self.layer = layer.long()
        n_layers = int(self.layer.max()) + 1 if self.layer.numel() else 0
        if len(k) != n_layers:
            raise PrunetaxError(f"CUCB needs one k per layer: {n_layers} layers, got {len(k)}.")
        if exploration < 0:
            raise PrunetaxError(f"`exploration` must be >= 0; got {exploration!r}.")
        self.k, self.c = list(k), float(exploration)
        self.counts = torch.zeros(self.layer.numel(), dtype=torch.long)  # T_i
        self.means = torch.zeros(self.layer.numel(), dtype=torch.float64)  # mu_i
        self.rank = torch.empty_like(ties)
        self.rank[ties] = torch.arange(ties.numel())  # position of each arm in the tie order

    def index(self, t: int) -> Tensor:
        """``[U]`` upper confidence bounds at round ``t`` (+inf for arms never executed)."""
        played = self.counts > 0
        bonus = torch.full_like(self.means, math.inf)
        n = self.counts[played].double()
        bonus[played] = self.c * torch.sqrt(math.log(t) / n)
        return torch.where(played, self.means + bonus, bonus)

    def select(self, t: int) -> Tensor:
        """``[U]`` bool: the ``k`` arms of each layer with the highest index at round ``t``."""
        idx = self.index(t)
        # sort by layer, then index descending, then tie order: a stable sort per key, last key first
        order = torch.sort(self.rank, stable=True).indices
        order = order[torch.sort(-idx[order], stable=True).indices]
        order = order[torch.sort(self.layer[order], stable=True).indices]
        chosen = torch.zeros(self.layer.numel(), dtype=torch.bool)
        start = 0
        for size, k in zip(torch.bincount(self.layer, minlength=len(self.k)).tolist(), self.k, strict=True):
            chosen[order[start : start + k]] = True
            start += size
        return chosen

    def update(self, executed: Tensor, rewards: Tensor) -> None:
        """Observe ``rewards`` (``[U]``, read only where ``executed``) of the executed arms."""
        r = rewards.double()
        if bool(((r[executed] < 0) | (r[executed] > 1)).any()):
            raise PrunetaxError("CUCB rewards must lie in [0, 1].")
        self.counts[executed] += 1
        n = self.counts[executed].double()
        self.means[executed] += (r[executed] - self.means[executed]) / n

    def prune_order_scores(self) -> Tensor:
        """``T_i + mu_i / 2``: lower = pruned first (least executed; then lowest mean reward)."""
        return self.counts.double() + self.means / 2
