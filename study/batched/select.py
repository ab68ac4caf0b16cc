"""Choosing the execution engine of a pruning run: lockstep (one network state per pass) or
batched (many trajectories' states per pass, :mod:`study.batched.engine`).

An engine is how a protocol's work is executed, never what it computes: both give the
same rows (tested), so the choice is no part of a trial's identity (its ``run_key``). It
is made per process, for a scope (:func:`using`): a sweep's work unit takes it from the
environment (``$PRUNETAX_TRAJECTORIES_PER_PASS``, with its share of its GPU), and so does any
run outside a scope; a library caller may wrap its calls instead. Under the
default ``auto``, a run on a GPU is batched (there one small network's pass is launch-bound)
and a run on the CPU keeps the lockstep engine (there the work is compute-bound: stacking
16 trajectories of tiny_cnn measured 19.2 ms per trajectory against 18.7 ms alone).

Engines are registered (:data:`ENGINES`); each says which runs it supports. The batched
engine runs the greedy protocols without retraining (``sensitivity``) that choose by
ranking (the default chooser); retraining protocols, whose weights diverge, and choosers
that measure candidates on the live network, run on the lockstep engine.

This module imports no torch.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from taxonomy.errors import PrunetaxError
from taxonomy.registry import Registry

if TYPE_CHECKING:
    from torch import nn

    from study.protocols.base import Protocol
    from study.trajectory import Run, Setup

__all__ = ["ENV_VAR", "Batching", "Engine", "ENGINES", "current", "using", "engine_for", "batched_here"]

ENV_VAR = "PRUNETAX_TRAJECTORIES_PER_PASS"
"""Names a sweep's batching: ``auto`` (default), ``off``, ``on`` or a whole number >= 1."""

RunFactory = Callable[..., "Run"]
"""``factory(setup, signals, aggregation, tap, on_step, draws) -> Run``."""


@dataclass(frozen=True)
class Batching:
    """Attributes: ``engine`` (``auto``: batched on a GPU, lockstep on the CPU; or a registered
    engine name), ``size`` (trajectories per statistics pass; None = as many as the device's
    free memory holds), ``share`` (the fraction of the device this process may fill: a work
    unit holding half a GPU sizes its passes to half of it)."""

    engine: str = "auto"
    size: int | None = None
    share: float = 1.0

    @classmethod
    def parse(cls, value: object, share: float = 1.0) -> Batching:
        """From a setting: ``"auto"``, ``"off"`` (lockstep), ``"on"`` (batched, size from free
        memory) or a whole number >= 1, also as text (batched, that many per pass)."""
        named = {"auto": cls("auto", None, share), "off": cls("lockstep", None, share)}
        named["on"] = cls("batched", None, share)
        if isinstance(value, str) and value.strip() in named:
            return named[value.strip()]
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
            return cls("batched", value, share)
        raise PrunetaxError(
            f'trajectories per pass (${ENV_VAR}) must be "auto", "off", "on" or a whole number >= 1; '
            f"got {value!r}.",
        )

    @classmethod
    def from_env(cls, share: float = 1.0) -> Batching:
        """The choice named by ``$PRUNETAX_TRAJECTORIES_PER_PASS`` (default ``auto``): how a sweep's
        work units are batched (Ray workers inherit the environment of the driver or of
        ``ray start``)."""
        return cls.parse(os.environ.get(ENV_VAR, "auto"), share)


_CURRENT: ContextVar[Batching | None] = ContextVar("prunetax_batching", default=None)


def current() -> Batching:
    """The batching choice in force here: the enclosing :func:`using` scope's, else the one
    ``$PRUNETAX_TRAJECTORIES_PER_PASS`` names (default ``auto``), so that a single-process run
    (``prunetax run``, a library call) can be switched like a sweep."""
    return _CURRENT.get() or Batching.from_env()


@contextmanager
def using(batching: Batching) -> Iterator[Batching]:
    """Run the enclosed protocol runs (and oracle scorings) with ``batching``."""
    token = _CURRENT.set(batching)
    try:
        yield batching
    finally:
        _CURRENT.reset(token)


@dataclass(frozen=True)
class Engine:
    """A registered engine: ``supports(protocol, retraining)`` says whether it can run a
    protocol, ``factory(protocol, batching)`` gives the :class:`~study.trajectory.Run` class
    (or a partial of it) the protocol then drives."""

    name: str
    summary: str
    supports: Callable[[Protocol, bool], bool]
    factory: Callable[[Protocol, Batching], RunFactory]


ENGINES: Registry[Engine] = Registry("engine")


def _lockstep(protocol: Protocol, batching: Batching) -> RunFactory:
    from study.trajectory import Run

    return Run


def _batched(protocol: Protocol, batching: Batching) -> RunFactory:
    from study.batched.engine import BatchedRun

    return partial(BatchedRun, protocol=protocol, batching=batching)


def _ranks_without_retraining(protocol: Protocol, retraining: bool) -> bool:
    from study.protocols.greedy import Greedy

    plain = isinstance(protocol, Greedy) and type(protocol).chooser is Greedy.chooser
    # mean replacement changes weights at every prune (study/mean_replacement.py): one state per pass
    return plain and not retraining and not protocol.mean_replacement


ENGINES.add("lockstep", Engine("lockstep", "one network state per pass", lambda p, r: True, _lockstep))
ENGINES.add(
    "batched",
    Engine("batched", "many trajectories' states per pass (gates)", _ranks_without_retraining, _batched),
)


def on_gpu(model: nn.Module) -> bool:
    """True if ``model``'s parameters live on a CUDA device."""
    return next(model.parameters()).device.type == "cuda"


def _resolved(batching: Batching, model: nn.Module) -> str:
    if batching.engine == "auto":
        return "batched" if on_gpu(model) else "lockstep"
    return batching.engine


def engine_for(protocol: Protocol, setup: Setup, retrainer: Any) -> RunFactory:
    """The ``Run`` factory that executes ``protocol`` on ``setup`` under the batching in force:
    its engine when that supports the protocol, else the lockstep engine."""
    batching = current()
    engine = ENGINES.get(_resolved(batching, setup.model))
    if not engine.supports(protocol, retrainer is not None):
        engine = ENGINES.get("lockstep")
    return engine.factory(protocol, batching)


def batched_here(model: nn.Module) -> bool:
    """True if work on ``model`` is batched under the choice in force (the oracle asks)."""
    return _resolved(current(), model) != "lockstep"
