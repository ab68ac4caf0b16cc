"""Trials: the unit of a study. ``TrialSpec`` is data; ``run_trials`` is a pure function
from specs to records that knows nothing of Ray (the sweep adapts it).

A trial is (model, dataset, base-model seed, trial seed, signal, protocol). Its
``run_key`` hashes the canonical spec with the code and schema versions, so the same
spec always maps to the same key and is skipped once stored. Trials that differ only
in their signal form one *work unit* and run in lockstep (:mod:`study.trajectory`).
"""

from __future__ import annotations

import hashlib
import json
import platform
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from study.curves import DROPS, curve_auc, sparsity_at_drop
from study.groups import build_groups
from study.protocols import Protocol
from study.retrain import RetrainSettings
from study.store.schema import SCHEMA_VERSION
from study.trajectory import Setup, run_protocol
from taxonomy import __version__
from taxonomy.equivalence import representative
from taxonomy.errors import PrunetaxError
from taxonomy.spec import parse

__all__ = [
    "TRIAL_VERSION",
    "TrialSpec",
    "TrialRecord",
    "Base",
    "load_base",
    "run_trials",
    "headline",
    "failed_record",
]

TRIAL_VERSION = 1
DEFAULT_CACHE = "results/models"


@dataclass(frozen=True)
class TrialSpec:
    """One trial. ``signal`` is normalised to its canonical id (aliases accepted)."""

    model: str
    dataset: str
    signal: str
    protocol: Protocol = field(default_factory=Protocol)
    seed: int = 0
    base_seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "signal", parse(self.signal).id)
        if not isinstance(self.protocol, Protocol):
            raise PrunetaxError(f"`protocol` must be a Protocol; got {self.protocol!r}.")
        for name in ("seed", "base_seed"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise PrunetaxError(f"`{name}` must be a whole number >= 0; got {value!r}.")

    def canonical(self) -> dict[str, object]:
        """The JSON-ready identity of the trial (what ``run_key`` hashes)."""
        return {
            "model": self.model,
            "dataset": self.dataset,
            "signal": self.signal,
            "protocol": self.protocol.as_dict(),
            "seed": self.seed,
            "base_seed": self.base_seed,
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
            Protocol.from_dict(dict(data["protocol"])),
            int(data["seed"]),
            int(data["base_seed"]),
        )

    @property
    def run_key(self) -> str:
        blob = json.dumps(self.canonical(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:24]

    @property
    def unit_key(self) -> str:
        """Trials with the same unit key differ only in their signal."""
        spec = self.canonical()
        del spec["signal"]
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


@dataclass
class Base:
    """A trained base model with its data, ready for trials."""

    model: torch.nn.Module
    checkpoint: dict
    splits: object  # study.data.Splits
    reference_acc: float  # test accuracy (percent) measured here


def load_base(
    model: str,
    dataset: str,
    base_seed: int,
    *,
    cache_dir: str | Path = DEFAULT_CACHE,
    data_root: str | None = None,
    device: str = "cpu",
    download: bool = False,
    checkpoint: str | Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> Base:
    """The base model (cached, trained on first use) and its splits on ``device``."""
    from study import data
    from study.train import TrainConfig, evaluate, load_checkpoint, load_or_train, model_from_checkpoint

    if checkpoint is not None:
        ckpt = load_checkpoint(checkpoint)
        if ckpt["dataset"] != dataset:
            raise PrunetaxError(
                f"checkpoint {checkpoint} was trained on {ckpt['dataset']!r}, not {dataset!r}; "
                f"pass --dataset {ckpt['dataset']} or a checkpoint for {dataset}."
            )
    else:
        cfg = TrainConfig(model=model, dataset=dataset, seed=base_seed, data_root=data_root)
        ckpt, _ = load_or_train(cfg, cache_dir, device, download=download, progress=progress)
    split_seed = ckpt.get("splits", {}).get("seed", 0)
    splits = data.load(dataset, data_root, split_seed, download)
    expected = ckpt.get("splits", {}).get("fingerprint")
    if expected is not None and splits.fingerprint() != expected:
        raise PrunetaxError(
            f"the {dataset} splits differ from those the checkpoint was trained with "
            "(different files or split sizes); retrain the base model."
        )
    # channels-last tensors: measured 2.3x faster evaluation of the tiny default on this CPU
    # (max-pooling in NCHW is slow); results are the same up to float rounding
    splits = splits.to(device, torch.channels_last)
    net = model_from_checkpoint(ckpt, device).to(memory_format=torch.channels_last)
    acc, _ = evaluate(net, splits.test.x, splits.test.y)
    return Base(net, ckpt, splits, 100.0 * acc)


def saliency_batches(splits, protocol: Protocol, seed: int) -> tuple[list[tuple[Tensor, Tensor]], list[int]]:  # noqa: ANN001
    """The saliency data of a trial: ``eval_batches`` x ``eval_batch_size`` examples of the eval
    split, drawn once with ``seed`` and fixed for the whole trial, and their dataset indices."""
    n_eval, need = splits.eval.y.shape[0], protocol.eval_batches * protocol.eval_batch_size
    if need > n_eval:
        raise PrunetaxError(
            f"the protocol asks for {protocol.eval_batches} x {protocol.eval_batch_size} = "
            f"{need} eval examples but the eval split has {n_eval}; lower eval_batch_size."
        )
    idx = torch.randperm(n_eval, generator=torch.Generator().manual_seed(seed))[:need]
    x, y = splits.eval.x[idx.to(splits.eval.x.device)], splits.eval.y[idx.to(splits.eval.y.device)]
    b = protocol.eval_batch_size
    batches = [(x[i : i + b], y[i : i + b]) for i in range(0, need, b)]
    return batches, splits.indices["eval"][idx].tolist()


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


def _trial_row(spec: TrialSpec, base: Base | None, status: str, **extra: object) -> dict[str, object]:
    sig = parse(spec.signal)
    comps = dict.fromkeys(("sig_input", "sig_pointwise", "sig_reduction", "sig_scaling"))
    if not sig.is_reference:
        comps = dict(zip(comps, (c.id for c in sig.components), strict=True))
    now = datetime.now(UTC)
    row = {
        "run_key": spec.run_key,
        "schema_version": SCHEMA_VERSION,
        "status": status,
        "model": spec.model,
        "dataset": spec.dataset,
        "seed": spec.seed,
        "base_seed": spec.base_seed,
        "signal": spec.signal,
        **comps,
        "sig_class": representative(sig).id,
        "protocol": spec.protocol.name,
        "protocol_json": json.dumps(spec.protocol.as_dict(), sort_keys=True),
        "spec_json": json.dumps(spec.canonical(), sort_keys=True),
        "tap": spec.protocol.tap,
        "prunetax_version": __version__,
        "torch_version": str(torch.__version__),
        "host": platform.node(),
        "finished_at": now,
    }
    if base is not None:
        row.update(
            reference_acc=base.reference_acc,
            base_checkpoint=base.checkpoint.get("config_hash"),
            split_fingerprint=base.checkpoint.get("splits", {}).get("fingerprint"),
        )
    row.update(extra)
    return row


def failed_record(
    spec: TrialSpec, error: str | BaseException, base: Base | None = None, **extra: object
) -> TrialRecord:
    """A ``failed`` record: the error text and, for an exception, its traceback."""
    if isinstance(error, BaseException):
        text, tb = f"{type(error).__name__}: {error}", "".join(traceback.format_exception(error))
    else:
        text, tb = error, ""
    return TrialRecord(spec, _trial_row(spec, base, "failed", error=text, traceback=tb, **extra), [])


def _units(specs: Sequence[TrialSpec]) -> list[list[TrialSpec]]:
    units: dict[str, list[TrialSpec]] = {}
    for spec in specs:
        units.setdefault(spec.unit_key, []).append(spec)
    return list(units.values())


def run_trials(
    specs: Sequence[TrialSpec],
    *,
    cache_dir: str | Path = DEFAULT_CACHE,
    data_root: str | None = None,
    device: str = "cpu",
    download: bool = False,
    on_record: Callable[[TrialRecord], None] | None = None,
) -> list[TrialRecord]:
    """Run ``specs`` (work units in lockstep); failures become ``failed`` records.

    ``on_record`` is called as soon as each trial ends (to write it to a store).
    """
    records = []
    for unit in _units(specs):
        for record in _run_unit(unit, cache_dir, data_root, device, download):
            records.append(record)
            if on_record is not None:
                on_record(record)
    return records


def _run_unit(
    unit: list[TrialSpec], cache_dir: str | Path, data_root: str | None, device: str, download: bool
) -> list[TrialRecord]:
    first, started = unit[0], datetime.now(UTC)
    t0 = time.perf_counter()
    base = None
    try:
        base = load_base(
            first.model,
            first.dataset,
            first.base_seed,
            cache_dir=cache_dir,
            data_root=data_root,
            device=device,
            download=download,
        )
        setup = _setup(first, base)
        results = run_protocol(setup, [parse(s.signal) for s in unit])
    except Exception as err:  # every trial of the unit failed the same way
        return [failed_record(spec, err, base, started_at=started, device=device) for spec in unit]
    wall = time.perf_counter() - t0
    records = []
    for spec, result in zip(unit, results, strict=True):
        steps = [{"run_key": spec.run_key, **row} for row in result.rows]
        extra = {
            "started_at": started,
            "device": device,
            "wall_s": wall,
            "unit_size": len(unit),
            "eval_examples": json.dumps(setup.eval_examples),
            "stop_reason": result.stop_reason,
            "initial_weights": steps[0]["weights_remaining"],
            "initial_macs": steps[0]["macs_remaining"],
            "initial_units": steps[0]["units_remaining"],
            **{
                f"t_{k}": float(sum(r[f"t_{k}"] for r in result.rows))
                for k in ("stats", "score", "prune", "retrain", "eval")
            },
        }
        if result.error is not None:
            records.append(
                TrialRecord(spec, _trial_row(spec, base, "failed", error=result.error, **extra), steps)
            )
            continue
        extra.update(headline(result.rows, base.reference_acc))
        records.append(TrialRecord(spec, _trial_row(spec, base, "ok", **extra), steps))
    return records


def _setup(spec: TrialSpec, base: Base) -> Setup:
    from study import models

    splits, protocol = base.splits, spec.protocol
    groups = build_groups(base.model, tuple(splits.train.x.shape[1:]))
    batches, examples = saliency_batches(splits, protocol, spec.seed)
    hp = models.hyperparams(spec.model)
    steps = protocol.retrain_steps if protocol.retrain_steps is not None else (hp.retrain_steps or 32)
    wd = (
        protocol.retrain_weight_decay
        if protocol.retrain_weight_decay is not None
        else hp.retrain_weight_decay
    )
    settings = RetrainSettings(
        steps, protocol.retrain_lr, protocol.retrain_momentum, wd, protocol.retrain_batch_size
    )
    probe = None
    if protocol.name == "characterise":
        g = torch.Generator().manual_seed(spec.seed)
        pidx = torch.randperm(splits.train.y.shape[0], generator=g)[:1024].to(splits.train.x.device)
        probe = (splits.train.x[pidx], splits.train.y[pidx])
    return Setup(
        model=base.model,
        groups=groups,
        protocol=protocol,
        eval_batches=batches,
        test=(splits.test.x, splits.test.y),
        train=(splits.train.x, splits.train.y),
        reference_acc=base.reference_acc,
        seed=spec.seed,
        retrain=settings,
        train_probe=probe,
        eval_examples=examples,
    )
