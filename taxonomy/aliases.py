"""Literature signals addressable by name (SPEC §2.5 table), with their sources, and the literature
methods that are not one signal (a protocol, an option, an analysis) with how prunetax runs them."""

from __future__ import annotations

from dataclasses import dataclass

from taxonomy.components import Input as I
from taxonomy.components import Pointwise as P
from taxonomy.components import Reduction as R
from taxonomy.components import Scaling as S
from taxonomy.spec import SignalSpec

__all__ = ["Alias", "ALIASES", "aliases_of", "Method", "METHODS"]


@dataclass(frozen=True)
class Alias:
    """A named literature signal."""

    name: str
    spec: SignalSpec
    citation: str


def _alias(name: str, citation: str, i: I, p: P, r: R, s: S) -> tuple[str, Alias]:
    return name, Alias(name, SignalSpec(i, p, r, s), citation)


ALIASES: dict[str, Alias] = dict(
    [
        _alias("l1_filter", "Li et al. 2017, filter L1 norm", I.WEIGHT, P.VALUE, R.L1, S.NONE),
        _alias("l2_filter", "filter (squared) L2 norm", I.WEIGHT, P.VALUE, R.L2, S.NONE),
        _alias("min_weight", "Molchanov et al. 2017, minimum weight", I.WEIGHT, P.VALUE, R.L2, S.L0),
        _alias(
            "mean_activation", "Molchanov et al. 2017, mean activation", I.ACTIVATION, P.VALUE, R.SUM, S.L0
        ),
        _alias(
            "apoz",
            "Hu et al. 2016, average percentage of zeros (prune most-zero)",
            I.ACTIVATION,
            P.APOZ,
            R.SUM,
            S.L0,
        ),
        _alias(
            "taylor_fo", "Molchanov et al. 2017, first-order Taylor", I.ACTIVATION, P.TAYLOR, R.ABS_SUM, S.L2
        ),
        _alias("fisher", "Theis et al. 2018, Fisher pruning", I.ACTIVATION, P.TAYLOR, R.SQR_SUM, S.NONE),
        _alias(
            "obd", "LeCun et al. 1990, optimal brain damage (summed)", I.WEIGHT, P.HESSIAN_LM, R.SUM, S.NONE
        ),
        _alias(
            "best_weight",
            "Persand et al. 2019, best weight-based signal",
            I.WEIGHT,
            P.VALUE,
            R.L2,
            S.WEIGHTS_REMOVED,
        ),
        _alias(
            "best_activation",
            "Persand et al. 2019, best activation-based signal",
            I.ACTIVATION,
            P.VALUE,
            R.L2,
            S.WEIGHTS_REMOVED,
        ),
        _alias(
            "best_gradient",
            "Persand et al. 2019, best gradient-based signal",
            I.ACTIVATION,
            P.TAYLOR2_GN,
            R.ABS_SUM,
            S.WEIGHTS_REMOVED,
        ),
        _alias(
            "variance",
            "Polyak & Wolf 2015 / Evci et al. 2018, activation variance over the inputs "
            "(low = a constant unit)",
            I.ACTIVATION,
            P.CENTERED,
            R.L2,
            S.L0,
        ),
    ]
)
"""Alias name -> :class:`Alias`; ``apoz`` the alias shadows nothing (ids have 4 parts)."""


@dataclass(frozen=True)
class Method:
    """A literature method that is not one cell of the signal space: how prunetax runs it."""

    name: str
    citation: str
    how: str


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method(
            "fisher_cost",
            "Theis et al. 2018, Fisher pruning with a computational cost",
            "protocol `fisher_cost` with signal `fisher`: prune argmin fisher - beta * dMACs / MACs_0, "
            "dMACs >= 0 the MACs the unit's removal saves (recomputed each step), MACs_0 the unpruned "
            "network's: a unit that saves more computation goes sooner (`beta` a protocol parameter)",
        ),
        Method(
            "flops_scaled",
            "Molchanov et al. 2017, FLOP-aware criteria",
            "scaling `macs_removed`: any signal divided by the multiply-adds its unit removes",
        ),
        Method(
            "mean_replacement",
            "Evci et al. 2018, mean replacement",
            "protocol option `mean_replacement = true`: a removed channel's mean contribution is "
            "folded into each consumer's bias (or the following BN's running mean)",
        ),
        Method(
            "dead_units",
            "Evci et al. 2018, dead and constant units",
            "rank-quality jobs write the `activity` table: per channel, the share of eval inputs on "
            "which it is 0 and its activation variance; the report counts them per layer",
        ),
        Method(
            "best_of_n",
            "Anwar et al. 2017, best of N random masks",
            "protocol `best_of_n` with signal `random`: at each target, N random masks (`n_masks`) are "
            "evaluated on the eval batches and the lowest eval loss is kept (one-shot)",
        ),
        Method(
            "activation_voting",
            "Anwar et al. 2017, activation-sum voting",
            "reference signal `activation_voting` (any protocol): each eval image votes for the 10 % of "
            "units with the lowest activation sum in each group of coupled layers; most votes go first",
        ),
        Method(
            "myopic",
            "Persand et al. 2020, myopic oracle",
            "protocol `myopic` with any signal: the k lowest units of the signal (and of `candidates_from`) "
            "are measured like the oracle and the smallest loss change is pruned",
        ),
    )
}
"""Methods beyond the signal grammar (protocols, options, analyses), by name, with sources."""


def aliases_of(spec: SignalSpec) -> list[str]:
    """Literature names whose spec is exactly ``spec``."""
    return [a.name for a in ALIASES.values() if a.spec == spec]
