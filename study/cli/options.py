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

__all__ = ["add_param_options", "given", "check_names"]


def _cli_type(param):  # noqa: ANN001, ANN202 - a study.params.Param
    """argparse ``type``: text read as the field's type (comma-separated for a tuple field); its
    range is checked by the parameter object itself, which names the parameter."""
    from study.cli.types import checked

    one = checked(param.kind, param.allowed if not param.is_tuple else f"a {param.kind.__name__}")
    if not param.is_tuple:
        return one

    def values(text: str) -> tuple:
        items = [t for t in text.split(",") if t.strip()]
        if not items:
            raise argparse.ArgumentTypeError(f"must be {param.allowed}, comma-separated; got {text!r}")
        try:
            return tuple(one(t.strip()) for t in items)
        except argparse.ArgumentTypeError:
            raise argparse.ArgumentTypeError(
                f"must be {param.allowed}, comma-separated; got {text!r}"
            ) from None

    values.__name__ = param.allowed
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
            help=(f"{param.help} [{note}]" if note else param.help).replace(
                "%", "%%"
            ),  # argparse formats help
        )


def given(args: argparse.Namespace, params: Iterable) -> dict[str, object]:
    """The parameters the user actually gave."""
    return {p.name: getattr(args, p.name) for p in params if hasattr(args, p.name)}


def check_names(model: str, dataset: str) -> None:
    """``--model`` and ``--dataset`` name a known model and dataset (an ``imagefolder:`` folder is
    the environment's, checked by :mod:`study.preflight`)."""
    from study import data, models
    from study.data.sources import IMAGEFOLDER
    from taxonomy.errors import PrunetaxError

    for option, check, name in (("--model", models.entry, model), ("--dataset", data.entry, dataset)):
        if not name.startswith(IMAGEFOLDER):
            try:
                check(name)
            except PrunetaxError as err:
                raise PrunetaxError(f"{option}: {err}", key=option[2:]) from None
