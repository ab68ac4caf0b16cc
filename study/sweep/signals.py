"""Signal selectors of a sweep spec: ids, aliases, groups and component filters.

A selector is a string - an id, a literature alias, ``random``, ``oracle``, or a group
(``all`` = every cell, ``distinct`` = one per equivalence class, ``aliases`` = the
literature signals, ``paper_best`` = the paper's three best) - or a table of component
filters (``{ input = "activation", reduction = ["abs_sum", "l1"], distinct = true }``).
Members of one equivalence class are run once (the first selected stands for the class);
naming one cell twice (``l1_filter`` and ``weight-value-l1-none``) is an error, since it
is a slip, not a choice. Groups may overlap freely.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from itertools import combinations
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from taxonomy.aliases import ALIASES
from taxonomy.components import AXES
from taxonomy.equivalence import UNCOUPLED, Context, distinct, representative
from taxonomy.errors import PrunetaxError
from taxonomy.listing import filter_cells
from taxonomy.spec import SignalSpec, all_cells, parse

__all__ = ["GROUPS", "FILTER_KEYS", "select_signals", "SignalFilter", "check_unique", "parse_signal"]

PAPER_BEST = ("best_weight", "best_activation", "best_gradient")

GROUPS = {
    "all": lambda context: all_cells(),
    "distinct": lambda context: distinct(context),
    "aliases": lambda context: [a.spec for a in ALIASES.values()],
    "paper_best": lambda context: [parse(n) for n in PAPER_BEST],
}
"""Named groups of signals usable in a spec (``distinct`` depends on the network's context)."""

_Ids = Annotated[
    list[Annotated[str, Field(min_length=1)]],
    BeforeValidator(lambda v: [v] if isinstance(v, str) else v),
    Field(min_length=1),
]


class SignalFilter(BaseModel):
    """A filter table: the cells whose components are among the listed ids (any, where unset)."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    input: _Ids | None = Field(None, description="input ids (weight, activation)")
    pointwise: _Ids | None = Field(None, description="pointwise measure ids")
    reduction: _Ids | None = Field(None, description="reduction ids")
    scaling: _Ids | None = Field(None, description="scaling ids")
    distinct: bool = Field(False, description="keep one cell per equivalence class of the network")


FILTER_KEYS = tuple(SignalFilter.model_fields)


def _from_filter(table: Mapping[str, object], context: Context) -> list[SignalSpec]:
    try:
        f = SignalFilter.model_validate(dict(table))
    except ValidationError as err:
        e = err.errors()[0]
        name = str(e["loc"][0]) if e["loc"] else ""
        if e["type"] == "extra_forbidden":
            raise PrunetaxError(
                f"signal filter table {dict(table)!r}: unknown key `{name}`; valid: {', '.join(FILTER_KEYS)}."
            ) from None
        want = "true or false" if name == "distinct" else "an id or a non-empty list of ids"
        raise PrunetaxError(
            f"signal filter table {dict(table)!r}: `{name}` must be {want}; got {table.get(name)!r}."
        ) from None
    filters = {k: getattr(f, k) for k in FILTER_KEYS if k != "distinct"}
    cells = filter_cells(filters, distinct=f.distinct, context=context)
    if not cells:
        raise PrunetaxError(f"signal filter table {dict(table)!r} selects no signal; widen it or drop it.")
    return [c.spec for c in cells]


def _missing(text: str) -> list[list[str]]:
    """For an id with fewer than four parts, each reading of which axes its parts fill: the
    axes left out (``weight-value-l1`` lacks its scaling, or its reduction)."""
    parts = [p.strip().lower() for p in text.split("-")]
    axes = list(AXES)
    if not 1 < len(parts) < len(axes):
        return []
    valid = {axis: {m.id for m in AXES[axis]} for axis in axes}
    readings = []
    for chosen in combinations(axes, len(parts)):
        if all(part in valid[axis] for part, axis in zip(parts, chosen, strict=True)):
            readings.append([a for a in axes if a not in chosen])
    return readings


def parse_signal(name: str) -> SignalSpec:
    """:func:`taxonomy.spec.parse`, and for a partial id, which part is missing."""
    try:
        return parse(name)
    except PrunetaxError as err:
        readings = _missing(str(name))
        if not readings:
            raise
        lacks = " or ".join("its " + " and ".join(r) for r in readings)
        first = readings[0][0]
        options = ", ".join(m.id for m in AXES[first])
        raise PrunetaxError(
            f"signal {name!r} is a partial id: it lacks {lacks}. An id has four parts, "
            f"input-pointwise-reduction-scaling; the {first} is one of {options}.",
            key=err.key,
        ) from None


def check_unique(named: Iterable[str], what: str = "signals") -> list[SignalSpec]:
    """Parse signal names; two that name the same cell (an alias and its id) are an error."""
    seen: dict[SignalSpec, str] = {}
    for name in named:
        spec = parse_signal(name)
        if spec in seen:
            raise PrunetaxError(
                f"`{what}` names {spec.id} twice (as {seen[spec]!r} and {name!r}); list it once.", key=what
            )
        seen[spec] = name
    return list(seen)


def select_signals(
    items: Iterable[str | Mapping[str, object]], context: Context = UNCOUPLED
) -> list[SignalSpec]:
    """Resolve selectors to signals, one per equivalence class of ``context`` (the network's
    coupling and aggregation decide which rules hold), in first-seen order."""
    out: dict[str, SignalSpec] = {}
    explicit = []
    for item in items:
        if isinstance(item, Mapping):
            specs = _from_filter(item, context)
        elif isinstance(item, str) and item.strip().lower() in GROUPS:
            specs = GROUPS[item.strip().lower()](context)
        elif isinstance(item, str):
            explicit.append(item)
            specs = [parse_signal(item)]
        else:
            raise PrunetaxError(
                f"a signal selector must be a string or a table of filters; got {item!r}.", key="signals"
            )
        for spec in specs:
            out.setdefault(representative(spec, context).id, spec)
    check_unique(explicit)
    if not out:
        raise PrunetaxError("the signal selectors select no signal.", key="signals")
    return list(out.values())
