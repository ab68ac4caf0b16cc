"""The device of a work unit: the GPU Ray assigned to it, and how much of that GPU it holds.

A sweep asks Ray for ``gpus_per_trial`` GPUs per work unit; fractions are allowed and Ray
packs them (with ``0.5``, two work units share each GPU and every GPU of the cluster gets
two). Ray tells a work unit the ids of the GPUs it was given and, by default, narrows
``CUDA_VISIBLE_DEVICES`` to them, so that inside the worker the assigned GPU is
``cuda:0``. Where Ray leaves ``CUDA_VISIBLE_DEVICES`` alone
(``RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES``, or a list set before Ray started),
``cuda:0`` is simply the first GPU of the node. So the device is always derived from the
assigned id's position among the visible devices, never taken as ``cuda:0`` by default;
a spec's ``cuda:N`` names a GPU only outside Ray (``prunetax run``). A work unit's
``share`` of its GPU sizes its batched passes (:mod:`study.batched.memory`), so units that
share a card do not both fill it.

No CUDA call is made here (the scheduling test runs on machines without a GPU).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from taxonomy.errors import PrunetaxError

__all__ = ["Placement", "placement", "place", "pin"]


@dataclass(frozen=True)
class Placement:
    """Where a work unit runs: ``device`` (for torch), the Ray ``gpu_ids`` it was given (empty
    outside Ray or without GPUs) and its ``share`` of the GPU (1 = the whole card)."""

    device: str
    gpu_ids: tuple[str, ...] = ()
    share: float = 1.0


def placement(device: str, gpu_ids: Sequence[object] | None, gpus: float, visible: str | None) -> Placement:
    """The placement of a work unit asking for ``device``, given Ray's assignment: ``gpu_ids``
    (None outside a Ray work unit), ``gpus`` (the GPUs it requested, fractions allowed) and
    ``visible`` (the worker's ``CUDA_VISIBLE_DEVICES``)."""
    ids = tuple(str(i) for i in gpu_ids or ())
    share = min(1.0, gpus) if gpus > 0 else 1.0
    if not device.startswith("cuda") or gpu_ids is None:
        return Placement(device, ids, share)
    if not ids:
        raise PrunetaxError(
            f"device {device!r} in a Ray work unit needs a GPU assigned by Ray: set [resources] "
            "gpus_per_trial > 0 in the sweep spec (a fraction shares a GPU, e.g. 0.5 = two units per GPU)."
        )
    order = [v.strip() for v in (visible or "").split(",") if v.strip()]
    if ids[0] in order:
        return Placement(f"cuda:{order.index(ids[0])}", ids, share)
    if ids[0].isdigit() and not order:
        return Placement(f"cuda:{ids[0]}", ids, share)
    raise PrunetaxError(
        f"Ray assigned GPU {ids[0]}, which CUDA_VISIBLE_DEVICES={visible!r} does not list; start the Ray "
        "workers with the GPUs they may use visible (or leave CUDA_VISIBLE_DEVICES to Ray)."
    )


def _assignment() -> tuple[list[object] | None, float]:
    """Ray's GPU ids and GPU request of this process's work unit; (None, 0) outside one."""
    ray = sys.modules.get("ray")  # only a process that runs inside Ray has imported it
    if ray is None or not ray.is_initialized():
        return None, 0.0
    context = ray.get_runtime_context()
    if context.worker.mode != ray.WORKER_MODE:  # the driver (a test, `prunetax run`): no assignment
        return None, 0.0
    return list(ray.get_gpu_ids()), float(context.get_assigned_resources().get("GPU", 0.0))


def place(device: str) -> Placement:
    """The placement of a work unit in this process asking for ``device`` (see module docstring)."""
    ids, gpus = _assignment()
    return placement(device, ids, gpus, os.environ.get("CUDA_VISIBLE_DEVICES"))


def pin(ctx: dict) -> tuple[dict, Placement]:
    """A worker context (:mod:`study.sweep.work`) whose environment names the assigned device,
    and the placement."""
    placed = place(str(ctx["env"]["device"]))
    return {**ctx, "env": {**ctx["env"], "device": placed.device}}, placed
