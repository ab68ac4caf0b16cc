"""The report's section on CUCB and gating against static pruning: matched-MAC accuracy and its
interval computed by hand, figures written, the section absent from stores without them."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from analysis import dynamic
from analysis.report import build_report
from study.store import Store
from tests.synthetic_store import _trial_row, make_store

T975_2 = 4.302652729911275  # t(0.975, 2): three seeds


def _dynamic_trial(
    store: Store, protocol: str, seed: int, points: list[tuple[float, float, float]], params: dict
) -> None:
    """One cucb/gated trial whose steps are (MACs executed %, test_acc, finetune_acc) points."""
    now = datetime.now(UTC)
    key = f"{protocol}-{seed}"
    row = _trial_row(key, "tiny_cnn", seed, "random", protocol, "pooled", now, params)
    row.update(reference_acc=99.0, n_steps=len(points) - 1, draw=0, n_test=360, started_from="scratch")
    row.update(train_steps=100, train_macs=30, train_macs_dense=100, train_macs_saved=70.0 + seed)
    steps = []
    for k, (macs, acc, tuned) in enumerate(points):
        gated = protocol == "gated" and k > 0  # percentiles of per-image MACs: macs - 5 + p/10 (% of dense)
        spread = {f"macs_p{p}": 1000.0 * (macs - 5 + p / 10) if gated else None for p in (5, 25, 50, 75, 95)}
        steps.append(
            {
                "run_key": key,
                "step": k,
                "sparsity": 100.0 - macs,
                "macs_sparsity": 100.0 - macs,
                "macs_remaining": int(1000 * macs),
                "weights_remaining": 100,
                "test_acc": acc,
                "finetune_acc": tuned if k else None,
                **spread,
                "retrain_steps": 0,
                **{f"t_{t}": 0.0 for t in ("stats", "score", "prune", "retrain", "eval")},
            }
        )
    store.write_trial(row, steps)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Store:
    root = tmp_path_factory.mktemp("dyn") / "store"
    store = make_store(
        root,
        models=("tiny_cnn",),
        signals=["best_weight", "l1_filter", "random"],
        steps=20,
        rank_tables=False,
    )
    for seed, shift in enumerate((-1.0, 0.0, 1.0)):
        cucb = [
            (100.0, 90.0 + shift, math.nan),
            (50.0, 96.0 + shift, 97.0 + shift),
            (20.0, 94.0 + shift, 95.0),
        ]
        _dynamic_trial(store, "cucb", seed, cucb, {"keep": 0.5})
        gated = [(100.0, 99.0, math.nan), (60.0, 98.0 + shift, math.nan), (30.0, 96.0, math.nan)]
        _dynamic_trial(store, "gated", seed, gated, {"costs": [0.1, 1.0]})
    return store


@pytest.fixture(scope="module")
def report(store, tmp_path_factory):
    return build_report(store, tmp_path_factory.mktemp("dyn-report"))


def test_matched_mac_accuracy_and_intervals_are_computed_by_hand(report):
    table = pd.read_csv(report.out_dir / "figures" / "dynamic_matched__tiny_cnn-digits.csv")
    at = table.set_index(["method", "macs"])
    cucb = at.loc[("CUCB", 50.0)]  # logged points: 95, 96, 97
    assert cucb["mean"] == pytest.approx(96.0) and cucb["n"] == 3 and cucb["span"] == 0
    assert cucb["ci_high"] - cucb["mean"] == pytest.approx(T975_2 * 1.0 / math.sqrt(3), rel=1e-5)
    # 25 % lies between the logged 50 % and 20 % points: 96 + (94 - 96) * (25 - 50) / (20 - 50) per seed
    assert at.loc[("CUCB", 25.0), "mean"] == pytest.approx(96.0 + (94.0 - 96.0) * 25 / 30)
    tuned = at.loc[("CUCB + fine-tune", 50.0)]
    assert tuned["mean"] == pytest.approx(97.0) and tuned["min"] == 96.0 and tuned["max"] == 98.0
    assert at.loc[("CUCB + fine-tune", 75.0), "mean"] == pytest.approx(
        (90.0 + 97.0) / 2
    )  # step 0: as trained
    gated = at.loc[("gating", 50.0)]  # between (60, 98 + s) and (30, 96): 98 + s - (2 + s) / 3
    assert gated["mean"] == pytest.approx(98.0 - 2.0 / 3) and gated["span"] == 30.0
    assert math.isnan(at.loc[("gating", 10.0), "mean"]) and at.loc[("gating", 10.0), "n"] == 0


def test_static_curves_are_the_trials_own_points(store, report):
    table = pd.read_csv(report.out_dir / "figures" / "dynamic_matched__tiny_cnn-digits.csv")
    static = table[table["method"] == "sensitivity: l1_filter"].set_index("macs")
    from analysis import frames

    trials = frames.load_trials(store)
    keys = trials[(trials["signal"] == "weight-value-l1-none")].sort_values("seed")["run_key"]
    steps = frames.load_steps(store, run_keys=keys)
    values = []
    for key in keys:
        s = steps[steps["run_key"] == key]
        x, y = 100 - s["macs_sparsity"].to_numpy(), s["test_acc"].to_numpy()
        order = np.argsort(x)
        values.append(np.interp(50.0, x[order], y[order]) if x.min() <= 50 else np.nan)
    assert static.loc[50.0, "mean"] == pytest.approx(np.nanmean(values))
    assert static.loc[50.0, "n"] == np.isfinite(values).sum() >= 1


def test_the_section_and_its_figures_are_written(report):
    text = (report.out_dir / "summary.md").read_text()
    assert "## Training-time and per-input channel selection against static pruning" in text
    assert "#### Accuracy at matched MACs" in text and "Highest accuracy at equal MACs" in text
    assert "| CUCB | scratch | 100 | 71.0 (min 70.0, max 72.0) | 3 |" in text
    for name in ("dynamic_curves__tiny_cnn-digits", "dynamic_gate_spread__tiny_cnn-digits"):
        assert [p.suffix for p in report.figures[name]] == [".png", ".svg"]
        assert all(p.stat().st_size > 1000 for p in report.figures[name])
        assert f"figures/{name}.png" in (report.out_dir / "index.html").read_text()


def test_no_section_without_dynamic_trials():
    from types import SimpleNamespace

    from analysis.report.document import Document
    from analysis.report.dynamic_section import dynamic_selection

    b = SimpleNamespace(
        data={"trials": pd.DataFrame({"protocol": ["sensitivity", "oneshot"]})}, doc=Document()
    )
    dynamic_selection(b)
    assert b.doc.blocks == []


def test_methods_pick_the_best_static_signals_and_the_references():
    trials = pd.DataFrame(
        {
            "run_key": list("abcdef"),
            "base_seed": 0,
            "seed": 0,
            "draw": 0,
            "protocol": ["sensitivity"] * 4 + ["retrain", "cucb"],
            "protocol_label": ["sensitivity"] * 4 + ["retrain", "cucb"],
            "protocol_json": ["{}"] * 5 + ['{"keep": 0.5}'],
            "signal": [
                "weight-value-l1-none",
                "weight-value-l2-weights_removed",
                "random",
                "oracle",
                "weight-value-l1-none",
                "random",
            ],
        }
    )
    order = {
        "sensitivity": ["weight-value-l2-weights_removed", "random", "weight-value-l1-none"],
        "retrain": ["weight-value-l1-none"],
    }
    chosen = dynamic.methods(trials, order, top=1)
    assert chosen["method"].tolist() == [
        "CUCB",
        "CUCB + fine-tune",
        "sensitivity: best_weight",
        "sensitivity: random",
        "sensitivity: oracle",
        "retrain: l1_filter",
    ]
    assert chosen["kind"].tolist() == ["dynamic", "dynamic", "static", "reference", "reference", "static"]


def test_gate_spread_reads_the_percentiles_per_cost_weight(store):
    from analysis import frames

    trials = frames.load_trials(store)
    chosen = dynamic.methods(trials[trials["protocol"] == "gated"], {})
    steps = frames.load_steps(store, run_keys=chosen["run_key"])
    spread = dynamic.gate_spread(trials, steps, chosen).set_index("cost")
    assert list(spread.index) == [0.1, 1.0]  # step k = the k-th smallest cost weight
    # initial_macs 100,000; macs_p<p> = 1000 (x - 5 + p/10): at step 2 (x = 30) p50 = 30 % of dense
    assert spread.loc[1.0, "p50"] == pytest.approx(30.0) and spread.loc[1.0, "p5"] == pytest.approx(25.5)
    assert spread.loc[0.1, "acc"] == pytest.approx(98.0) and spread.loc[1.0, "mean"] == pytest.approx(30.0)
