"""Signal selectors of a sweep spec: ids, aliases, groups and component filters.

A selector is a string - an id, a literature alias, ``random``, ``oracle``, or a group
(``all`` = the 480 cells, ``distinct`` = one per equivalence class, ``aliases`` = the
literature signals, ``paper_best`` = the paper's three best) - or a table of component
filters (``{ input = "activation", reduction = ["abs_sum", "l1"], distinct = true }``).
Members of one equivalence class are run once (the first selected stands for the class).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from taxonomy.aliases import ALIASES
from taxonomy.equivalence import UNCOUPLED, Context, distinct, representative
from taxonomy.errors import PrunetaxError
from taxonomy.listing import filter_cells
from taxonomy.spec import SignalSpec, all_cells, parse

__all__ = ["GROUPS", "select_signals"]

PAPER_BEST = ("best_weight", "best_activation", "best_gradient")

GROUPS = {
    "all": lambda context: all_cells(),
    "distinct": lambda context: distinct(context),
    "aliases": lambda context: [a.spec for a in ALIASES.values()],
    "paper_best": lambda context: [parse(n) for n in PAPER_BEST],
}
"""Named groups of signals usable in a spec (``distinct`` depends on the network's context)."""

_FILTER_KEYS = {"input", "pointwise", "reduction", "scaling", "distinct"}


def _from_filter(table: Mapping[str, object], context: Context) -> list[SignalSpec]:
    unknown = set(table) - _FILTER_KEYS
    if unknown:
        raise PrunetaxError(
            f"unknown signal filter key(s) {', '.join(sorted(unknown))}; valid: "
            f"{', '.join(sorted(_FILTER_KEYS))}."
        )
    filters = {k: v for k, v in table.items() if k != "distinct"}
    return [
        c.spec for c in filter_cells(filters, distinct=bool(table.get("distinct", False)), context=context)
    ]


def select_signals(
    items: Iterable[str | Mapping[str, object]], context: Context = UNCOUPLED
) -> list[SignalSpec]:
    """Resolve selectors to signals, one per equivalence class of ``context`` (the network's
    coupling and aggregation decide which rules hold), in first-seen order."""
    out: dict[str, SignalSpec] = {}
    for item in items:
        if isinstance(item, Mapping):
            specs = _from_filter(item, context)
        elif isinstance(item, str) and item.strip().lower() in GROUPS:
            specs = GROUPS[item.strip().lower()](context)
        elif isinstance(item, str):
            specs = [parse(item)]
        else:
            raise PrunetaxError(f"a signal selector must be a string or a table of filters; got {item!r}.")
        for spec in specs:
            out.setdefault(representative(spec, context).id, spec)
    if not out:
        raise PrunetaxError("the signal selectors select no signal.")
    return list(out.values())
