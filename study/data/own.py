"""Datasets of one's own: an in-memory ``loader()`` registered from Python, or named by
import string (``"mypkg.data:load_mine"``) so that every Ray worker can load it itself."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from study.data.sources import DATASETS, DatasetEntry, Raw
from taxonomy.errors import PrunetaxError

__all__ = ["from_loader", "register_dataset"]


def from_loader(name: str, loader: Callable[[], tuple], summary: str, **sizes: object) -> DatasetEntry:
    """A dataset whose ``loader()`` returns ``(x, y)``: images [N, C, H, W], labels [N]."""

    def read(_root: Path, _download: bool, _size: int | None) -> Raw:
        x, y = loader()
        x, y = torch.as_tensor(x), torch.as_tensor(y).long()
        if x.dim() != 4 or y.dim() != 1 or len(x) != len(y):
            raise PrunetaxError(
                f"dataset {name!r}: the loader must return images [N, C, H, W] and labels [N]; "
                f"got {tuple(x.shape)} and {tuple(y.shape)}."
            )
        if x.is_floating_point():  # [0, 1] floats, stored as the uint8 every reader gives
            x = (x.clamp(0, 1) * 255).round().to(torch.uint8)
        return Raw(x, y, len(y))

    return DatasetEntry(name, read, sizes.pop("num_classes", None), summary=summary, **sizes)


def register_dataset(
    name: str,
    loader: Callable[[], tuple],
    *,
    num_classes: int | None = None,
    eval_size: int | float = 0.1,
    test_size: int | float = 0.2,
    image_size: int | None = None,
    summary: str = "",
) -> DatasetEntry:
    """Register a dataset of one's own: ``loader()`` returns ``(x, y)`` in memory.

    The splits are drawn like every other dataset's (stratified, per seed: ``test_size``
    then ``eval_size``, counts or fractions). Sweeps on Ray workers need the dataset by
    import string instead (``"mypkg.data:load_mine"``).
    """
    sizes = dict(num_classes=num_classes, eval_size=eval_size, test_size=test_size, image_size=image_size)
    return DATASETS.add(name, from_loader(name, loader, summary or name, **sizes))
