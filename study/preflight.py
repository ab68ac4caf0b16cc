"""Checks of the environment before the first trial: device, outputs, data, model fit.

A problem of the environment - no such device here, an output path of the wrong kind or
not writable, missing dataset files, a model that cannot take the dataset's images, an
eval split too small for the saliency batches, more units per step than the network can
lose, a damaged cached base model - is a :class:`PrunetaxError` raised before anything
runs, so it is a message and exit code 2, never a trial stored as failed (later sweeps
would skip it). Only what a trial itself raises is stored as a failure. ``run``,
``sweep`` and ``demo`` call :func:`preflight`; ``train``, ``scores`` and ``report`` use its
path and device checks. Nothing is written (unless the environment asks to download data).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from study.environment import Environment
from study.saliency import SaliencyData
from taxonomy.errors import PrunetaxError

if TYPE_CHECKING:
    from study.data import Splits
    from study.protocols import Protocol

__all__ = [
    "Where",
    "Work",
    "flag",
    "preflight",
    "check_device",
    "check_folder",
    "check_file",
    "check_examples",
]

Where = Callable[[str], str]
"""Where a key was given, for messages: ``--eval-batch-size``, or
``spec.toml: [[runs]] #2.eval_batch_size (line 19)``."""


def flag(name: str) -> str:
    """The command-line option of key ``name`` (``eval_batch_size`` -> ``--eval-batch-size``)."""
    return _OPTIONS.get(name) or "--" + name.replace("_", "-")


_OPTIONS = {"models": "--model", "datasets": "--dataset"}


@dataclass(frozen=True)
class Work:
    """One model on one dataset, what it asks of them, and where it was asked for."""

    model: str
    dataset: str
    base_seeds: tuple[int, ...] = (0,)
    saliency: SaliencyData | None = None
    protocol: Protocol | None = None
    where: Where = flag


def _fail(where: str, message: str, key: str) -> PrunetaxError:
    return PrunetaxError(f"{where}: {message}", key=key)


def check_device(device: str, where: Where = flag) -> None:
    """The device exists on this machine."""
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise _fail(
            where("device"), f"`device` must be cpu, cuda, cuda:N or mps; got {device!r}.", "device"
        ) from None
    if dev.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if (dev.index or 0) >= n:
            have = f"{n} CUDA device(s)" if n else "no CUDA device"
            raise _fail(
                where("device"),
                f"`device` {device!r} is not available: this machine has {have}; use cpu.",
                "device",
            )
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise _fail(where("device"), "`device` 'mps' is not available on this machine; use cpu.", "device")


def _nearest(path: Path) -> Path:
    """The nearest existing folder at or above ``path`` (what creating it would write into)."""
    probe = path.absolute()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return probe


def _writable(path: Path, key: str, where: Where) -> None:
    base = _nearest(path)
    if not base.is_dir():
        raise _fail(where(key), f"`{key}` {path} cannot be created: {base} is a file, not a folder.", key)
    if not os.access(base, os.W_OK | os.X_OK):
        raise _fail(
            where(key), f"`{key}` {path}: {base} is not writable; pick a folder you can write to.", key
        )


def check_folder(path: str | Path, key: str, where: Where = flag) -> None:
    """``path`` is a folder, or can be created as one, and can be written to."""
    path = Path(path).expanduser()
    if path.exists() and not path.is_dir():
        raise _fail(where(key), f"`{key}` must be a folder; {path} is a file. Pass a folder's path.", key)
    _writable(path, key, where)


def check_file(path: str | Path, key: str, where: Where = flag) -> None:
    """``path`` is a file, or can be created as one, in a folder that can be written to."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise _fail(where(key), f"`{key}` must be a file; {path} is a folder. Pass a file's path.", key)
    if path.exists() and not os.access(path, os.W_OK):
        raise _fail(where(key), f"`{key}` {path} exists and is not writable.", key)
    _writable(path.parent, key, where)


def _splits(dataset: str, env: Environment, seed: int, where: Where) -> Splits:
    from study import data

    try:
        return data.load(dataset, env.data_root, seed, env.download)
    except PrunetaxError as err:
        raise _fail(where("datasets"), str(err), "datasets") from None


def _network(work: Work, splits: Splits):  # noqa: ANN202 - an nn.Module
    """The model built for the dataset's geometry, after one forward pass of two images."""
    import torch

    from study import models

    shape = "x".join(map(str, splits.train.x.shape[1:]))
    try:
        net = models.build(work.model, splits.in_channels, splits.num_classes, splits.image_size).eval()
        with torch.no_grad():
            net(splits.train.x[:2].float())
    except Exception as err:  # noqa: BLE001 - whatever a model's code raises: it does not fit
        text = (str(err).strip().splitlines() or [type(err).__name__])[0][:300]
        message = f"model {work.model!r} cannot take {work.dataset}'s {shape} images: {text}"
        raise _fail(work.where("models"), message + " Pick a model and dataset that fit.", "models") from None
    return net


def _units(work: Work, net, splits: Splits, counts: dict) -> None:  # noqa: ANN001
    """The protocol prunes no more units per step than the network can lose."""
    from study.groups import build_groups

    protocol = work.protocol
    if protocol is None or (protocol.units_per_step(1) or 1) <= 1:
        return
    if (work.model, work.dataset) not in counts:
        groups = build_groups(net, tuple(splits.train.x.shape[1:]))
        counts[(work.model, work.dataset)] = (groups.n_units, groups.n_units - len(groups.group_sizes))
    n_units, prunable = counts[(work.model, work.dataset)]
    k = protocol.units_per_step(n_units) or 1
    if k > prunable:
        message = (
            f"`channels_per_step` must be at most the {prunable} units {work.model} can lose (every unit "
            f"but one per group); got {k}. Use a smaller count or a fraction such as 0.1."
        )
        raise _fail(work.where("channels_per_step"), message, "channels_per_step")


def check_examples(saliency: SaliencyData | None, splits: Splits, dataset: str, where: Where = flag) -> None:
    """The eval split holds the examples the saliency batches draw."""
    need = saliency.examples if saliency is not None else 0
    have = int(splits.eval.y.shape[0])
    if need > have:
        message = (
            f"the saliency data asks for {saliency.eval_batches} x {saliency.eval_batch_size} = {need} eval "
            f"examples but {dataset}'s eval split has {have}; `eval_batch_size` must be at most "
            f"{have // saliency.eval_batches}."
        )
        raise _fail(where("eval_batch_size"), message, "eval_batch_size")


def _cached(work: Work, env: Environment) -> None:
    """Every cached base model the work will read loads and fits its architecture."""
    from study.checkpoint import Checkpoint
    from study.train import TrainConfig, checkpoint_path

    for seed in work.base_seeds:
        path = checkpoint_path(
            TrainConfig(work.model, work.dataset, seed, data_root=env.data_root), env.cache_dir
        )
        if not path.exists():
            continue
        try:
            Checkpoint.load(path).build_model()
        except PrunetaxError as err:
            raise _fail(work.where("cache_dir"), f"{err} Delete {path} to retrain it.", "cache_dir") from None


def preflight(
    env: Environment,
    work: Sequence[Work] = (),
    *,
    where: Where = flag,
    folders: Mapping[str, str | Path] | None = None,
    files: Mapping[str, str | Path] | None = None,
    local: bool = True,
) -> None:
    """Check everything the work needs before any of it runs (see the module docstring).

    ``folders`` and ``files`` map a key (``store``, ``out``) to an output path; ``local``
    is False when the work runs on a cluster whose devices this machine cannot see.
    """
    if local:
        check_device(env.device, where)
    for key, path in (folders or {}).items():
        check_folder(path, key, where)
    for key, path in (files or {}).items():
        check_file(path, key, where)
    check_folder(env.cache_dir, "cache_dir", where)
    data: dict[str, Splits] = {}
    nets: dict[tuple[str, str], object] = {}
    counts: dict[tuple[str, str], tuple[int, int]] = {}
    for w in _unique(work):
        if w.dataset not in data:
            data[w.dataset] = _splits(w.dataset, env, w.base_seeds[0] if w.base_seeds else 0, w.where)
        splits = data[w.dataset]
        if (w.model, w.dataset) not in nets:
            nets[(w.model, w.dataset)] = _network(w, splits)
            _cached(w, env)
        check_examples(w.saliency, splits, w.dataset, w.where)
        _units(w, nets[(w.model, w.dataset)], splits, counts)


def _unique(work: Iterable[Work]) -> list[Work]:
    return list(dict.fromkeys(work))
