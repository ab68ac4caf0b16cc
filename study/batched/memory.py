"""How many trajectories fit in one pass: sized from free device memory, halved on overflow.

A statistics pass of M trajectories holds M copies of every statistic (per-example weight
gradients of ResNet-20 on 256 images alone are ~0.3 GB per trajectory), so M is fitted to
the memory this process may use: the free memory of its GPU (what PyTorch's allocator
holds but does not use counts as free), at most its ``share`` of the card (a work unit
holding half a GPU fills half of it), times :data:`SAFETY`. The bytes one trajectory
needs are measured on its first pass (the peak allocated above the start, on a GPU; the
size of its statistics times :data:`CPU_OVERHEAD`, on the CPU). An out-of-memory error
halves the size and the pass is run again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import torch
from torch import Tensor

__all__ = ["SAFETY", "CPU_OVERHEAD", "MAX_SIZE", "images_per_pass", "fit", "peak_bytes", "halving", "nbytes"]

T = TypeVar("T")

SAFETY = 0.7
"""Share of the usable memory a pass may fill (scoring and evaluation need the rest)."""

CPU_OVERHEAD = 3
"""On the CPU (no allocator statistics): a pass peaks at about this many times its results."""

MAX_SIZE = 1024
"""Upper bound on trajectories per pass."""

_IMAGES = {"cuda": 16384, "cpu": 1024}
"""Stacked examples per evaluation forward: the CPU's is the lockstep evaluation's batch."""


def images_per_pass(device: torch.device) -> int:
    """Examples stacked into one evaluation forward on ``device`` (halved on overflow)."""
    return _IMAGES.get(device.type, _IMAGES["cpu"])


def _usable(device: torch.device, share: float) -> int:
    if device.type == "cuda":
        free, total = torch.cuda.mem_get_info(device)
        allocated = torch.cuda.memory_allocated(device)
        usable = free + torch.cuda.memory_reserved(device) - allocated
        return int(min(usable, share * total - allocated))
    import psutil

    return int(psutil.virtual_memory().available * share)


def fit(per_trajectory: int, device: torch.device, share: float = 1.0) -> int:
    """Trajectories per pass that fit in ``share`` of ``device``'s usable memory."""
    return max(1, min(MAX_SIZE, int(SAFETY * _usable(device, share)) // max(1, per_trajectory)))


def nbytes(obj: object) -> int:
    """Bytes of every tensor in ``obj`` (nested lists, tuples, dicts and dataclasses)."""
    if isinstance(obj, Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(nbytes(v) for v in obj.values())
    if isinstance(obj, list | tuple):
        return sum(nbytes(v) for v in obj)
    if hasattr(obj, "__dataclass_fields__"):
        return sum(nbytes(getattr(obj, f)) for f in obj.__dataclass_fields__)
    return 0


@contextmanager
def peak_bytes(device: torch.device) -> Iterator[list[int]]:
    """Measures the peak memory allocated on a GPU above the start of the block (into the
    yielded one-element list when the block ends; 0 off a GPU)."""
    out = [0]
    if device.type != "cuda":
        yield out
        return
    torch.cuda.synchronize(device)
    start = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    yield out
    torch.cuda.synchronize(device)
    out[0] = max(0, torch.cuda.max_memory_allocated(device) - start)


def halving(fn: Callable[[int], T], size: int) -> tuple[T, int]:
    """``(fn(size), size)``, halving ``size`` after each out-of-memory error (down to 1, which
    raises); the size that worked is returned so that later calls start from it."""
    while True:
        try:
            return fn(size), size
        except torch.OutOfMemoryError:
            if size <= 1:
                raise
            size //= 2
            torch.cuda.empty_cache()
