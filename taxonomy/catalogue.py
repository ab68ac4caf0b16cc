"""The enumerated signal space: every cell with its class, aliases and formula."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from taxonomy.aliases import aliases_of
from taxonomy.components import Scaling
from taxonomy.equivalence import (
    UNCOUPLED,
    Conditional,
    Context,
    conditional_equivalents,
    members,
    representative,
    rule_of,
)
from taxonomy.options import space_version
from taxonomy.spec import SignalSpec, all_cells

__all__ = ["Cell", "catalogue", "describe", "formula_text", "formula_latex"]


@dataclass(frozen=True)
class Cell:
    """One signal of the space, as the CLI and the report show it."""

    spec: SignalSpec
    class_id: str
    class_size: int
    rules: tuple[str, ...]
    aliases: tuple[str, ...]
    text: str
    latex: str
    conditional: tuple[Conditional, ...]

    @property
    def is_representative(self) -> bool:
        return self.spec.id == self.class_id

    def as_dict(self) -> dict[str, object]:
        """Flat, JSON-ready form (used by ``prunetax signals --format json|csv``)."""
        i, p, r, s = self.spec.components
        return {
            "id": self.spec.id,
            "input": i.id,
            "pointwise": p.id,
            "reduction": r.id,
            "scaling": s.id,
            "class": self.class_id,
            "class_size": self.class_size,
            "representative": self.is_representative,
            "rules": ",".join(self.rules),
            "aliases": ",".join(self.aliases),
            "formula": self.text,
            "latex": self.latex,
            "conditional": ";".join(f"{c.other.id} (rule {c.rule})" for c in self.conditional),
        }


def formula_text(spec: SignalSpec) -> str:
    """Plain-text formula of a signal."""
    if spec.is_reference:
        return spec.reference.text
    i, p, r, s = spec.components
    term = f"({p.text})" if any(ch in p.text for ch in "+-*/ ") else p.text
    reduced = r.text.replace("f", term)
    scale = "" if s is Scaling.NONE else f" / D, {s.text}"
    return f"S_i = mean_n {reduced}{scale}, {i.text}"


def formula_latex(spec: SignalSpec) -> str:
    """LaTeX formula of a signal (for the report)."""
    if spec.is_reference:
        return spec.reference.latex
    i, p, r, s = spec.components
    simple = p.latex in ("x", "g")
    body = r.latex.replace("f_e", f"{p.latex}_e" if simple else f"\\left({p.latex}\\right)_e")
    mean = rf"\frac{{1}}{{N}}\sum_{{n}} {body}"
    core = mean if s is Scaling.NONE else rf"\frac{{{mean}}}{{{s.latex}}}"
    return rf"S_i = {core},\quad {i.latex}"


def describe(spec: SignalSpec, context: Context = UNCOUPLED) -> Cell:
    """The catalogue entry of ``spec`` (references included), its class in ``context``."""
    if spec.is_reference:
        return Cell(spec, spec.id, 1, (), (), formula_text(spec), formula_latex(spec), ())
    rep = representative(spec, context)
    return Cell(
        spec=spec,
        class_id=rep.id,
        class_size=len(members(spec, context)),
        rules=tuple(rule_of(spec, context)),
        aliases=tuple(aliases_of(spec)),
        text=formula_text(spec),
        latex=formula_latex(spec),
        conditional=tuple(conditional_equivalents(spec)),
    )


def catalogue(context: Context = UNCOUPLED) -> tuple[Cell, ...]:
    """Every cell of the space (630 built in), in component order, classes of ``context``."""
    return _catalogue(space_version(), context)


@cache
def _catalogue(version: int, context: Context) -> tuple[Cell, ...]:
    del version  # the cache key: registering an option rebuilds the catalogue
    return tuple(describe(cell, context) for cell in all_cells())
