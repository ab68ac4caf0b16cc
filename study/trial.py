"""Trials: the unit of a study, as data. ``TrialSpec`` says what to run; ``TrialRecord`` holds
what it produced (one ``trials`` row and its ``steps`` rows), ready for the store.

A trial is (model, dataset, base-model seed, trial seed, signal, protocol). Its
``run_key`` hashes the canonical spec with the code and schema versions, so the same
spec always maps to the same key and is skipped once stored. :mod:`study.execute` runs
trials; this module knows nothing of running.
"""

from __future__ import annotations

import json
import platform
import traceback
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import torch

from study.curves import DROPS, curve_auc, sparsity_at_drop
from study.keys import stable_key
from study.protocols import Protocol, make_protocol, protocol_from_dict
from study.store.schema import SCHEMA_VERSION
from taxonomy import __version__
from taxonomy.equivalence import Context, representative
from taxonomy.errors import PrunetaxError
from taxonomy.spec import parse

__all__ = ["TRIAL_VERSION", "TrialSpec", "TrialRecord", "headline", "trial_row", "failed_record"]

TRIAL_VERSION = 2
"""The engine's result version: bump when a change alters what a trial computes, so that
results of the old code are never mixed with new ones (their run_keys differ, and the
analysis keeps only the newest version present). 2: pooled unit scores, seeded tie
breaks, independent (stratified, per-seed) splits, several random draws."""


@dataclass(frozen=True)
class TrialSpec:
    """One trial. ``signal`` is normalised to its canonical id (aliases accepted)."""

    model: str
    dataset: str
    signal: str
    protocol: Protocol = field(default_factory=make_protocol)
    seed: int = 0
    base_seed: int = 0
    draw: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "signal", parse(self.signal).id)
        if not isinstance(self.protocol, Protocol):
            raise PrunetaxError(f"`protocol` must be a Protocol; got {self.protocol!r}.")
        self.protocol.check_signal(parse(self.signal))
        for name in ("seed", "base_seed", "draw"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise PrunetaxError(f"`{name}` must be a whole number >= 0; got {value!r}.", key=name)
        if self.draw and not parse(self.signal).randomised:
            raise PrunetaxError(
                f"`draw` numbers the draws of a randomised signal (random); {self.signal} has one draw.",
                key="draw",
            )

    def canonical(self) -> dict[str, object]:
        """The JSON-ready identity of the trial (what ``run_key`` hashes)."""
        return {
            "model": self.model,
            "dataset": self.dataset,
            "signal": self.signal,
            "protocol": self.protocol.as_dict(),
            "seed": self.seed,
            "base_seed": self.base_seed,
            "draw": self.draw,
            "trial_version": TRIAL_VERSION,
            "schema_version": SCHEMA_VERSION,
            "prunetax": __version__,
        }

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> TrialSpec:
        """Inverse of :meth:`canonical` (version fields are ignored)."""
        return cls(
            str(data["model"]),
            str(data["dataset"]),
            str(data["signal"]),
            protocol_from_dict(dict(data["protocol"])),
            int(data["seed"]),
            int(data["base_seed"]),
            int(data.get("draw", 0)),
        )

    @property
    def run_key(self) -> str:
        return stable_key(self.canonical())

    @property
    def unit_key(self) -> str:
        """Trials with the same unit key differ only in their signal or draw (they run in lockstep)."""
        spec = self.canonical()
        del spec["signal"], spec["draw"]
        return json.dumps(spec, sort_keys=True)

    def validate_names(self) -> None:
        """Check the model and dataset names (clear error with suggestions)."""
        from study import data, models

        models.entry(self.model)
        data.entry(self.dataset)


@dataclass
class TrialRecord:
    """What a trial produced: one ``trials`` row and its ``steps`` rows."""

    spec: TrialSpec
    trial: dict[str, object]
    steps: list[dict[str, object]]

    @property
    def ok(self) -> bool:
        return self.trial["status"] == "ok"


def headline(steps: list[dict[str, object]], reference: float) -> dict[str, object]:
    """Headline metrics of one trajectory (SPEC §4)."""
    x = np.array([s["sparsity"] for s in steps], dtype=float)
    macs = np.array([s["macs_sparsity"] for s in steps], dtype=float)
    acc = np.array([s["test_acc"] for s in steps], dtype=float)
    out: dict[str, object] = {f"sparsity_at_{int(d)}": sparsity_at_drop(x, acc, reference, d) for d in DROPS}
    out["macs_sparsity_at_5"] = sparsity_at_drop(macs, acc, reference, 5.0)
    out["auc"] = curve_auc(x, acc, reference)
    evaluated = np.isfinite(acc)
    out["final_sparsity"] = float(x[-1])
    out["final_acc"] = float(acc[evaluated][-1]) if evaluated.any() else float("nan")
    retrain = np.array([s["retrain_steps"] for s in steps])
    out["retrain_steps_at_5"] = int(retrain[x <= out["sparsity_at_5"] + 1e-9].sum())
    out["n_steps"] = len(steps) - 1
    return out


def trial_row(spec: TrialSpec, base, status: str, context=None, **extra: object) -> dict[str, object]:  # noqa: ANN001
    """The ``trials`` row of ``spec`` (``base``: the :class:`study.base_model.Base`, or None;
    ``context``: the network's :class:`taxonomy.equivalence.Context`, None if unknown)."""
    sig = parse(spec.signal)
    comps = dict.fromkeys(("sig_input", "sig_pointwise", "sig_reduction", "sig_scaling"))
    if not sig.is_reference:
        comps = dict(zip(comps, (c.id for c in sig.components), strict=True))
    protocol = spec.protocol
    row = {
        "run_key": spec.run_key,
        "schema_version": SCHEMA_VERSION,
        "trial_version": TRIAL_VERSION,
        "status": status,
        "model": spec.model,
        "dataset": spec.dataset,
        "seed": spec.seed,
        "base_seed": spec.base_seed,
        "draw": spec.draw,
        "signal": spec.signal,
        **comps,
        "sig_class": representative(sig, context or Context(aggregation=spec.protocol.aggregation)).id,
        "protocol": protocol.name,
        "protocol_json": json.dumps(protocol.as_dict(), sort_keys=True),
        "spec_json": json.dumps(spec.canonical(), sort_keys=True),
        "tap": protocol.tap,
        "aggregation": protocol.aggregation,
        "prunetax_version": __version__,
        "torch_version": str(torch.__version__),
        "host": platform.node(),
        "finished_at": datetime.now(UTC),
    }
    if base is not None:
        row.update(
            reference_acc=base.reference_acc,
            base_checkpoint=base.checkpoint.config_hash,
            split_fingerprint=base.checkpoint.splits.fingerprint,
            n_test=int(base.splits.test.y.shape[0]),
        )
    row.update(extra)
    return row


def failed_record(spec: TrialSpec, error: str | BaseException, base=None, **extra: object) -> TrialRecord:  # noqa: ANN001
    """A ``failed`` record: the error text and, for an exception, its traceback."""
    if isinstance(error, BaseException):
        text, tb = f"{type(error).__name__}: {error}", "".join(traceback.format_exception(error))
    else:
        text, tb = error, ""
    return TrialRecord(spec, trial_row(spec, base, "failed", error=text, traceback=tb, **extra), [])
