"""Text views of the signal space for the CLI: filtering, tables, CSV/JSON, explain."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping

from taxonomy.aliases import ALIASES, METHODS
from taxonomy.catalogue import Cell, catalogue, describe
from taxonomy.components import AXES, Reference
from taxonomy.equivalence import UNCOUPLED, Context, distinct, members
from taxonomy.errors import invalid
from taxonomy.spec import SignalSpec

__all__ = ["filter_cells", "render", "summary_line", "explain", "methods_text", "UNIT_SCORE"]

UNIT_SCORE = {
    "pooled": "a coupled unit (channels pruned together) is scored as one channel whose element set "
    "is the union of its members' elements: per-example sums add over the members before "
    "abs_sum/sqr_sum; l0/l0_active count the unit's elements, weights_removed and macs_removed "
    "its weights and multiply-adds; "
    "l1/l2 divide by the sum of its member layers' norms",
    "sum": "a coupled unit's score is the sum of its member channels' scaled scores",
    "mean": "a coupled unit's score is the mean of its member channels' scaled scores",
    "max": "a coupled unit's score is the largest of its member channels' scaled scores",
}
"""How a unit's score is formed under each aggregation (``explain`` and the report say it)."""


def _parse_filter(axis: str, value: str | Iterable[str] | None) -> set[str] | None:
    if value is None:
        return None
    items = value.split(",") if isinstance(value, str) else list(value)
    valid = [m.id for m in AXES[axis]]
    chosen = set()
    for item in (x.strip().lower() for x in items if x.strip()):
        if item not in valid:
            raise invalid(axis, item, valid)
        chosen.add(item)
    return chosen


def filter_cells(
    filters: Mapping[str, str | Iterable[str] | None],
    distinct: bool = False,
    aliases_only: bool = False,
    context: Context = UNCOUPLED,
) -> list[Cell]:
    """Cells matching every component filter (each a set of ids; None = any); their classes
    are those of ``context``."""
    wanted = {axis: _parse_filter(axis, filters.get(axis)) for axis in AXES}
    out = []
    for cell in catalogue(context):
        parts = dict(zip(AXES, (c.id for c in cell.spec.components), strict=True))
        if any(w is not None and parts[a] not in w for a, w in wanted.items()):
            continue
        if distinct and not cell.is_representative:
            continue
        if aliases_only and not cell.aliases:
            continue
        out.append(cell)
    return out


def _table(cells: list[Cell]) -> str:
    rows = [("id", "class", "n", "aliases", "formula")]
    for c in cells:
        cls = "" if c.is_representative else f"= {c.class_id}"
        rows.append((c.spec.id, cls, str(c.class_size), ",".join(c.aliases), c.text))
    widths = [max(len(r[k]) for r in rows) for k in range(4)]
    lines = ["  ".join(r[k].ljust(widths[k]) for k in range(4)) + "  " + r[4] for r in rows]
    return "\n".join(line.rstrip() for line in lines) + "\n"


def render(cells: list[Cell], fmt: str) -> str:
    """Cells as ``table``, ``csv`` or ``json`` text."""
    if fmt == "table":
        return _table(cells)
    records = [c.as_dict() for c in cells]
    if fmt == "json":
        return json.dumps(records, indent=1) + "\n"
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(records[0]) if records else ["id"])
        writer.writeheader()
        writer.writerows(records)
        return buf.getvalue()
    raise invalid("format", fmt, ["table", "csv", "json"])


def summary_line(cells: list[Cell], context: Context = UNCOUPLED) -> str:
    """The closing count line."""
    classes = len({c.class_id for c in cells})
    return (
        f"{len(cells)} cells shown in {classes} equivalence classes; the space has "
        f"{len(catalogue())} cells in {len(distinct(context))} distinct classes for {context.describe()}."
    )


def explain(spec: SignalSpec, context: Context = UNCOUPLED) -> str:
    """A human description of one signal (its class in ``context``)."""
    cell = describe(spec, context)
    if spec.is_reference:
        return (
            f"{spec.id}: reference signal outside the taxonomy\n"
            f"  meaning: {spec.reference.meaning}\n  formula: {cell.text}"
        )
    lines = [f"{spec.id}"]
    for axis, comp in zip(AXES, spec.components, strict=True):
        lines.append(f"  {axis:<10} {comp.id:<16} {comp.meaning}  [{comp.text}]")
    lines.append(f"  formula    {cell.text}")
    lines.append(f"  latex      {cell.latex}")
    for name in cell.aliases:
        lines.append(f"  literature {name}: {ALIASES[name].citation}")
    others = [m.id for m in members(spec, context) if m != spec]
    others = [f"this one and {len(others)} other(s): " + ", ".join(others)] if others else []
    rules = f" (rules {', '.join(cell.rules)})" if cell.rules else ""
    lines.append(
        f"  class      {cell.class_id}{rules}, {cell.class_size} member(s)"
        + (" - " + others[0] if others else "")
        + f" (classes for {context.describe()})"
    )
    lines.append(f"  unit       {UNIT_SCORE[context.aggregation]}")
    for cond in cell.conditional:
        lines.append(f"  equals     {cond.other.id} (rule {cond.rule}) at {cond.condition}")
    return "\n".join(lines)


def methods_text() -> str:
    """The references outside the taxonomy and the literature methods that are not one cell
    (protocols, options, analyses), with their papers: what ``prunetax signals --aliases`` adds."""
    refs = [(r.id, r.meaning) for r in Reference]
    methods = [(m.name, f"{m.citation}: {m.how}") for m in METHODS.values()]
    width = max(len(name) for name, _ in refs + methods)
    lines = ["references (signals outside the taxonomy; any protocol runs them):"]
    lines += [f"  {name:<{width}}  {text}" for name, text in refs]
    lines.append("methods that are not one cell (protocols, options, analyses):")
    lines += [f"  {name:<{width}}  {text}" for name, text in methods]
    return "\n".join(lines) + "\n"
