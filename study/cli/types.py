"""Checked argument types: each option's value is validated by pydantic as argparse reads it.

A bad value is argparse's usage error (exit 2) naming the option and what it must be:
``argument --seed: must be a whole number >= 0; got '-1'``. The checks are the same
constrained types the parameter objects use, so a command line and a spec agree on
what is valid. Torch-free, so ``prunetax --help`` stays instant.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Annotated, Any

from pydantic import Field, TypeAdapter, ValidationError

__all__ = ["checked", "WHOLE", "COUNT", "POSITIVE", "NONNEGATIVE", "FRACTION", "DEVICE", "TEXT", "ids"]


def checked(annotation: Any, allowed: str) -> Callable[[str], Any]:
    """An argparse ``type`` that validates text as ``annotation`` (lax: "3" is 3)."""
    adapter = TypeAdapter(annotation)

    def convert(text: str) -> Any:
        try:
            return adapter.validate_python(text)
        except ValidationError:
            raise argparse.ArgumentTypeError(f"must be {allowed}; got {text!r}") from None

    convert.__name__ = allowed  # argparse shows a type's name in some messages
    return convert


def _device(text: str) -> str:
    from study.params import check_device

    try:
        return check_device(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be cpu, cuda, cuda:N or mps; got {text!r}") from None


def _text(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError(f"must not be empty; got {text!r}")
    return text.strip()


def ids(text: str) -> list[str]:
    """One or more comma-separated names (``--signal a,b``), none of them empty."""
    items = [t.strip() for t in text.split(",")]
    if not text.strip() or not all(items):
        raise argparse.ArgumentTypeError(f"must be one or more comma-separated names; got {text!r}")
    return items


WHOLE = checked(Annotated[int, Field(ge=0)], "a whole number >= 0")
COUNT = checked(Annotated[int, Field(ge=1)], "a whole number >= 1")
POSITIVE = checked(Annotated[float, Field(gt=0, allow_inf_nan=False)], "a number > 0")
NONNEGATIVE = checked(Annotated[float, Field(ge=0, allow_inf_nan=False)], "a number >= 0")
FRACTION = checked(Annotated[float, Field(ge=0, lt=1, allow_inf_nan=False)], "a number in [0, 1)")
DEVICE = _device
TEXT = _text
