"""Open enumerations: the options of a taxonomy axis as registered singleton records.

Each axis of the taxonomy (input, pointwise measure, reduction, scaling) and the set of
reference signals is a subclass of :class:`Option`. Its members are registered records
(``Pointwise.TAYLOR``, ``Pointwise("taylor")``, ``for p in Pointwise``), like an enum, but
new members can be registered at run time - a new pointwise measure or scaling is one
:meth:`Option.register` call, and the whole signal space (catalogue, equivalence classes,
the CLI listing) grows with it. :func:`space_version` changes on every registration so
that cached views of the space are rebuilt.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar, TypeVar

from taxonomy.errors import PrunetaxError, invalid

__all__ = ["Option", "space_version"]

O = TypeVar("O", bound="Option")  # noqa: E741 - the option type

_VERSION = [0]


def space_version() -> int:
    """A counter bumped by every (un)registration: a cache key for views of the space."""
    return _VERSION[0]


class _OptionType(type):
    """Makes the option class iterable and callable by id, like an Enum class."""

    def __iter__(cls) -> Iterator[Any]:
        return iter(list(cls._members.values()))

    def __len__(cls) -> int:
        return len(cls._members)

    def __contains__(cls, item: object) -> bool:
        return isinstance(item, cls) and cls._members.get(item.id) is item

    def __call__(cls, ident: str) -> Any:
        """The registered member called ``ident`` (raises with suggestions)."""
        if isinstance(ident, cls):
            return ident
        member = cls._members.get(ident)
        if member is None:
            raise invalid(cls.__name__.lower(), ident, cls._members)
        return member


class Option(metaclass=_OptionType):
    """One option of an axis: id, meaning and formulas (plain text and LaTeX), plus any
    behaviour the axis defines (a subclass adds attributes such as the pointwise function).

    Members are singletons: compare them with ``is``; they pickle by id, so a member sent to
    another process (a Ray worker) is that process's registered member.
    """

    _members: ClassVar[dict[str, Option]]
    _builtin: ClassVar[set[str]]
    _required: ClassVar[tuple[str, ...]] = ()
    """Attributes every member of the axis must be registered with (e.g. ``fn``)."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._members = {}
        cls._builtin = set()

    def __init__(self, ident: str, meaning: str, text: str, latex: str, **extra: Any) -> None:
        self.id = ident
        self.meaning = meaning
        self.text = text
        self.latex = latex
        for key, value in extra.items():
            setattr(self, key, value)

    @classmethod
    def register(cls: type[O], ident: str, meaning: str, text: str, latex: str, **extra: Any) -> O:
        """Add a member; ids are lowercase words (``[a-z0-9_]``), unique within the axis."""
        if not ident or not ident.replace("_", "").isalnum() or ident != ident.lower():
            raise PrunetaxError(f"an option id must be a lowercase word like `taylor2_gn`; got {ident!r}.")
        if ident in cls._members:
            raise PrunetaxError(f"{cls.__name__.lower()} {ident!r} is registered twice.")
        missing = [key for key in cls._required if key not in extra]
        if missing:
            raise PrunetaxError(
                f"{cls.__name__.lower()} {ident!r} must be registered with {', '.join(missing)}."
            )
        member = object.__new__(cls)
        member.__init__(ident, meaning, text, latex, **extra)
        cls._members[ident] = member
        _VERSION[0] += 1
        return member

    @classmethod
    def builtin(cls: type[O], ident: str, meaning: str, text: str, latex: str, **extra: Any) -> O:
        """Register a member that ships with prunetax (it cannot be unregistered)."""
        member = cls.register(ident, meaning, text, latex, **extra)
        cls._builtin.add(ident)
        return member

    @classmethod
    def unregister(cls, ident: str) -> None:
        """Remove a member added with :meth:`register` (tests and plug-ins clean up with this)."""
        if ident in cls._builtin:
            raise PrunetaxError(f"{cls.__name__.lower()} {ident!r} ships with prunetax and stays registered.")
        if cls._members.pop(ident, None) is not None:
            _VERSION[0] += 1

    def __reduce__(self) -> tuple:
        return (type(self), (self.id,))

    def __copy__(self) -> Option:
        return self

    def __deepcopy__(self, memo: dict) -> Option:
        return self

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id}>"

    def __str__(self) -> str:
        return self.id
