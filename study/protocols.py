"""Pruning protocols as data (SPEC §3): the paper's greedy loop and one-shot pruning.

``sensitivity`` prunes with no retraining; ``retrain`` runs a fixed number of SGD steps
after every prune; ``characterise`` retrains only when train accuracy fell below 90% of
its initial value, until it recovers (capped); ``oneshot`` ranks once on the unpruned
network and cuts to each target sparsity. Every parameter that changes a trajectory
lives here, so it is part of the trial's run_key.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace

from study.graph import TAPS
from taxonomy.errors import PrunetaxError, invalid

__all__ = ["PROTOCOLS", "Protocol"]

PROTOCOLS = ("sensitivity", "retrain", "characterise", "oneshot")
GROUP_REDUCTIONS = ("sum", "mean", "max")


@dataclass(frozen=True)
class Protocol:
    """Parameters of the pruning loop.

    Attributes
    ----------
    name
        ``sensitivity`` | ``retrain`` | ``characterise`` | ``oneshot``.
    channels_per_step
        Units pruned per step: a count (>= 1) or a fraction of the initial units (< 1).
    test_interval
        Evaluate test accuracy every this many steps (and always at the last step).
    stop_acc
        Stop once test accuracy (percent) falls below this; None = prune until nothing
        is left (one unit per group is always kept, so the network stays connected).
    target_sparsity
        Stop once weight sparsity (percent) reaches this.
    targets
        ``oneshot`` only: target sparsities (percent) to cut to and evaluate.
    retrain_steps
        SGD steps after each prune (``retrain``) or the cap (``characterise``); None = the
        model's default from the paper.
    eval_batches, eval_batch_size
        Saliency data per step (paper: 2 x 128), drawn once per trial from the eval split.
    tap
        Activation tap point: ``output`` or ``conv`` (SPEC §2.1).
    group_reduction
        How member-channel scores of a coupled unit combine: ``sum`` (default), ``mean``
        or ``max``.
    """

    name: str = "sensitivity"
    channels_per_step: float = 1
    test_interval: int = 1
    stop_acc: float | None = None
    target_sparsity: float | None = None
    targets: tuple[float, ...] = field(default=())
    retrain_steps: int | None = None
    retrain_lr: float = 1e-3
    retrain_momentum: float = 0.9
    retrain_weight_decay: float | None = None
    retrain_batch_size: int = 64
    eval_batches: int = 2
    eval_batch_size: int = 128
    tap: str = "output"
    group_reduction: str = "sum"

    def __post_init__(self) -> None:
        if self.name not in PROTOCOLS:
            raise invalid("protocol", self.name, PROTOCOLS)
        if self.tap not in TAPS:
            raise invalid("tap", self.tap, TAPS)
        if self.group_reduction not in GROUP_REDUCTIONS:
            raise invalid("group_reduction", self.group_reduction, GROUP_REDUCTIONS)
        cps = self.channels_per_step
        if not (cps >= 1 and float(cps).is_integer()) and not 0 < cps < 1:
            raise PrunetaxError(
                f"`channels_per_step` must be a whole count >= 1 or a fraction in (0, 1); got {cps!r}."
            )
        _positive("test_interval", self.test_interval)
        _positive("eval_batches", self.eval_batches)
        _positive("eval_batch_size", self.eval_batch_size)
        _positive("retrain_batch_size", self.retrain_batch_size)
        for name in ("stop_acc", "target_sparsity"):
            _percent(name, getattr(self, name))
        object.__setattr__(self, "targets", tuple(float(t) for t in self.targets))
        for t in self.targets:
            _percent("targets", t)
        if self.name == "oneshot" and not self.targets:
            raise PrunetaxError(
                "`targets` must list at least one target sparsity for protocol oneshot "
                "(e.g. targets = [10, 20, 30])."
            )
        if self.name != "oneshot" and self.targets:
            raise PrunetaxError(f"`targets` applies to protocol oneshot only; got it for {self.name}.")
        if self.retrain_steps is not None and self.retrain_steps < 0:
            raise PrunetaxError(f"`retrain_steps` must be >= 0; got {self.retrain_steps}.")

    @property
    def retrains(self) -> bool:
        return self.name in ("retrain", "characterise")

    def units_per_step(self, total_units: int) -> int:
        """Units pruned per step for a network with ``total_units`` units."""
        if self.channels_per_step >= 1:
            return int(self.channels_per_step)
        return max(1, round(self.channels_per_step * total_units))

    def as_dict(self) -> dict[str, object]:
        """Canonical, JSON-ready form (part of a trial's run_key)."""
        d = asdict(self)
        d["targets"] = list(self.targets)
        d["channels_per_step"] = float(self.channels_per_step)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> Protocol:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise PrunetaxError(
                f"unknown protocol parameter(s) {', '.join(unknown)}; valid: {', '.join(sorted(known))}."
            )
        return cls(**data)  # type: ignore[arg-type]

    def with_(self, **changes: object) -> Protocol:
        return replace(self, **changes)


def _positive(name: str, value: int) -> None:
    if not isinstance(value, int) or value < 1:
        raise PrunetaxError(f"`{name}` must be a whole number >= 1; got {value!r}.")


def _percent(name: str, value: float | None) -> None:
    if value is not None and not 0 <= value <= 100:
        raise PrunetaxError(f"`{name}` must be a percentage in [0, 100]; got {value!r}.")
