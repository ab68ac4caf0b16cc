"""Base-model checkpoints: one typed record, saved atomically, validated when loaded.

On disk a checkpoint is a plain dict (``torch.load(..., weights_only=True)`` reads it
safely); in memory it is a :class:`Checkpoint`. Loading checks the format, every
required entry and their types, and :meth:`Checkpoint.build_model` checks the state dict
against the architecture, so a damaged or foreign file gives a message, not a traceback.
"""

from __future__ import annotations

import os
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from taxonomy.errors import PrunetaxError

__all__ = ["FORMAT", "FORMAT_VERSION", "SplitInfo", "Checkpoint"]

FORMAT = "prunetax-checkpoint"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class SplitInfo:
    """Which data splits a base model was trained on (``fingerprint`` hashes their indices)."""

    seed: int
    sizes: dict[str, int]
    fingerprint: str
    mean: list[float] = field(default_factory=list)
    std: list[float] = field(default_factory=list)


@dataclass
class Checkpoint:
    """A trained base model and everything a result must record about it."""

    arch: str
    arch_kwargs: dict[str, int]
    dataset: str
    seed: int
    splits: SplitInfo
    state_dict: dict[str, Tensor]
    accuracy: dict[str, float]
    loss: dict[str, float]
    config: dict[str, Any]
    config_hash: str = ""
    history: list[dict[str, float]] = field(default_factory=list)
    versions: dict[str, str] = field(default_factory=dict)
    device: str = "cpu"
    wall_time_s: float = 0.0

    # -- plain dict <-> record -------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The on-disk form (plain containers only)."""
        return {"format": FORMAT, "format_version": FORMAT_VERSION, **asdict(self)}

    @classmethod
    def from_dict(cls, data: object, source: str = "checkpoint") -> Checkpoint:
        """Validate an on-disk dict and build the record (raises with what is wrong)."""
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise PrunetaxError(
                f"{source} is not a prunetax checkpoint (no format={FORMAT!r} entry); "
                "pass a file written by `prunetax train`."
            )
        version = data.get("format_version")
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise PrunetaxError(
                f"{source} has checkpoint format {version!r}, not one this prunetax understands "
                f"(<= {FORMAT_VERSION}); upgrade prunetax or retrain the base model."
            )
        required = [f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING]
        missing = [k for k in required if k not in data]
        if missing:
            raise PrunetaxError(
                f"{source} is an incomplete prunetax checkpoint: missing {', '.join(missing)}."
            )
        _check_types(data, source)
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["splits"] = SplitInfo(**{k: v for k, v in data["splits"].items() if k in _SPLIT_KEYS})
        return cls(**values)

    # -- files -----------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write atomically: a dot-prefixed temp file in the same folder, then ``os.replace``."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            torch.save(self.to_dict(), tmp)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return path

    @classmethod
    def load(cls, path: str | Path) -> Checkpoint:
        """Read and validate a checkpoint file (tensors land on the CPU)."""
        path = Path(path)
        if not path.is_file():
            raise PrunetaxError(f"no checkpoint at {path}; train one with `prunetax train`.")
        try:
            data = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # torch raises many types for a bad file
            first = (str(err).strip().splitlines() or [""])[0][:200]
            raise PrunetaxError(
                f"{path} is not a readable checkpoint (corrupt, empty, or not a torch file): "
                f"{type(err).__name__}: {first}"
            ) from None
        return cls.from_dict(data, str(path))

    # -- the model -------------------------------------------------------------------------
    def build_model(self, device: str | torch.device = "cpu") -> nn.Module:
        """The trained network (eval mode, on ``device``); a state dict that does not fit
        the architecture is an error naming the first mismatches."""
        from study import models

        model = models.build(self.arch, **self.arch_kwargs)
        _check_state(model, self.state_dict, self.arch)
        model.load_state_dict(self.state_dict)
        return model.to(device).eval()


_SPLIT_KEYS = {f.name for f in fields(SplitInfo)}
_TYPES: dict[str, type | tuple[type, ...]] = {
    "arch": str,
    "arch_kwargs": dict,
    "dataset": str,
    "seed": int,
    "splits": dict,
    "state_dict": dict,
    "accuracy": dict,
    "loss": dict,
    "config": dict,
}


def _check_types(data: dict, source: str) -> None:
    for key, kind in _TYPES.items():
        if not isinstance(data[key], kind) or (kind is int and isinstance(data[key], bool)):
            raise PrunetaxError(f"{source}: entry `{key}` has the wrong type ({type(data[key]).__name__}).")
    if not all(isinstance(v, Tensor) for v in data["state_dict"].values()):
        raise PrunetaxError(f"{source}: `state_dict` must map names to tensors.")
    missing = _SPLIT_KEYS - {"mean", "std"} - set(data["splits"])
    if missing:
        raise PrunetaxError(f"{source}: entry `splits` lacks {', '.join(sorted(missing))}.")


def _check_state(model: nn.Module, state: dict[str, Tensor], arch: str) -> None:
    expected = model.state_dict()
    problems = [f"missing {k}" for k in expected if k not in state]
    problems += [f"unexpected {k}" for k in state if k not in expected]
    problems += [
        f"{k} has shape {tuple(state[k].shape)}, the model needs {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise PrunetaxError(
            f"the checkpoint's weights do not fit model {arch!r}: {'; '.join(problems[:3])}{more}. "
            "Retrain the base model with `prunetax train`."
        )
