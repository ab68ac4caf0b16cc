"""The protocol interface and its registry (SPEC §3).

A protocol is a frozen, validated parameter object (a pydantic dataclass: exact types,
ranges, no unknown keys) that holds only its own parameters and knows how to run a work
unit: ``run(setup, signals, on_step) -> results``. Every parameter is part of the
trial's identity (its ``run_key``), and its field descriptions are the help texts of the
CLI and of the sweep spec. Adding a protocol = one module with one class decorated with
:func:`register_protocol` (see docs/extending.md); nothing else dispatches on names.

Protocol modules import torch-heavy code inside their methods: the command line builds its
options from this registry, and ``prunetax --help`` must not import torch.
"""

from __future__ import annotations

import dataclasses
import functools
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from pydantic import Field
from pydantic.dataclasses import dataclass

from study.params import STRICT, Param, parameters, validated
from study.saliency import EvalBatches, EvalBatchSize, SaliencyData, TapField
from taxonomy.errors import PrunetaxError
from taxonomy.registry import Registry

if TYPE_CHECKING:
    from study.trajectory import Run, Setup, TrajectoryResult
    from taxonomy.spec import SignalSpec

__all__ = [
    "Protocol",
    "PROTOCOLS",
    "register_protocol",
    "make_protocol",
    "protocol_from_dict",
    "owners",
    "all_parameters",
    "Aggregation",
    "running",
]

Aggregation = Literal["pooled", "sum", "mean", "max"]
OnStep = Callable[["TrajectoryResult"], None] | None


@dataclass(frozen=True, config=STRICT)
class Protocol(ABC):
    """Base of every protocol: the saliency data and how a coupled unit's score is formed.

    Subclasses set ``name`` (the registry key), ``summary`` (one line for help texts) and
    implement :meth:`run`.
    """

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    random_only: ClassVar[str] = ""  # why its trials run the signal `random` only ("": any signal)

    tap: TapField = "output"
    eval_batches: EvalBatches = 2
    eval_batch_size: EvalBatchSize = 128
    aggregation: Annotated[
        Aggregation,
        Field(
            description="a coupled unit's score: pooled (the unit as one channel of its members' elements) "
            "| sum | mean | max of its member channels' scores"
        ),
    ] = "pooled"
    mean_replacement: Annotated[
        bool,
        Field(
            description="fold a pruned channel's mean contribution over the eval data into each consumer's "
            "bias (Evci et al. 2018; study/mean_replacement.py) instead of dropping it"
        ),
    ] = False

    _KEYED_IF_SET: ClassVar[frozenset[str]] = frozenset({"mean_replacement"})
    """Parameters added after stores were written: left out of the canonical form (the run_key)
    while at their default, so the trials stored before them keep their keys."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Every protocol's :meth:`run` runs with the protocol in force (:func:`running`): the
        shared machinery (``study.trajectory.Run``) reads the options every protocol has
        (``mean_replacement``) from it, whichever protocol drives it."""
        super().__init_subclass__(**kwargs)
        run = cls.__dict__.get("run")
        if run is not None and not getattr(run, "_in_force", False):
            cls.run = _in_force(run)

    @property
    def saliency(self) -> SaliencyData:
        return SaliencyData(self.tap, self.eval_batches, self.eval_batch_size)

    @abstractmethod
    def run(
        self,
        setup: Setup,
        signals: Sequence[SignalSpec],
        on_step: OnStep = None,
        draws: Sequence[int] | None = None,
    ) -> list[TrajectoryResult]:
        """Run every signal's trajectory on ``setup``; one result per signal, in order.

        ``draws`` numbers the independent draws of randomised signals (``random``): draw d
        seeds the trajectory's generator (:func:`study.trajectory.draw_seed`). The base
        model is left as it was (weights and masks restored).
        """

    def _in_lockstep(
        self,
        setup: Setup,
        signals: Sequence[SignalSpec],
        on_step: OnStep,
        draws: Sequence[int] | None,
        body: Callable[[Run], None],
    ) -> list[TrajectoryResult]:
        """Start a lockstep :class:`~study.trajectory.Run` of ``signals``, let ``body`` drive it,
        and return its results; the run is finished (base model restored) whatever happens."""
        from study import trajectory  # torch-heavy: imported when a protocol runs

        run = trajectory.Run(setup, signals, self.aggregation, self.tap, on_step, draws)
        try:
            run.start()
            body(run)
        finally:
            results = run.finish()
        return results

    def units_per_step(self, total_units: int) -> int | None:
        """Units pruned per greedy step (more than 1 = a coarse run); None if not stepwise."""
        return None

    def check_signal(self, signal: SignalSpec) -> None:
        """Raise a :class:`PrunetaxError` if this protocol cannot run ``signal``: any signal,
        unless :attr:`random_only` says why its trials run ``random`` only."""
        if self.random_only and signal.id != "random":
            raise PrunetaxError(
                f"protocol {self.name} {self.random_only}, so it takes no pruning signal: its trials run the "
                f"signal `random` (each draw an independent run); got `{signal.id}`. Run {self.name} with "
                'signal random (`--signal random`, or signals = ["random"] in its [[runs]] table), or '
                f"another protocol for {signal.id}.",
                key="signal",
            )

    def as_dict(self) -> dict[str, Any]:
        """Canonical, JSON-ready form: ``name`` plus every parameter (part of the run_key)."""
        out: dict[str, Any] = {"name": self.name}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in self._KEYED_IF_SET and value == f.default:
                continue
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    def replace(self, **changes: Any) -> Protocol:
        """A validated copy with some parameters changed."""
        return _validated(type(self), {**self.params(), **changes})

    def params(self) -> dict[str, Any]:
        """The parameters (no name), as given to the constructor."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


_RUNNING: ContextVar[Protocol | None] = ContextVar("prunetax_protocol", default=None)


def running() -> Protocol | None:
    """The protocol whose :meth:`Protocol.run` is in progress here (None outside any)."""
    return _RUNNING.get()


def _in_force(run: Callable) -> Callable:
    """``run`` with its protocol in force for its duration (:func:`running`)."""

    @functools.wraps(run)
    def wrapped(self: Protocol, *args: Any, **kwargs: Any) -> Any:
        token = _RUNNING.set(self)
        try:
            return run(self, *args, **kwargs)
        finally:
            _RUNNING.reset(token)

    wrapped._in_force = True  # type: ignore[attr-defined]
    return wrapped


PROTOCOLS: Registry[type[Protocol]] = Registry("protocol")


def register_protocol(cls: type[Protocol]) -> type[Protocol]:
    """Class decorator: register ``cls`` under ``cls.name``."""
    if not cls.name:
        raise PrunetaxError(f"protocol class {cls.__name__} must set `name`.")
    return PROTOCOLS.add(cls.name, cls)


def _validated(cls: type[Protocol], params: dict[str, Any]) -> Protocol:
    """``cls(**params)``; a parameter of another protocol is named as such."""
    kinds = [p.name for p in parameters(cls)]
    unknown = sorted(set(params) - set(kinds))
    if unknown:
        detail = "; ".join(
            f"`{n}` applies to {', '.join(owners(n))}" if owners(n) else f"`{n}` is no protocol parameter"
            for n in unknown
        )
        message = f"protocol {cls.name}: {detail}. Its parameters: {', '.join(kinds)}."
        raise PrunetaxError(message, key=unknown[0])
    return validated(cls, params, f"protocol {cls.name}")


def owners(param: str) -> list[str]:
    """The protocols that have parameter ``param``, in registration order."""
    return [cls.name for cls in PROTOCOLS.values() if param in {p.name for p in parameters(cls)}]


def all_parameters() -> dict[str, Param]:
    """Every parameter of every registered protocol, by name (first declaration wins)."""
    out: dict[str, Param] = {}
    for cls in PROTOCOLS.values():
        for p in parameters(cls):
            out.setdefault(p.name, p)
    return out


def make_protocol(name: str = "sensitivity", **params: Any) -> Protocol:
    """The protocol ``name`` with ``params`` (validated; unknown names get suggestions)."""
    return _validated(PROTOCOLS.get(name), params)


def protocol_from_dict(data: dict[str, Any]) -> Protocol:
    """Inverse of :meth:`Protocol.as_dict`."""
    params = dict(data)
    return make_protocol(str(params.pop("name", "sensitivity")), **params)
