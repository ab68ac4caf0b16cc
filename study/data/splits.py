"""Train / eval / test splits held in memory, normalised with train statistics.

``eval`` is held out from the training pool and used only to compute saliency; ``test``
is the dataset's official test set where it has one, else a seeded held-out part.
Indices address the dataset's canonical order (official training examples first, then
official test examples), so a result can record exactly which examples each split holds.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from taxonomy.errors import PrunetaxError

__all__ = ["Split", "Splits", "split_indices", "make_splits"]


class Split(NamedTuple):
    """One split: ``x`` float32 [N, C, H, W] (normalised), ``y`` int64 [N]."""

    x: Tensor
    y: Tensor

    def to(
        self, device: str | torch.device, memory_format: torch.memory_format = torch.preserve_format
    ) -> Split:
        return Split(self.x.to(device, memory_format=memory_format), self.y.to(device))


@dataclass(frozen=True)
class Splits:
    """A dataset loaded for a study: three splits plus what results must record about them."""

    name: str
    train: Split
    eval: Split
    test: Split
    in_channels: int
    num_classes: int
    image_size: int
    seed: int
    indices: dict[str, Tensor] = field(repr=False)
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    classes: tuple[str, ...] = ()

    def sizes(self) -> dict[str, int]:
        return {k: int(getattr(self, k).y.shape[0]) for k in ("train", "eval", "test")}

    def fingerprint(self) -> str:
        """Short hash of the exact split indices: equal fingerprints = identical splits."""
        h = hashlib.sha256()
        for key in ("train", "eval", "test"):
            h.update(key.encode())
            h.update(self.indices[key].numpy().astype("<i8").tobytes())
        return h.hexdigest()[:16]

    def to(
        self, device: str | torch.device, memory_format: torch.memory_format = torch.preserve_format
    ) -> Splits:
        """The same splits with tensors on ``device`` (indices stay on the CPU), in ``memory_format``."""
        moved = {k: getattr(self, k).to(device, memory_format) for k in ("train", "eval", "test")}
        return Splits(**{**self.__dict__, **moved})


def _count(size: int | float, total: int, what: str) -> int:
    n = round(size * total) if isinstance(size, float) else size
    if not 0 <= n < total:
        raise PrunetaxError(f"`{what}` must leave examples for training (0 <= n < {total}); got {size!r}.")
    return n


def _take(labels: Tensor, pool: Tensor, n: int, gen: torch.Generator) -> tuple[Tensor, Tensor]:
    """A stratified draw of ``n`` of the ``pool`` indices and the rest.

    Each class gets its share of ``n`` (largest remainders first, ties by class order),
    its members taken in a seeded random order: the held-out split has the pool's class
    proportions, whatever the seed.
    """
    if n == 0:
        return pool[:0], pool
    pool = pool[torch.randperm(len(pool), generator=gen)]
    classes, counts = torch.unique(labels[pool], return_counts=True)
    exact = counts.double() * n / len(pool)
    share = exact.floor().long()
    rest = torch.argsort(-(exact - share), stable=True)[: n - int(share.sum())]
    share[rest] += 1
    taken = [pool[labels[pool] == c][: int(k)] for c, k in zip(classes.tolist(), share.tolist(), strict=True)]
    chosen = torch.cat(taken)
    keep = torch.ones(len(labels), dtype=torch.bool)
    keep[chosen] = False
    return chosen, pool[keep[pool]]


def split_indices(
    labels: Tensor, n_train: int, seed: int, eval_size: int | float, test_size: int | float
) -> dict[str, Tensor]:
    """Seeded, stratified, sorted, disjoint indices covering ``range(len(labels))``.

    ``labels`` are in the dataset's canonical order, official training examples (the first
    ``n_train``) first. With an official test set (``n_train < len(labels)``) it is the test
    split and ``eval_size`` examples are drawn from the training pool; otherwise
    ``test_size`` then ``eval_size`` examples are drawn from the whole set. Sizes may be
    counts or fractions of the pool; every draw keeps the class proportions.
    """
    gen = torch.Generator().manual_seed(seed)
    labels = torch.as_tensor(labels).long()
    pool = torch.arange(n_train)
    if n_train < len(labels):
        test = torch.arange(n_train, len(labels))
    else:
        test, pool = _take(labels, pool, _count(test_size, n_train, "test_size"), gen)
    held, train = _take(labels, pool, _count(eval_size, len(pool), "eval_size"), gen)
    out = {"train": train, "eval": held, "test": test}
    return {k: v.sort().values for k, v in out.items()}


def make_splits(
    name: str,
    x: Tensor,
    y: Tensor,
    indices: dict[str, Tensor],
    *,
    seed: int,
    image_size: int | None = None,
    num_classes: int | None = None,
    classes: tuple[str, ...] = (),
) -> Splits:
    """Scale uint8 ``x`` to [0, 1], resize (bilinear), normalise per channel with train stats."""
    xf = x.float().div_(255.0)
    if image_size is not None and image_size != xf.shape[-1]:
        xf = F.interpolate(xf, size=(image_size, image_size), mode="bilinear", align_corners=False)
    train = xf[indices["train"]]
    mean = train.mean(dim=(0, 2, 3))
    std = train.std(dim=(0, 2, 3)).clamp_min(1e-6)
    xf.sub_(mean[:, None, None]).div_(std[:, None, None])
    parts = {k: Split(xf[v].contiguous(), y[v].contiguous()) for k, v in indices.items()}
    return Splits(
        name=name,
        **parts,
        in_channels=xf.shape[1],
        num_classes=num_classes or int(y.max()) + 1,
        image_size=xf.shape[-1],
        seed=seed,
        indices=indices,
        mean=tuple(mean.tolist()),
        std=tuple(std.tolist()),
        classes=classes,
    )
