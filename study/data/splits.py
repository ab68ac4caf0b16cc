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


def split_indices(
    n_train: int, n_test: int, seed: int, eval_size: int | float, test_size: int | float
) -> dict[str, Tensor]:
    """Seeded, sorted, disjoint indices covering ``range(n_train + n_test)``.

    With an official test set (``n_test > 0``) it is the test split and ``eval_size``
    examples are drawn from the training pool; otherwise ``test_size`` then ``eval_size``
    examples are drawn from the whole set. Sizes may be counts or fractions of the pool.
    """
    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n_train, generator=gen)
    if n_test > 0:
        test = torch.arange(n_train, n_train + n_test)
    else:
        n = _count(test_size, n_train, "test_size")
        test, perm = perm[:n], perm[n:]
    n_eval = _count(eval_size, len(perm), "eval_size")
    out = {"train": perm[n_eval:], "eval": perm[:n_eval], "test": test}
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
