"""``SignalSpec``: one pruning signal as data, with one id grammar and one parser.

A taxonomy signal is ``input-pointwise-reduction-scaling`` (e.g.
``activation-taylor-abs_sum-l2``); the references ``random`` and ``oracle`` are specs
too. ``parse(spec.id) == spec`` for every spec (tested), and :func:`parse` also
accepts the literature aliases of :mod:`taxonomy.aliases`.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import product

from taxonomy.components import AXES, Input, Pointwise, Reduction, Reference, Scaling
from taxonomy.errors import PrunetaxError, close_matches

__all__ = ["SignalSpec", "parse", "all_cells"]


@dataclass(frozen=True, order=False)
class SignalSpec:
    """A pruning signal: four components, or a reference (``random``/``oracle``)."""

    input: Input | None = None
    pointwise: Pointwise | None = None
    reduction: Reduction | None = None
    scaling: Scaling | None = None
    reference: Reference | None = None

    def __post_init__(self) -> None:
        parts = (self.input, self.pointwise, self.reduction, self.scaling)
        if self.reference is not None:
            if any(p is not None for p in parts):
                raise PrunetaxError("a reference signal (random/oracle) takes no components.")
            return
        for (axis, enum), part in zip(AXES.items(), parts, strict=True):
            if not isinstance(part, enum):
                raise PrunetaxError(f"`{axis}` must be a {enum.__name__}; got {part!r}.")

    @property
    def id(self) -> str:  # noqa: A003 - the canonical id
        """Canonical id: ``input-pointwise-reduction-scaling`` or the reference name."""
        if self.reference is not None:
            return self.reference.id
        return "-".join(p.id for p in self.components)

    @property
    def components(self) -> tuple[Input, Pointwise, Reduction, Scaling]:
        """The four components (raises for a reference)."""
        if self.reference is not None:
            raise PrunetaxError(f"{self.id!r} is a reference signal and has no components.")
        return (self.input, self.pointwise, self.reduction, self.scaling)  # type: ignore[return-value]

    @property
    def is_reference(self) -> bool:
        return self.reference is not None

    @property
    def randomised(self) -> bool:
        """True for a signal drawn at random (several draws make its distribution)."""
        return self.reference is not None and self.reference.randomised

    def replace(self, **changes: object) -> SignalSpec:
        """A copy with some components changed."""
        fields = dict(
            input=self.input,
            pointwise=self.pointwise,
            reduction=self.reduction,
            scaling=self.scaling,
            reference=self.reference,
        )
        fields.update(changes)
        return SignalSpec(**fields)  # type: ignore[arg-type]

    def __str__(self) -> str:
        return self.id


def all_cells() -> list[SignalSpec]:
    """Every cell of the taxonomy (2 x 9 x 5 x 7 = 630 built in), in component order."""
    return [SignalSpec(*parts) for parts in product(Input, Pointwise, Reduction, Scaling)]


def _normalise(text: str) -> str:
    return "-".join(part.strip().lower().replace(" ", "_") for part in text.strip().split("-"))


def parse(text: str | SignalSpec) -> SignalSpec:
    """Parse an id or a literature alias (case and whitespace tolerant).

    Raises
    ------
    PrunetaxError
        Naming each bad component with the closest valid choices.
    """
    if isinstance(text, SignalSpec):
        return text
    from taxonomy.aliases import ALIASES  # local: aliases are built from SignalSpec

    name = _normalise(str(text))
    if name in ALIASES:
        return ALIASES[name].spec
    if name in {r.id for r in Reference}:
        return SignalSpec(reference=Reference(name))
    parts = name.split("-")
    if len(parts) != 4:
        known = list(ALIASES) + [r.id for r in Reference]
        close = close_matches(name, known)
        hint = f" Did you mean {' or '.join(map(repr, close))}?" if close else ""
        raise PrunetaxError(
            f"signal {text!r} is neither an id `input-pointwise-reduction-scaling` nor a known "
            f"alias.{hint} Run `prunetax signals --aliases` to list the aliases."
        )
    problems, chosen = [], []
    for (axis, enum), part in zip(AXES.items(), parts, strict=True):
        valid = [m.id for m in enum]
        if part in valid:
            chosen.append(enum(part))
            continue
        close = close_matches(part, valid)
        suggestion = f"did you mean {' or '.join(map(repr, close))}? " if close else ""
        problems.append(f"unknown {axis} {part!r} ({suggestion}valid: {', '.join(valid)})")
    if problems:
        raise PrunetaxError(f"signal {text!r}: " + "; ".join(problems) + ".")
    return SignalSpec(*chosen)
