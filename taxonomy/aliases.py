"""Literature signals addressable by name (SPEC §2.5 table), with their sources."""

from __future__ import annotations

from dataclasses import dataclass

from taxonomy.components import Input as I
from taxonomy.components import Pointwise as P
from taxonomy.components import Reduction as R
from taxonomy.components import Scaling as S
from taxonomy.spec import SignalSpec

__all__ = ["Alias", "ALIASES", "aliases_of"]


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
    ]
)
"""Alias name -> :class:`Alias`; ``apoz`` the alias shadows nothing (ids have 4 parts)."""


def aliases_of(spec: SignalSpec) -> list[str]:
    """Literature names whose spec is exactly ``spec``."""
    return [a.name for a in ALIASES.values() if a.spec == spec]
