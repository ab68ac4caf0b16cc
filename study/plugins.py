"""A researcher's own models and datasets: registered from Python, or named by import string.

``"mypkg.nets:resnet_tiny"`` names a callable in an importable module; a sweep spec can
use such a name anywhere a registry model or dataset goes, and every Ray worker imports
it by itself (an in-process :func:`study.models.register_model` is invisible to workers).
A model callable is ``builder(in_channels, num_classes, image_size) -> nn.Module``; a
dataset callable returns ``(x, y)``: images ``[N, C, H, W]`` (uint8, or floats in [0, 1])
and integer labels ``[N]``.
"""

from __future__ import annotations

import importlib

from taxonomy.errors import PrunetaxError

__all__ = ["is_import_string", "load_object"]

BUILTIN_PREFIXES = frozenset({"tv"})
"""``tv:<name>`` is a torchvision model, never a module called ``tv``."""


def is_import_string(name: str) -> bool:
    """``module.path:attribute`` (and not one of the built-in prefixes such as ``tv:``)."""
    module, sep, attr = name.partition(":")
    return (
        bool(sep)
        and module not in BUILTIN_PREFIXES
        and attr.isidentifier()
        and all(part.isidentifier() for part in module.split("."))
    )


def load_object(name: str, what: str) -> object:
    """The object an import string names, or an error saying what is missing."""
    module_name, _, attr = name.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise PrunetaxError(
            f"{what} {name!r}: cannot import module {module_name!r} ({err}); make it importable "
            "(install it, or add its folder to PYTHONPATH) on every machine of the sweep."
        ) from None
    try:
        obj = getattr(module, attr)
    except AttributeError:
        raise PrunetaxError(f"{what} {name!r}: module {module_name!r} has no {attr!r}.") from None
    if not callable(obj):
        raise PrunetaxError(f"{what} {name!r} must name a callable; got a {type(obj).__name__}.")
    return obj
