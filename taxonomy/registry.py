"""A small generic registry: one record per name, duplicate names are errors.

Used for models, datasets, protocols, statistic passes and reference scorers in ``study``;
an unknown name raises a :class:`~taxonomy.errors.PrunetaxError` listing close matches and
every valid name.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from taxonomy.errors import PrunetaxError, invalid

__all__ = ["Registry"]

T = TypeVar("T")


class Registry(Generic[T]):
    """Name -> item mapping with helpful errors.

    Parameters
    ----------
    kind
        What the items are ("model", "dataset"...), used in error messages.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def add(self, name: str, item: T) -> T:
        """Register ``item`` under ``name``; a second registration of a name is an error."""
        if name in self._items:
            raise PrunetaxError(f"{self.kind} {name!r} is registered twice.")
        self._items[name] = item
        return item

    def remove(self, name: str) -> None:
        """Unregister ``name`` (plug-ins and tests clean up with this); unknown names are ignored."""
        self._items.pop(name, None)

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator form of :meth:`add`."""
        return lambda item: self.add(name, item)

    def get(self, name: str) -> T:
        """Return the item called ``name`` or raise with suggestions."""
        try:
            return self._items[name]
        except KeyError:
            raise invalid(self.kind, name, self._items) from None

    def values(self) -> list[T]:
        """All registered items, in registration order."""
        return list(self._items.values())

    def names(self) -> list[str]:
        """All registered names, in registration order."""
        return list(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)
