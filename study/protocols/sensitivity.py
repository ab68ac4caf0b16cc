"""``sensitivity``: the paper's greedy loop with no retraining (SPEC §3)."""

from __future__ import annotations

from pydantic.dataclasses import dataclass

from study.params import STRICT
from study.protocols.base import register_protocol
from study.protocols.greedy import Greedy

__all__ = ["Sensitivity"]


@register_protocol
@dataclass(frozen=True, config=STRICT)
class Sensitivity(Greedy):
    name = "sensitivity"
    summary = "greedy global pruning, no retraining (the paper's sensitivity analysis)"
