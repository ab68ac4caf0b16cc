"""Train base models deterministically and cache them by the hash of their configuration.

A base model is a pure function of its resolved :class:`TrainConfig`: the seed fixes
the initial weights, the batch order, augmentation and dropout; the split seed fixes the
data splits. ``load_or_train`` therefore reuses ``<cache>/<model>-<dataset>-s<seed>-<hash>.pt``
whenever it exists. Accuracies are fractions in [0, 1].
"""

from __future__ import annotations

import contextlib
import math
import platform
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from study.checkpoint import FORMAT_VERSION, Checkpoint, SplitInfo
from study.evaluation import evaluate
from study.keys import stable_key
from taxonomy.errors import PrunetaxError, invalid

__all__ = [
    "TrainConfig",
    "resolve",
    "config_hash",
    "checkpoint_path",
    "train",
    "load_or_train",
    "augment_batch",
]

# Bump when training semantics change, so cached checkpoints of the old code are not reused.
# 2: stratified splits drawn per seed, a larger digits eval pool.
TRAIN_VERSION = 2
SCHEDULES = ("cosine", "step")
AUGMENTS = ("none", "crop_flip")

Progress = Callable[[str], None]


@dataclass(frozen=True)
class TrainConfig:
    """What a base model is: ``None`` means the model's (or dataset's) default.

    ``split_seed`` chooses the data splits; by default it is ``seed``, so every repeat
    (base model) draws its own stratified train / eval / test partition and is tested on
    its own test set (a fixed test set would hide the test-set variance that decides close
    rankings). ``data_root`` says where files are and is not part of the model's identity.
    """

    model: str = "tiny_cnn"
    dataset: str = "digits"
    seed: int = 0
    epochs: int | None = None
    lr: float | None = None
    batch_size: int | None = None
    weight_decay: float | None = None
    momentum: float | None = None
    schedule: str | None = None
    augment: str | None = None
    split_seed: int | None = None
    data_root: str | None = None


def resolve(cfg: TrainConfig) -> TrainConfig:
    """Fill every ``None`` from the model's hyperparameters and the dataset's defaults; validate."""
    from study import data, models

    hp = models.hyperparams(cfg.model)
    ds = data.entry(cfg.dataset, cfg.data_root)
    filled = {
        f.name: getattr(hp, f.name)
        for f in fields(cfg)
        if getattr(cfg, f.name) is None and hasattr(hp, f.name)
    }
    split = cfg.seed if cfg.split_seed is None else cfg.split_seed
    out = replace(cfg, **filled, dataset=ds.name, augment=cfg.augment or ds.augment, split_seed=split)
    try:  # one spelling per value, so 1 and 1.0 hash alike
        out = replace(
            out,
            epochs=int(out.epochs),
            batch_size=int(out.batch_size),
            lr=float(out.lr),
            weight_decay=float(out.weight_decay),
            momentum=float(out.momentum),
        )
    except (TypeError, ValueError) as err:
        raise PrunetaxError(f"training hyperparameters must be numbers: {err}") from None
    for name, ok, rule in (
        ("epochs", out.epochs >= 0, "an integer >= 0"),
        ("lr", out.lr > 0, "> 0"),
        ("batch_size", out.batch_size >= 1, "an integer >= 1"),
        ("weight_decay", out.weight_decay >= 0, ">= 0"),
        ("momentum", 0 <= out.momentum < 1, "in [0, 1)"),
    ):
        if not ok:
            raise PrunetaxError(f"`{name}` must be {rule}; got {getattr(out, name)!r}.")
    if out.schedule not in SCHEDULES:
        raise invalid("schedule", out.schedule, SCHEDULES)
    if out.augment not in AUGMENTS:
        raise invalid("augment", out.augment, AUGMENTS)
    return out


def _canonical(cfg: TrainConfig) -> dict[str, Any]:
    config = asdict(resolve(cfg))
    del config["data_root"]
    return {"config": config, "train_version": TRAIN_VERSION, "format_version": FORMAT_VERSION}


def config_hash(cfg: TrainConfig) -> str:
    """12 hex digits of SHA-256 over the resolved config (minus ``data_root``) and code version."""
    return stable_key(_canonical(cfg), 12)


def _slug(name: str) -> str:
    if name.startswith("imagefolder:"):
        name = "imagefolder-" + Path(name.split(":", 1)[1]).name
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


def checkpoint_path(cfg: TrainConfig, cache_dir: str | Path) -> Path:
    """Where ``load_or_train`` caches ``cfg``: ``<model>-<dataset>-s<seed>-<hash>.pt``."""
    name = f"{_slug(cfg.model)}-{_slug(resolve(cfg).dataset)}-s{cfg.seed}-{config_hash(cfg)}.pt"
    return Path(cache_dir) / name


@contextlib.contextmanager
def _deterministic(seed: int, device: torch.device) -> Iterator[None]:
    """Seed every RNG and force deterministic kernels; restore the caller's state after."""
    cuda = list(range(torch.cuda.device_count())) if device.type == "cuda" else []
    prev = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.benchmark,
    )
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(seed)
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
        try:
            yield
        finally:
            torch.use_deterministic_algorithms(prev[0], warn_only=prev[1])
            torch.backends.cudnn.benchmark = prev[2]


def augment_batch(x: Tensor, kind: str, generator: torch.Generator) -> Tensor:
    """``crop_flip``: random 4-pixel-padded crop and horizontal flip per image (CIFAR standard)."""
    if kind == "none":
        return x
    n, c, h, w = x.shape
    flip = (torch.rand(n, generator=generator) < 0.5).to(x.device)
    dy, dx = torch.randint(0, 9, (2, n, 1), generator=generator).to(x.device)
    rows = (dy + torch.arange(h, device=x.device))[:, None, :, None]
    cols = (dx + torch.arange(w, device=x.device))[:, None, None, :]
    padded = F.pad(x, (4, 4, 4, 4))
    out = padded[
        torch.arange(n, device=x.device)[:, None, None, None],
        torch.arange(c, device=x.device)[None, :, None, None],
        rows,
        cols,
    ]
    return torch.where(flip[:, None, None, None], out.flip(3), out)


def _device(device: str | torch.device) -> torch.device:
    """``device`` as a torch.device, or a clear error when it does not exist here."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise PrunetaxError(f"`device` must be cpu, cuda or cuda:N; got {device!r}.") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise PrunetaxError(f"`device` {device!r} was requested but CUDA is not available here; use cpu.")
    return dev


def _lr_at(cfg: TrainConfig, epoch: int, step: int, total: int) -> float:
    if cfg.schedule == "cosine":
        return cfg.lr * 0.5 * (1 + math.cos(math.pi * step / max(total, 1)))
    return cfg.lr * 0.1 ** sum(epoch >= m * cfg.epochs for m in (0.5, 0.75))


def _batches(n: int, batch_size: int, generator: torch.Generator) -> tuple[Tensor, ...]:
    """A seeded permutation in batches; an incomplete last batch is dropped unless it is the only one."""
    parts = torch.randperm(n, generator=generator).split(batch_size)
    return parts[:-1] if len(parts) > 1 and len(parts[-1]) < batch_size else parts


def train(
    cfg: TrainConfig,
    device: str | torch.device = "cpu",
    *,
    download: bool = False,
    progress: Progress | None = None,
) -> Checkpoint:
    """Train ``cfg`` from scratch with SGD + momentum; return the checkpoint (not saved).

    ``progress`` receives one line per epoch. Deterministic for a given config and device.
    """
    from study import data, models
    from taxonomy import __version__

    start = time.perf_counter()
    cfg = resolve(cfg)
    dev = _device(device)
    splits = data.load(cfg.dataset, cfg.data_root, cfg.split_seed, download).to(dev)
    kwargs = dict(
        in_channels=splits.in_channels, num_classes=splits.num_classes, image_size=splits.image_size
    )
    with _deterministic(cfg.seed, dev):
        model = models.build(cfg.model, **kwargs).to(dev)
        history = _fit(model, cfg, splits.train.x, splits.train.y, progress)
    results = {k: evaluate(model, *getattr(splits, k)) for k in ("train", "eval", "test")}
    import torchvision

    return Checkpoint(
        arch=cfg.model,
        arch_kwargs=kwargs,
        dataset=cfg.dataset,
        seed=cfg.seed,
        splits=SplitInfo(
            cfg.split_seed, splits.sizes(), splits.fingerprint(), list(splits.mean), list(splits.std)
        ),
        state_dict={k: v.detach().cpu() for k, v in model.state_dict().items()},
        accuracy={k: acc for k, (acc, _) in results.items()},
        loss={k: loss for k, (_, loss) in results.items()},
        config=asdict(cfg),
        config_hash=config_hash(cfg),
        history=history,
        versions={
            "prunetax": __version__,
            "torch": str(torch.__version__),
            "torchvision": str(torchvision.__version__),
            "python": platform.python_version(),
        },
        device=str(dev),
        wall_time_s=time.perf_counter() - start,
    )


def _fit(
    model: nn.Module, cfg: TrainConfig, x: Tensor, y: Tensor, progress: Progress | None
) -> list[dict[str, float]]:
    """The SGD loop; returns per-epoch mean training loss/accuracy and final learning rate."""
    gen = torch.Generator().manual_seed(cfg.seed)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    steps = len(_batches(len(y), cfg.batch_size, torch.Generator())) * cfg.epochs
    step, history = 0, []
    model.train()
    for epoch in range(cfg.epochs):
        loss_sum = torch.zeros((), dtype=torch.float64, device=x.device)
        correct = torch.zeros((), dtype=torch.int64, device=x.device)
        seen = 0
        for idx in _batches(len(y), cfg.batch_size, gen):
            lr = _lr_at(cfg, epoch, step, steps)
            for group in opt.param_groups:
                group["lr"] = lr
            idx = idx.to(x.device)
            xb, yb = augment_batch(x[idx], cfg.augment, gen), y[idx]
            out = model(xb)
            loss = F.cross_entropy(out, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += loss.detach().double() * len(yb)
            correct += (out.detach().argmax(1) == yb).sum()
            seen += len(yb)
            step += 1
        row = {
            "epoch": epoch + 1,
            "loss": loss_sum.item() / seen,
            "accuracy": correct.item() / seen,
            "lr": lr,
        }
        if not math.isfinite(row["loss"]):
            raise PrunetaxError(
                f"training {cfg.model} diverged in epoch {epoch + 1} (loss {row['loss']}); "
                "try a smaller --lr."
            )
        history.append(row)
        if progress:
            progress(
                f"epoch {epoch + 1}/{cfg.epochs}: loss {row['loss']:.4f}, "
                f"train accuracy {100 * row['accuracy']:.2f}%, lr {lr:.3g}"
            )
    return history


def load_or_train(
    cfg: TrainConfig,
    cache_dir: str | Path,
    device: str | torch.device = "cpu",
    *,
    download: bool = False,
    progress: Progress | None = None,
) -> tuple[Checkpoint, Path]:
    """The cached checkpoint of ``cfg`` if there is one, else train it and cache it."""
    path = checkpoint_path(cfg, cache_dir)
    if path.exists():
        return Checkpoint.load(path), path
    ckpt = train(cfg, device, download=download, progress=progress)
    return ckpt, ckpt.save(path)
