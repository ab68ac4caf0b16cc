"""Command-line options generated from parameter objects (protocols, saliency data).

One flag per parameter (``--retrain-steps`` for ``retrain_steps``), with its type, choices
and help text taken from the field's annotation and description, and no default in the
namespace unless given: what the user typed is all that reaches the constructor, so the
object's own validation applies, and an option that belongs to another protocol is an
error rather than silently ignored.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable

__all__ = ["add_param_options", "given"]


def _cli_type(param):  # noqa: ANN001, ANN202 - a study.params.Param
    """argparse ``type``: the field's type, or comma-separated values for a tuple field."""
    if not param.is_tuple:
        return param.kind

    def values(text: str) -> tuple:
        try:
            return tuple(param.kind(t) for t in text.split(",") if t.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None

    return values


def add_param_options(
    group: argparse._ArgumentGroup, params: Iterable, notes: dict[str, str] | None = None
) -> None:
    """Add one option per parameter; ``notes`` adds a bracketed remark to a parameter's help."""
    for param in params:
        default = "" if param.default is None else f"default {param.default}"
        note = "; ".join(x for x in ((notes or {}).get(param.name, ""), default) if x)
        group.add_argument(
            "--" + param.name.replace("_", "-"),
            dest=param.name,
            type=_cli_type(param),
            choices=param.choices or None,
            default=argparse.SUPPRESS,
            help=f"{param.help} [{note}]" if note else param.help,
        )


def given(args: argparse.Namespace, params: Iterable) -> dict[str, object]:
    """The parameters the user actually gave."""
    return {p.name: getattr(args, p.name) for p in params if hasattr(args, p.name)}
