"""A synthetic results store with realistic shapes, for analysis tests and benchmarks.

Curves follow ``acc(s) = ref - (ref - chance) * sigmoid((s - knee) / width)`` with a knee
that depends on the signal's components (so component effects exist) and on the seed
(so there is noise to test statistics on). Written through ``study.store.Store`` like a
real sweep, so every file has the real schema.

Options exercise the newer columns: ``random_draws`` independent draws of ``random`` per
seed (``draw``), ``sum_signals`` run a second time on the coupled network (``tiny_resnet``)
under the ``sum`` aggregation (a protocol variant, with knees moved), and ``oracle_steps``
rank tables along the oracle's own trajectory (``step``). Every trial records ``n_test``,
``aggregation`` and ``units_per_step``; the defaults write what the store held before.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import shutil
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from functools import cache
from pathlib import Path

import numpy as np

from study.curves import curve_auc, sparsity_at_drop
from study.store import Store
from taxonomy.equivalence import distinct, representative
from taxonomy.spec import parse

__all__ = ["make_store", "knee_of", "EFFECT", "REPORT_SIGNALS", "rich_report"]

EFFECT = {  # points of sparsity each component option adds to the knee (the paper's findings hold)
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
        "centered": 0.5,
    },
    "reduction": {"sum": -5.0, "l1": 2.0, "l2": 3.0, "abs_sum": 4.0, "sqr_sum": 0.0},
    "scaling": {
        "none": 0.0,
        "l1": 2.0,
        "l2": 3.0,
        "l0": -1.0,
        "l0_active": -1.0,
        "weights_removed": 8.0,
        "macs_removed": 6.0,
    },
}


def knee_of(signal: str) -> float:
    """The synthetic signal's curve knee (sparsity, %) before noise."""
    spec = parse(signal)
    if spec.is_reference:
        return {"random": 25.0, "oracle": 70.0}.get(spec.id, 35.0)  # other references: 35
    parts = dict(zip(EFFECT, (c.id for c in spec.components), strict=True))
    return 40.0 + sum(EFFECT[axis][opt] for axis, opt in parts.items())


def _key(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:24]


REPORT_SIGNALS = [
    "activation-taylor2_gn-abs_sum-weights_removed",  # best_gradient
    "weight-value-l2-weights_removed",  # best_weight
    "activation-taylor-abs_sum-l2",  # taylor_fo
    "weight-value-l1-none",  # l1_filter
    "activation-taylor-l2-weights_removed",
    "activation-value-l2-none",
    "weight-gradient-l1-l2",
    "activation-apoz-sum-l0",  # apoz
    "weight-taylor-abs_sum-l2",
    "activation-value-abs_sum-weights_removed",
    "random",
    "oracle",
]
"""The signals of the report tests: the paper's best, four literature aliases, the references."""

COUPLED = "tiny_resnet"
"""The synthetic network with coupled units (residual adds): the one a ``sum`` variant runs on."""
N_TEST = {"tiny_cnn": 360, "tiny_resnet": 360}


def _sum_shift(signal: str) -> float:
    """How the ``sum`` aggregation moves a knee: layer-normalised scalings suffer most."""
    spec = parse(signal)
    if spec.is_reference:
        return 0.0
    return -6.0 if spec.components[3].id in ("l1", "l2") else -2.0


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
    random_draws: int = 1,
    sum_signals: Sequence[str] = (),
    oracle_steps: int = 1,
    params: dict | None = None,
) -> Store:
    """Write a synthetic store; ``signals`` default: 20 distinct cells + aliases + random + oracle.

    ``random_draws`` trials of ``random`` per seed; ``sum_signals`` again under the ``sum``
    aggregation on :data:`COUPLED` (when it is among ``models``); ``oracle_steps`` steps of
    rank tables (0 = the unpruned network, k = after the oracle's k-th prune); ``params`` extra
    protocol parameters (in ``protocol_json`` and the run_key: e.g. ``{"k": 3}``, a variant).
    """
    rng = np.random.default_rng(seed)
    if signals is None:
        picked = [s.id for s in distinct()[::18]][:20]
        signals = [*picked, "best_gradient", "best_weight", "taylor_fo", "l1_filter", "random", "oracle"]
    signals = list(dict.fromkeys(parse(s).id for s in signals))
    variants = list(dict.fromkeys(parse(s).id for s in sum_signals))
    store = Store(root)
    now = datetime.now(UTC)
    for model in models:
        ref = 99.0 if model == "tiny_cnn" else 97.5
        for s in range(seeds):
            for signal in signals:
                for draw in range(random_draws if signal == "random" else 1):
                    _trial(store, rng, model, s, signal, ref, steps, protocol, now, draw=draw, params=params)
            for signal in variants if model == COUPLED else ():
                _trial(store, rng, model, s, signal, ref, steps, protocol, now, aggregation="sum")
            if rank_tables:
                _rank_tables(store, rng, model, s, signals, oracle_steps)
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
    *,
    draw: int = 0,
    aggregation: str = "pooled",
    params: dict | None = None,
) -> None:
    shift = _sum_shift(signal) if aggregation == "sum" else 0.0
    knee = knee_of(signal) + shift + rng.normal(0, 2.0)
    sparsity = np.concatenate([[0.0], np.cumsum(rng.uniform(1.5, 4.5, steps))])
    sparsity = np.minimum(sparsity, 99.0)
    acc = ref - (ref - 10.0) / (1 + np.exp(-(sparsity - knee) / 4.0)) + rng.normal(0, 0.3, steps + 1)
    acc[0] = ref
    extra = ((draw,) if draw else ()) + ((aggregation,) if aggregation != "pooled" else ())
    extra += tuple(sorted((params or {}).items()))
    run_key = _key(model, seed, signal, protocol, *extra)
    rows = _step_rows(rng, run_key, sparsity, acc, ref, protocol)
    trial = _trial_row(run_key, model, seed, signal, protocol, aggregation, now, params) | {
        "reference_acc": ref,
        "n_steps": steps,
        "draw": draw,
        "n_test": N_TEST.get(model, 360),
    }
    trial.update({f"sparsity_at_{d}": sparsity_at_drop(sparsity, acc, ref, d) for d in (1, 2, 5, 10)})
    trial.update(
        macs_sparsity_at_5=sparsity_at_drop(0.8 * sparsity, acc, ref, 5),
        auc=curve_auc(sparsity, acc, ref),
        final_sparsity=float(sparsity[-1]),
        final_acc=float(acc[-1]),
        retrain_steps_at_5=0,
        oracle_evals=sum(r["oracle_evals"] or 0 for r in rows) if rows[-1]["oracle_evals"] else None,
    )
    store.write_trial(trial, rows)


_INITIAL_WEIGHTS = 20000


def _step_rows(
    rng: np.random.Generator, run_key: str, sparsity: np.ndarray, acc: np.ndarray, ref: float, protocol: str
) -> list[dict]:
    """The ``steps`` rows of one synthetic curve."""
    return [
        {
            "run_key": run_key,
            "step": k,
            "pruned": f"features.0:{k}" if k else "",
            "n_pruned": int(k > 0),
            "units_remaining": 80 - k,
            "channels_remaining": 80 - k,
            "weights_remaining": int(_INITIAL_WEIGHTS * (1 - sparsity[k] / 100)),
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
            "oracle_evals": 5 if k and protocol in ("myopic", "best_of_n") else None,
        }
        for k in range(len(sparsity))
    ]


def _trial_row(
    run_key: str,
    model: str,
    seed: int,
    signal: str,
    protocol: str,
    aggregation: str,
    now: datetime,
    params: dict | None = None,
) -> dict:
    """The identity, protocol and bookkeeping columns of one synthetic ``trials`` row."""
    spec = parse(signal)
    comps = dict.fromkeys(("sig_input", "sig_pointwise", "sig_reduction", "sig_scaling"))
    if not spec.is_reference:
        comps = dict(zip(comps, (c.id for c in spec.components), strict=True))
    protocol_json = {"name": protocol, "aggregation": aggregation, "channels_per_step": 1.0, "tap": "output"}
    protocol_json.update(params or {})
    return {
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
        "protocol_json": json.dumps(protocol_json),
        "spec_json": "{}",
        "tap": "output",
        "stop_reason": "nothing left to prune",
        "initial_weights": _INITIAL_WEIGHTS,
        "initial_macs": 100000,
        "initial_units": 80,
        "wall_s": 1.0,
        "unit_size": 1,
        "prunetax_version": "0.1.0",
        "device": "cpu",
        "host": "synthetic",
        "started_at": now,
        "finished_at": now,
        "trial_version": 2,
        "aggregation": aggregation,
        "units_per_step": 1,
        "tie_seed": seed,
        "node": "synthetic",
    }


def _rank_tables(
    store: Store, rng: np.random.Generator, model: str, seed: int, signals: list[str], steps: int = 1
) -> None:
    """Oracle and unit scores at steps 0..steps-1 of the oracle's trajectory: at step k the
    k least important units are gone, the losses drift and every signal agrees less."""
    units = 24
    layers = [f"features.{3 * (u // 8)}" for u in range(units)]
    base = rng.gamma(2.0, 0.05, units)
    key = _key("rank", model, seed)
    common = {"run_key": key, "model": model, "dataset": "digits", "base_seed": seed, "seed": seed}
    order = np.argsort(base, kind="stable")
    oracle_rows, rows = [], []
    for k in range(steps):
        active = np.sort(order[k:])
        oracle = base[active] * (1 + 0.1 * k) + (rng.gamma(2.0, 0.01, len(active)) if k else 0.0)
        step = {"step": k} if steps > 1 else {}
        oracle_rows += [
            {
                **common,
                **step,
                "unit": int(u),
                "unit_name": f"{layers[u]}:{u % 8}",
                "layer": layers[u],
                "loss_change": float(v),
            }
            for u, v in zip(active, oracle, strict=True)
        ]
        for signal in signals:
            quality = np.clip(knee_of(signal) / 80.0, 0.05, 0.95) * (1 - 0.15 * k)
            noisy = quality * oracle / oracle.std() + (1 - quality) * rng.normal(size=len(active))
            rows += [
                {
                    **common,
                    **step,
                    "tap": "output",
                    "level": "unit",
                    "signal": signal,
                    "layer": layers[u],
                    "channel": int(u) % 8,
                    "unit": int(u),
                    "score": float(v),
                }
                for u, v in zip(active, noisy, strict=True)
            ]
    store.write("oracle", key, oracle_rows)
    store.write("scores", key, rows)


@cache
def rich_report() -> tuple[Store, object]:
    """One store shaped like the demo's and its report, built once per test process (the
    report tests of several modules share it): every :data:`REPORT_SIGNALS` under
    ``sensitivity`` on two networks x 3 seeds with 5 draws of ``random``, six of them again
    under the ``sum`` aggregation on the coupled network, and a few under ``retrain``
    (2 seeds, 3 draws). Returns the store and the :class:`analysis.report.ReportResult`."""
    from analysis.report import build_report

    folder = Path(tempfile.mkdtemp(prefix="prunetax-rich-report-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    store = make_store(
        folder / "store",
        signals=REPORT_SIGNALS,
        seeds=3,
        steps=25,
        random_draws=5,
        sum_signals=REPORT_SIGNALS[:6],
    )
    retrain = [*REPORT_SIGNALS[:4], "random"]
    make_store(
        store.root,
        signals=retrain,
        seeds=2,
        steps=20,
        protocol="retrain",
        seed=1,
        random_draws=3,
        rank_tables=False,
    )
    return store, build_report(store, folder / "report", top=10)
