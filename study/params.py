"""Validated parameter objects: strict pydantic dataclasses, errors in prunetax's words.

Protocols, the saliency data and sweep specs are frozen dataclasses validated by pydantic
with :data:`STRICT`: exact types (no ``"1"`` for 1, no ``true`` for 1), ranges from the
field annotations, no unknown keys, no NaN or infinity. :func:`validated` builds one and
turns a validation failure into a :class:`~taxonomy.errors.PrunetaxError` naming the key.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import typing
from typing import Annotated, Any, Literal, TypeVar

from pydantic import ConfigDict, ValidationError

from taxonomy.errors import PrunetaxError

__all__ = ["STRICT", "validated", "explain_validation", "Param", "parameters", "DEVICE", "check_device"]

STRICT = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False)

DEVICE = re.compile(r"cpu|mps|cuda(:\d+)?")
"""The device names prunetax runs on (whether one exists here is checked by :mod:`study.preflight`)."""


def check_device(name: object) -> str:
    """``name`` if it spells a device (cpu, cuda, cuda:N, mps), else an error in the house wording."""
    if not isinstance(name, str) or not DEVICE.fullmatch(name.strip()):
        raise PrunetaxError(f"`device` must be cpu, cuda, cuda:N or mps; got {name!r}.", key="device")
    return name.strip()


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


def explain_validation(
    err: ValidationError, label: str, described: dict[str, Param] | None = None, given: dict | None = None
) -> PrunetaxError:
    """One message for every failure of ``err``; ``key`` = the first field at fault.

    A field described in ``described`` is worded "`name` must be <allowed>; got <value as given>",
    once however many of its checks failed; a check across fields (``__post_init__``) keeps its
    own message, which names the field first.
    """
    msgs: dict[str, str] = {}
    for e in err.errors():
        if e["loc"]:  # a field's own check
            name = str(e["loc"][0])
            param = (described or {}).get(name)
            if param is not None and e["type"] != "value_error":
                value = (given or {}).get(name, e["input"])
                msgs.setdefault(name, f"`{name}` must be {param.allowed}; got {value!r}")
            else:
                msgs.setdefault(name, f"`{name}`: {e['msg'].lower()} (got {e['input']!r})")
        else:  # a check across fields (__post_init__): its message names the field first
            text = str(e["ctx"]["error"]) if "ctx" in e else e["msg"]
            msgs.setdefault(text.split("`")[1] if text.startswith("`") else "", text)
    first = next(iter(msgs))
    return PrunetaxError(f"{label}: " + "; ".join(msgs.values()) + ".", key=first or None)


def validated(cls: type[T], params: dict[str, Any], label: str) -> T:
    """``cls(**params)``, lists accepted for tuple fields (TOML and JSON have no tuples)."""
    tuples = _tuple_fields(cls)
    fixed = {k: tuple(v) if k in tuples and isinstance(v, list) else v for k, v in params.items()}
    try:
        return cls(**fixed)
    except ValidationError as err:
        raise explain_validation(err, label, {p.name: p for p in parameters(cls)}, params) from None


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
    bounds: str = ""
    min_items: int = 0

    @property
    def allowed(self) -> str:
        """What a value may be, in words (for help texts, errors and docs/spec.md)."""
        one, many = _KINDS.get(self.kind, (f"a {self.kind.__name__}", f"{self.kind.__name__}s"))
        if self.choices:
            one = many = "one of " + ", ".join(map(str, self.choices))
        bounds = f" {self.bounds}" if self.bounds else ""
        text = f"{one}{bounds}"
        if self.is_tuple:
            text = f"a list of {many}{bounds}" + (f" (at least {self.min_items})" if self.min_items else "")
        return f"{text}, or unset" if self.optional else text


_KINDS = {
    int: ("an integer", "integers"),
    float: ("a number", "numbers"),
    str: ("a string", "strings"),
    bool: ("true or false", "booleans"),
}
_BOUNDS = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}


def _constraints(hint: Any) -> dict[str, Any]:
    """Every range or length constraint found anywhere in an annotated hint, by name."""
    out: dict[str, Any] = {}
    for meta in getattr(hint, "__metadata__", ()):
        for item in [meta, *getattr(meta, "metadata", ())]:
            out.update({k: getattr(item, k) for k in (*_BOUNDS, "min_length") if hasattr(item, k)})
    for arg in typing.get_args(hint):
        if arg is not type(None) and not isinstance(arg, str | int | float):
            out.update(_constraints(arg))
    return out


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
    found = _constraints(hint)
    bounds = ", ".join(f"{op} {found[k]}" for k, op in _BOUNDS.items() if k in found)
    help_text = getattr(info, "description", "") or ""
    items = int(found.get("min_length", 0))
    return Param(name, kind, default, help_text, choices, optional, is_tuple, bounds, items)


def parameters(cls: type) -> list[Param]:
    """The parameters of a parameter dataclass ``cls`` (a protocol, the saliency data), in order."""
    return list(_parameters(cls))


@functools.cache
def _parameters(cls: type) -> tuple[Param, ...]:
    """Read once per class: resolving the annotations costs ~10 ms, and the command line asks
    for every protocol's parameters once per parameter (``prunetax --help`` must stay instant)."""
    hints = typing.get_type_hints(cls, include_extras=True)
    return tuple(_describe(f.name, hints[f.name], f.default) for f in dataclasses.fields(cls))
