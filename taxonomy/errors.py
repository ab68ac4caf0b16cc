"""The one error type of prunetax, and the helper that words "did you mean" hints.

Every bad input at a public boundary (a signal id, a model or dataset name, a spec
file, a store path) raises :class:`PrunetaxError` with one wording: what was expected,
what was given, and what to do next. The CLI turns it into a message and exit code 2.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = ["PrunetaxError", "close_matches", "invalid"]


class PrunetaxError(ValueError):
    """A user-facing error: the message names the problem and the fix.

    ``key`` optionally names the parameter at fault, so that a caller reading a file (a
    sweep spec) can point at its line.
    """

    def __init__(self, message: str, *, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


def close_matches(value: str, choices: Iterable[str], n: int = 3) -> list[str]:
    """Return up to ``n`` choices that look like ``value`` (case-insensitive)."""
    choices = list(choices)
    lowered = {c.lower(): c for c in choices}
    hits = difflib.get_close_matches(value.lower(), list(lowered), n=n, cutoff=0.6)
    return [lowered[h] for h in hits]


def invalid(param: str, value: object, choices: Iterable[str], hint: str = "") -> PrunetaxError:
    """Build the standard "`param` must be one of ...; got value" error."""
    choices = list(choices)
    close = close_matches(str(value), choices)
    msg = f"`{param}` must be one of {', '.join(choices)}; got {value!r}."
    if close:
        msg += f" Did you mean {' or '.join(repr(c) for c in close)}?"
    if hint:
        msg += f" {hint}"
    return PrunetaxError(msg)
