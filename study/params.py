"""Validated parameter objects: strict pydantic dataclasses, errors in prunetax's words.

Protocols, the saliency data and sweep specs are frozen dataclasses validated by pydantic
with :data:`STRICT`: exact types (no ``"1"`` for 1, no ``true`` for 1), ranges from the
field annotations, no unknown keys, no NaN or infinity. :func:`validated` builds one and
turns a validation failure into a :class:`~taxonomy.errors.PrunetaxError` naming the key.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Annotated, Any, Literal, TypeVar

from pydantic import ConfigDict, ValidationError

from taxonomy.errors import PrunetaxError

__all__ = ["STRICT", "validated", "explain_validation", "Param", "parameters"]

STRICT = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False)

T = TypeVar("T")


def _tuple_fields(cls: type) -> set[str]:
    hints = typing.get_type_hints(cls)
    out = set()
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        options = typing.get_args(hint) if typing.get_origin(hint) is typing.Union else (hint,)
        if any(typing.get_origin(o) is tuple for o in options):
            out.add(f.name)
    return out


def explain_validation(err: ValidationError, label: str) -> PrunetaxError:
    """One message for every failure of ``err``; ``key`` = the first field at fault."""
    msgs, keys = [], []
    for e in err.errors():
        if e["loc"]:  # a field's own check
            keys.append(str(e["loc"][0]))
            msgs.append(f"`{e['loc'][0]}`: {e['msg'].lower()} (got {e['input']!r})")
        else:  # a check across fields (__post_init__): its message names the field first
            text = str(e["ctx"]["error"]) if "ctx" in e else e["msg"]
            keys.append(text.split("`")[1] if text.startswith("`") else "")
            msgs.append(text)
    return PrunetaxError(f"{label}: " + "; ".join(msgs) + ".", key=keys[0] or None)


def validated(cls: type[T], params: dict[str, Any], label: str) -> T:
    """``cls(**params)``, lists accepted for tuple fields (TOML and JSON have no tuples)."""
    tuples = _tuple_fields(cls)
    fixed = {k: tuple(v) if k in tuples and isinstance(v, list) else v for k, v in params.items()}
    try:
        return cls(**fixed)
    except ValidationError as err:
        raise explain_validation(err, label) from None


@dataclasses.dataclass(frozen=True)
class Param:
    """One parameter of a parameter object, as the CLI and the spec documentation show it."""

    name: str
    kind: type
    default: Any
    help: str
    choices: tuple[str, ...] = ()
    optional: bool = False
    is_tuple: bool = False


def _describe(name: str, hint: Any, default: Any) -> Param:
    info = next((m for m in getattr(hint, "__metadata__", ()) if hasattr(m, "description")), None)
    base = typing.get_args(hint)[0] if typing.get_origin(hint) is Annotated else hint
    args = [a for a in typing.get_args(base) if a is not type(None)]
    optional = type(None) in typing.get_args(base)
    if optional and len(args) == 1:
        base = args[0]
        base = typing.get_args(base)[0] if typing.get_origin(base) is Annotated else base
    choices: tuple[str, ...] = ()
    is_tuple = typing.get_origin(base) is tuple
    if typing.get_origin(base) is Literal:
        choices, kind = tuple(typing.get_args(base)), str
    elif is_tuple:
        item = typing.get_args(base)[0]
        kind = typing.get_args(item)[0] if typing.get_origin(item) is Annotated else item
    else:
        kind = base
    return Param(name, kind, default, getattr(info, "description", "") or "", choices, optional, is_tuple)


def parameters(cls: type) -> list[Param]:
    """The parameters of a parameter dataclass ``cls`` (a protocol, the saliency data), in order."""
    hints = typing.get_type_hints(cls, include_extras=True)
    return [_describe(f.name, hints[f.name], f.default) for f in dataclasses.fields(cls)]
