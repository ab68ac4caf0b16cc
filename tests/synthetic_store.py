"""A synthetic results store with realistic shapes, for analysis tests and benchmarks.

Curves follow ``acc(s) = ref - (ref - chance) * sigmoid((s - knee) / width)`` with a knee
that depends on the signal's components (so component effects exist) and on the seed
(so there is noise to test statistics on). Written through ``study.store.Store`` like a
real sweep, so every file has the real schema.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from study.curves import curve_auc, sparsity_at_drop
from study.store import Store
from taxonomy.equivalence import distinct, representative
from taxonomy.spec import parse

__all__ = ["make_store", "knee_of"]

_EFFECT = {  # points of sparsity each component option adds to the knee
    "input": {"weight": 0.0, "activation": 3.0},
    "pointwise": {
        "value": 4.0,
        "gradient": -6.0,
        "taylor": 2.0,
        "hessian_lm": 1.0,
        "hessian_gn": 0.0,
        "taylor2_lm": 2.5,
        "taylor2_gn": 3.0,
        "apoz": -4.0,
    },
    "reduction": {"sum": -5.0, "l1": 2.0, "l2": 3.0, "abs_sum": 4.0, "sqr_sum": 0.0},
    "scaling": {"none": 0.0, "l1": 2.0, "l2": 3.0, "l0": -1.0, "l0_active": -1.0, "weights_removed": 8.0},
}


def knee_of(signal: str) -> float:
    """The synthetic signal's curve knee (sparsity, %) before noise."""
    spec = parse(signal)
    if spec.is_reference:
        return {"random": 25.0, "oracle": 70.0}[spec.id]
    parts = dict(zip(_EFFECT, (c.id for c in spec.components), strict=True))
    return 40.0 + sum(_EFFECT[axis][opt] for axis, opt in parts.items())


def _key(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:24]


def make_store(
    root: str | Path,
    *,
    models: Sequence[str] = ("tiny_cnn", "tiny_resnet"),
    signals: Sequence[str] | None = None,
    seeds: int = 3,
    steps: int = 30,
    protocol: str = "sensitivity",
    rank_tables: bool = True,
    seed: int = 0,
) -> Store:
    """Write a synthetic store; ``signals`` default: 20 distinct cells + aliases + random + oracle."""
    rng = np.random.default_rng(seed)
    if signals is None:
        picked = [s.id for s in distinct()[::18]][:20]
        signals = [*picked, "best_gradient", "best_weight", "taylor_fo", "l1_filter", "random", "oracle"]
    signals = list(dict.fromkeys(parse(s).id for s in signals))
    store = Store(root)
    now = datetime.now(UTC)
    for model in models:
        ref = 99.0 if model == "tiny_cnn" else 97.5
        for s in range(seeds):
            for signal in signals:
                _trial(store, rng, model, s, signal, ref, steps, protocol, now)
            if rank_tables:
                _rank_tables(store, rng, model, s, signals)
    return store


def _trial(
    store: Store,
    rng: np.random.Generator,
    model: str,
    seed: int,
    signal: str,
    ref: float,
    steps: int,
    protocol: str,
    now: datetime,
) -> None:
    spec = parse(signal)
    knee = knee_of(signal) + rng.normal(0, 2.0)
    sparsity = np.concatenate([[0.0], np.cumsum(rng.uniform(1.5, 4.5, steps))])
    sparsity = np.minimum(sparsity, 99.0)
    acc = ref - (ref - 10.0) / (1 + np.exp(-(sparsity - knee) / 4.0)) + rng.normal(0, 0.3, steps + 1)
    acc[0] = ref
    run_key = _key(model, seed, signal, protocol)
    initial = 20000
    rows = [
        {
            "run_key": run_key,
            "step": k,
            "pruned": f"features.0:{k}" if k else "",
            "n_pruned": int(k > 0),
            "units_remaining": 80 - k,
            "channels_remaining": 80 - k,
            "weights_remaining": int(initial * (1 - sparsity[k] / 100)),
            "macs_remaining": int(100000 * (1 - 0.8 * sparsity[k] / 100)),
            "sparsity": float(sparsity[k]),
            "macs_sparsity": float(0.8 * sparsity[k]),
            "test_acc": float(acc[k]),
            "test_loss": float(0.05 + (ref - acc[k]) / 30),
            "eval_loss": float(0.05 + (ref - acc[k]) / 30),
            "score": float(rng.normal()),
            "retrain_steps": 0 if protocol == "sensitivity" else 10,
            "t_stats": 0.01,
            "t_score": 0.001,
            "t_prune": 0.001,
            "t_retrain": 0.0,
            "t_eval": 0.01,
        }
        for k in range(steps + 1)
    ]
    comps = dict.fromkeys(("sig_input", "sig_pointwise", "sig_reduction", "sig_scaling"))
    if not spec.is_reference:
        comps = dict(zip(comps, (c.id for c in spec.components), strict=True))
    trial = {
        "run_key": run_key,
        "schema_version": 1,
        "status": "ok",
        "model": model,
        "dataset": "digits",
        "seed": seed,
        "base_seed": seed,
        "signal": signal,
        **comps,
        "sig_class": representative(spec).id,
        "protocol": protocol,
        "protocol_json": json.dumps({"name": protocol}),
        "spec_json": "{}",
        "tap": "output",
        "reference_acc": ref,
        "n_steps": steps,
        "stop_reason": "nothing left to prune",
        "initial_weights": initial,
        "initial_macs": 100000,
        "initial_units": 80,
        "wall_s": 1.0,
        "unit_size": 1,
        "prunetax_version": "0.1.0",
        "device": "cpu",
        "host": "synthetic",
        "started_at": now,
        "finished_at": now,
    }
    trial.update({f"sparsity_at_{d}": sparsity_at_drop(sparsity, acc, ref, d) for d in (1, 2, 5, 10)})
    trial.update(
        macs_sparsity_at_5=sparsity_at_drop(0.8 * sparsity, acc, ref, 5),
        auc=curve_auc(sparsity, acc, ref),
        final_sparsity=float(sparsity[-1]),
        final_acc=float(acc[-1]),
        retrain_steps_at_5=0,
    )
    store.write_trial(trial, rows)


def _rank_tables(store: Store, rng: np.random.Generator, model: str, seed: int, signals: list[str]) -> None:
    units = 24
    layers = [f"features.{3 * (u // 8)}" for u in range(units)]
    oracle = rng.gamma(2.0, 0.05, units)
    key = _key("rank", model, seed)
    common = {"run_key": key, "model": model, "dataset": "digits", "base_seed": seed, "seed": seed}
    store.write(
        "oracle",
        key,
        [
            {
                **common,
                "unit": u,
                "unit_name": f"{layers[u]}:{u % 8}",
                "layer": layers[u],
                "loss_change": float(oracle[u]),
            }
            for u in range(units)
        ],
    )
    rows = []
    for signal in signals:
        quality = np.clip(knee_of(signal) / 80.0, 0.05, 0.95)
        noisy = quality * oracle / oracle.std() + (1 - quality) * rng.normal(size=units)
        rows += [
            {
                **common,
                "tap": "output",
                "level": "unit",
                "signal": signal,
                "layer": layers[u],
                "channel": u % 8,
                "unit": u,
                "score": float(noisy[u]),
            }
            for u in range(units)
        ]
    store.write("scores", key, rows)
