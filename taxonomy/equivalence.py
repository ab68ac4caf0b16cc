"""Which cells of the taxonomy are provably the same signal (SPEC §2.5).

An unconditional rule maps a cell to a simpler cell that ranks every channel the same
way on any statistics (scores equal up to a positive factor, or a strictly increasing
function of each other); applying the rules until nothing changes gives the class
representative. Conditional rules hold only for some networks or tap points: they are
reported, never merged.

Unconditional rules
-------------------
1. ``hessian_gn`` = (x*g)^2/2 >= 0, so its ``sum``, ``l1`` and ``abs_sum`` coincide and
   equal 1/2 x ``taylor``-``l2`` (same input and scaling).
2. ``apoz`` is 0/1, so its ``l1``, ``l2`` and ``abs_sum`` equal its ``sum``.
4a. ``hessian_lm`` = x^2*h_LM/2 >= 0 because the LM recursion only multiplies and adds
   non-negative numbers (p(1-p), squared weights, 0/1 masks, (gamma/sigma)^2), so its
   ``l1`` and ``abs_sum`` equal its ``sum``.
4b. For the ``activation`` input, the element set is the H*W map: it has no input
   channels, so ``l0_active`` equals ``l0``.
4c. Weight ``value`` and ``apoz`` signals are data-free (one "example"): with no
   scaling, ``sqr_sum`` = ``abs_sum``^2 (value) or ``sum``^2 (apoz) per channel, a strictly
   increasing function, so the ranking is the same. Likewise ``sqr_sum``-``l1`` =
   (``abs_sum``-``l2``)^2 (value) or (``sum``-``l2``)^2 (apoz): with u >= 0,
   u_i^2 / sum_j u_j^2 = (u_i / sqrt(sum_j u_j^2))^2, the norms over the same active channels.
4d. Weight ``centered`` = x - E_n[x] is identically 0: weights are one data-free example, so
   the mean over examples is the element itself. Every weight-``centered`` cell scores 0 on
   every channel, whatever the reduction and scaling (0 / D = 0; D = 0 reads as 1), so all
   rank alike (every unit ties; the tie permutation decides): one class.
4e. ``centered`` has mean 0 over the examples, so its ``sum`` reduction is 0 for any input:
   mean_n sum_e (x_ne - E_n[x_e]) = sum_e (E_n[x_e] - E_n[x_e]) = 0, under every scaling.
   These cells join the class of 4d. Computed directly, an activation-``centered``-``sum``
   cell gives the rounding noise of that 0 (which would rank units at random): its class
   representative (``weight-centered-sum-none``) gives the exact 0.

Rules hold per channel; a pruning decision ranks *units*. A rule may merge cells only where
it holds at the unit level, so the classes depend on a :class:`Context`: whether the
network has coupled units (residual adds, concatenations, grouped convs) and how a unit's
score is formed from its members' (``aggregation``). Rules 1, 2, 4a and 4b relate cells by
a positive factor or an equality per channel and per example, which survives every
aggregation; so do 4d and 4e (a unit of zero-score channels scores 0 under every
aggregation, its pooled per-example sums included). Rule 4c is a monotone map, not a
factor: with coupled units it holds under ``max`` aggregation (the max of squares is the
square of the max), for the unscaled pair under ``pooled`` (the square of the unit's own
sum), and not otherwise (a sum of squares is not the square of a sum; the pooled ``l1``
denominator, a sum of member layer norms, is not the square of the ``l2`` one's). There
the 4c cells are classes of their own.

Conditional rules (reported by :func:`conditional_equivalents`)
---------------------------------------------------------------
3. weight-``taylor`` with ``sum``/``abs_sum``/``sqr_sum`` equals activation-``taylor`` with the
   same reduction under every scaling but the ``l0`` family, at the ``conv`` tap point, or
   at ``output`` where a ReLU (or nothing) follows the conv directly with no BN.
5. At the ``output`` tap after a ReLU, activation ``value`` is >= 0, so its ``l1`` and
   ``abs_sum`` equal its ``sum``.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from functools import cache

from taxonomy.components import Input as I
from taxonomy.components import Pointwise as P
from taxonomy.components import Reduction as R
from taxonomy.components import Scaling as S
from taxonomy.options import space_version
from taxonomy.spec import SignalSpec, all_cells

__all__ = [
    "Context",
    "UNCOUPLED",
    "AGGREGATIONS",
    "Conditional",
    "representative",
    "classes",
    "distinct",
    "members",
    "rule_of",
    "conditional_equivalents",
    "MONOTONE_RULES",
    "ZERO_RULES",
]

MONOTONE_RULES = frozenset({"4c"})
"""Rules whose members are related by a strictly increasing map, not a positive factor."""

ZERO_RULES = frozenset({"4d", "4e"})
"""Rules whose members score 0 on every channel (the class of ``weight-centered-sum-none``)."""

_ZERO = SignalSpec(I.WEIGHT, P.CENTERED, R.SUM, S.NONE)

AGGREGATIONS = ("pooled", "sum", "mean", "max")
"""How a coupled unit's score is formed: ``pooled`` (the unit as one channel of the union
of its members' elements; the default), or the ``sum``/``mean``/``max`` of its member
channels' scaled scores."""


@dataclass(frozen=True)
class Context:
    """What decides which rules hold at the unit level: coupled units, and their aggregation."""

    coupled: bool = False
    aggregation: str = "pooled"

    def __post_init__(self) -> None:
        if self.aggregation not in AGGREGATIONS:
            from taxonomy.errors import invalid

            raise invalid("aggregation", self.aggregation, AGGREGATIONS)

    def allows_4c(self, scaling: S) -> bool:
        """Rule 4c at unit level: the per-channel map commutes with the unit's aggregation."""
        if not self.coupled or self.aggregation == "max":  # max of squares = square of the max
            return True
        return scaling is S.NONE and self.aggregation == "pooled"  # (sum over the union)^2

    def describe(self) -> str:
        if not self.coupled:
            return "a network without coupled units"
        return f"a network with coupled units, {self.aggregation} aggregation"


UNCOUPLED = Context()
"""A network whose every unit is one channel: every rule holds (the paper's plain networks)."""


def _rule_step(spec: SignalSpec, context: Context = UNCOUPLED) -> tuple[str, SignalSpec] | None:
    """One unconditional rewrite of ``spec`` towards its representative, or None."""
    i, p, r, s = spec.components
    if p is P.CENTERED and spec != _ZERO and (i is I.WEIGHT or r is R.SUM):
        return ("4d" if i is I.WEIGHT else "4e"), _ZERO
    if i is I.ACTIVATION and s is S.L0_ACTIVE:
        return "4b", spec.replace(scaling=S.L0)
    if p is P.HESSIAN_GN and r in (R.SUM, R.L1, R.ABS_SUM):
        return "1", spec.replace(pointwise=P.TAYLOR, reduction=R.L2)
    if p is P.APOZ and r in (R.L1, R.L2, R.ABS_SUM):
        return "2", spec.replace(reduction=R.SUM)
    if p is P.HESSIAN_LM and r in (R.L1, R.ABS_SUM):
        return "4a", spec.replace(reduction=R.SUM)
    if (
        i is I.WEIGHT
        and s in (S.NONE, S.L1)
        and r is R.SQR_SUM
        and p in (P.VALUE, P.APOZ)
        and context.allows_4c(s)
    ):
        return "4c", spec.replace(
            reduction=R.ABS_SUM if p is P.VALUE else R.SUM, scaling=S.NONE if s is S.NONE else S.L2
        )
    return None


def rule_of(spec: SignalSpec, context: Context = UNCOUPLED) -> list[str]:
    """The rules applied, in order, to reach the representative of ``spec``."""
    rules = []
    while (step := _rule_step(spec, context)) is not None:
        rules.append(step[0])
        spec = step[1]
    return rules


def representative(spec: SignalSpec, context: Context = UNCOUPLED) -> SignalSpec:
    """The class representative of ``spec`` (itself for references) in ``context``."""
    if spec.is_reference:
        return spec
    while (step := _rule_step(spec, context)) is not None:
        spec = step[1]
    return spec


def classes(context: Context = UNCOUPLED) -> dict[SignalSpec, tuple[SignalSpec, ...]]:
    """Representative -> members (in cell order) over every cell of the space, in ``context``."""
    return _classes(space_version(), context)


@cache
def _classes(version: int, context: Context) -> dict[SignalSpec, tuple[SignalSpec, ...]]:
    del version  # the cache key: registering an option rebuilds the classes
    out: dict[SignalSpec, list[SignalSpec]] = defaultdict(list)
    for cell in all_cells():
        out[representative(cell, context)].append(cell)
    return {rep: tuple(m) for rep, m in out.items()}


def distinct(context: Context = UNCOUPLED) -> list[SignalSpec]:
    """One representative per equivalence class, in cell order, in ``context``."""
    return list(classes(context))


def members(spec: SignalSpec, context: Context = UNCOUPLED) -> tuple[SignalSpec, ...]:
    """Every cell in the class of ``spec`` in ``context``."""
    return classes(context)[representative(spec, context)] if not spec.is_reference else (spec,)


@dataclass(frozen=True)
class Conditional:
    """A conditional equivalence: ``other`` equals the cell when ``condition`` holds."""

    rule: str
    other: SignalSpec
    condition: str


_TAP_RULE = "the `conv` tap point, or `output` where a ReLU or nothing follows the conv with no BN in between"


def conditional_equivalents(spec: SignalSpec) -> list[Conditional]:
    """Cells equal to ``spec`` under a condition on the network or tap point."""
    if spec.is_reference:
        return []
    i, p, r, s = spec.components
    out = []
    if p is P.TAYLOR and r in (R.SUM, R.ABS_SUM, R.SQR_SUM) and s not in (S.L0, S.L0_ACTIVE):
        other = spec.replace(input=I.ACTIVATION if i is I.WEIGHT else I.WEIGHT)
        out.append(Conditional("3", other, _TAP_RULE))
    if i is I.ACTIVATION and p is P.VALUE and r in (R.SUM, R.L1, R.ABS_SUM):
        for red in (R.SUM, R.L1, R.ABS_SUM):
            if red is not r:
                out.append(
                    Conditional(
                        "5", spec.replace(reduction=red), "the `output` tap point after a ReLU (values >= 0)"
                    )
                )
    return out
