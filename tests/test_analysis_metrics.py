"""analysis.frames and analysis.metrics: hand-computed curves, the vectorised metrics
against a per-trial loop, aggregates, bootstrap coverage and the summary tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis.frames import load_rank_tables, load_steps, load_trials
from analysis.metrics import (
    bootstrap_ci,
    curves,
    geometric_mean,
    overall_ranking,
    summarise,
    trial_metrics,
)
from study.curves import curve_auc, sparsity_at_drop
from taxonomy.errors import PrunetaxError
from tests.synthetic_store import make_store

SIGNALS = [
    "weight-value-l2-weights_removed",
    "weight-value-l1-none",
    "activation-taylor-abs_sum-l2",
    "weight-value-sqr_sum-none",
    "random",
    "oracle",
]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return make_store(tmp_path_factory.mktemp("store"), signals=SIGNALS, seeds=3, steps=25)


def _trial(key: str, signal: str = "weight-value-l1-none", ref: float = 90.0, seed: int = 0) -> dict:
    comps = dict(
        zip(("sig_input", "sig_pointwise", "sig_reduction", "sig_scaling"), signal.split("-"), strict=True)
    )
    return dict(
        run_key=key, status="ok", model="m", dataset="d", protocol="p", seed=seed, base_seed=0,
        signal=signal, sig_class=signal, reference_acc=ref, **comps,
    )  # fmt: skip


def _steps(key: str, xs, accs, retrain=None) -> list[dict]:
    retrain = retrain or [0] * len(xs)
    return [
        dict(run_key=key, step=i, sparsity=x, macs_sparsity=0.5 * x, test_acc=a, retrain_steps=r)
        for i, (x, a, r) in enumerate(zip(xs, accs, retrain, strict=True))
    ]


@pytest.fixture
def tiny():
    trials = pd.DataFrame([_trial("A"), _trial("B"), _trial("C"), _trial("D")])
    steps = pd.DataFrame(
        _steps("A", [0, 10, 20], [90, 88, 80], retrain=[0, 5, 5])
        + _steps("B", [0, 30, 60], [90, 89, 88])
        + _steps("C", [0, 10, 20, 30], [90, np.nan, 84, np.nan])
        + _steps("other", [0, 10], [1, 1])
    )
    return trials, steps


# ---------------------------------------------------------------- trial_metrics by hand


def test_sparsity_at_drop_by_hand(tiny):
    trials, steps = tiny
    m = trial_metrics(trials, steps).set_index("run_key")
    # A crosses 85 between (10, 88) and (20, 80): 10 + (88 - 85) * 10 / 8
    assert m.loc["A", "sparsity_at_5"] == pytest.approx(13.75)
    # threshold 89 is crossed between (0, 90) and (10, 88): 0 + 1 * 10 / 2
    assert m.loc["A", "sparsity_at_1"] == pytest.approx(5.0)
    assert m.loc["A", "sparsity_at_2"] == pytest.approx(10.0)  # 88 is not below 88
    assert m.loc["A", "sparsity_at_10"] == pytest.approx(20.0)  # 80 is not below 80: never crosses
    assert m.loc["A", "macs_sparsity_at_5"] == pytest.approx(6.875)  # same curve, x halved
    assert m.loc["B", "sparsity_at_5"] == pytest.approx(60.0)  # never crosses: the last point
    # C: the NaN step at 10 is skipped, so 85 is crossed between (0, 90) and (20, 84)
    assert m.loc["C", "sparsity_at_5"] == pytest.approx(5 * 20 / 6)
    assert m.loc["C", "final_acc"] == 84 and m.loc["C", "final_sparsity"] == 30 and m.loc["C", "n_steps"] == 3
    # AUC of A: trapezoids 10*89 + 10*84, then 80 held to 100 -> (890 + 840 + 6400) / 100
    assert m.loc["A", "auc"] == pytest.approx(81.3)
    assert m.loc["A", "retrain_steps_at_5"] == 5 and m.loc["A", "retrain_steps_at_10"] == 10
    assert m.loc["D"].filter(like="sparsity_at").isna().all()  # no steps at all
    assert "other" not in m.index and list(m.index) == ["A", "B", "C", "D"]
    for d in (1, 2, 5, 10):
        assert m.loc["A", f"sparsity_at_{d}"] == pytest.approx(
            sparsity_at_drop(np.array([0, 10, 20]), np.array([90, 88, 80]), 90.0, d)
        )


def test_trial_metrics_ignores_row_order_and_takes_references(tiny):
    trials, steps = tiny
    base = trial_metrics(trials, steps)
    shuffled = trial_metrics(trials, steps.sample(frac=1, random_state=3))
    pd.testing.assert_frame_equal(base, shuffled)
    by_task = trial_metrics(trials, steps, reference={"m/d/p": 89.0}).set_index("run_key")
    constant = trial_metrics(trials, steps, reference=89.0).set_index("run_key")
    assert by_task.loc["A", "sparsity_at_5"] == constant.loc["A", "sparsity_at_5"]
    # anchored at (0, 89): 84 is crossed between (10, 88) and (20, 80): 10 + 4 * 10 / 8
    assert by_task.loc["A", "sparsity_at_5"] == pytest.approx(15.0)
    with pytest.raises(PrunetaxError, match="tasks"):
        trial_metrics(trials, steps, reference={"other": 1.0})
    custom = trial_metrics(trials, steps, drops=(2.5,))
    assert {"sparsity_at_2.5", "macs_sparsity_at_2.5", "retrain_steps_at_2.5"} <= set(custom)


def test_vectorised_metrics_equal_a_per_trial_loop(store):
    trials, steps = load_trials(store), load_steps(store)
    rng = np.random.default_rng(1)
    steps.loc[rng.random(len(steps)) < 0.25, "test_acc"] = np.nan  # unevaluated steps
    steps = steps.sample(frac=1, random_state=2)
    m = trial_metrics(trials, steps).set_index("run_key")
    assert len(m) == len(trials) == 2 * 3 * len(SIGNALS)
    for key, part in steps.groupby("run_key"):
        part = part.sort_values("step")
        ref = float(trials.set_index("run_key").loc[key, "reference_acc"])
        x, macs, acc = (
            part["sparsity"].to_numpy(),
            part["macs_sparsity"].to_numpy(),
            part["test_acc"].to_numpy(),
        )
        for d in (1, 2, 5, 10):
            assert m.loc[key, f"sparsity_at_{d}"] == pytest.approx(sparsity_at_drop(x, acc, ref, d), abs=1e-9)
            assert m.loc[key, f"macs_sparsity_at_{d}"] == pytest.approx(
                sparsity_at_drop(macs, acc, ref, d), abs=1e-9
            )
        assert m.loc[key, "auc"] == pytest.approx(curve_auc(x, acc, ref), abs=1e-9)


def test_metrics_reproduce_the_stored_headline(store):
    trials = load_trials(store)
    m = trial_metrics(trials, load_steps(store))
    for col in ("sparsity_at_1", "sparsity_at_5", "sparsity_at_10", "macs_sparsity_at_5", "auc"):
        np.testing.assert_allclose(m[col], trials[col], atol=1e-9)


# ---------------------------------------------------------------- frames


def test_frames(store):
    trials = load_trials(store)
    assert trials["run_key"].is_unique
    fam = dict(zip(trials["signal"], trials["family"], strict=False))
    assert fam["random"] == fam["oracle"] == "reference" and fam["weight-value-l1-none"] == "value"
    alias = dict(zip(trials["signal"], trials["alias"], strict=False))
    assert (
        alias["weight-value-l1-none"] == "l1_filter"
        and alias["weight-value-l2-weights_removed"] == "best_weight"
    )
    assert alias["random"] == "" and alias["weight-value-sqr_sum-none"] == ""
    assert set(trials["task"]) == {"tiny_cnn/digits/sensitivity", "tiny_resnet/digits/sensitivity"}
    keys = list(trials["run_key"][:2])
    steps = load_steps(store, run_keys=keys, columns=["sparsity"])
    assert set(steps["run_key"]) == set(keys) and list(steps.columns) == ["run_key", "step", "sparsity"]
    assert (steps.groupby("run_key")["step"].diff().dropna() > 0).all()
    scores, oracle = load_rank_tables(store.root)
    assert (scores["level"] == "unit").all() and {"loss_change", "layer"} <= set(oracle)
    assert load_trials(store, status="failed").empty


# ---------------------------------------------------------------- aggregates


def test_geometric_mean_values():
    assert geometric_mean([1, 3, 9], shift=0) == pytest.approx(3.0)
    assert geometric_mean([2, 8], shift=0) == pytest.approx(4.0)
    assert geometric_mean([0, 8], shift=0) == 0.0  # the plain geometric mean collapses at 0
    # default shift 1: (2 * 4 * 10) ** (1/3) - 1
    assert geometric_mean([1, 3, 9]) == pytest.approx(80 ** (1 / 3) - 1)
    assert geometric_mean([0, 8]) == pytest.approx(2.0)  # sqrt(1 * 9) - 1
    assert geometric_mean([0, 0]) == 0.0
    assert geometric_mean([20, 25, 30]) == pytest.approx(24.66, abs=0.03)  # close to the plain 24.66
    assert geometric_mean([4, np.nan, 4]) == pytest.approx(4.0)  # NaNs ignored
    assert np.isnan(geometric_mean([])) and np.isnan(geometric_mean([-2.0, 3.0]))
    rows = geometric_mean(np.array([[1, 3, 9], [2, 2, 2]]), shift=0, axis=1)
    np.testing.assert_allclose(rows, [3.0, 2.0])
    assert geometric_mean([3, 3, 3]) <= np.mean([3, 3, 3]) + 1e-12
    assert min([1, 5, 40]) <= geometric_mean([1, 5, 40]) <= np.mean([1, 5, 40])


def test_bootstrap_ci_covers_the_true_mean():
    rng = np.random.default_rng(0)
    hits = 0
    for i in range(200):
        sample = rng.normal(10.0, 2.0, 30)
        low, high = bootstrap_ci(sample, n_resamples=1000, seed=i)
        assert low < np.mean(sample) < high
        hits += low <= 10.0 <= high
    assert 0.88 <= hits / 200 <= 0.99


def test_bootstrap_ci_edges_and_stats():
    assert all(np.isnan(bootstrap_ci([1.0])))
    assert bootstrap_ci([3.0, 3.0, 3.0]) == (3.0, 3.0)
    v = np.random.default_rng(1).exponential(1.0, 200)
    assert bootstrap_ci(v, seed=5) == bootstrap_ci(v, seed=5)
    low, high = bootstrap_ci(v, stat=np.median)
    assert low < np.median(v) < high
    low_py, high_py = bootstrap_ci(v, stat=lambda s: float(np.median(s)))  # no axis argument
    assert (low_py, high_py) == pytest.approx((low, high), rel=0.1)
    low_g, high_g = bootstrap_ci(v, stat=geometric_mean)
    assert low_g < geometric_mean(v) < high_g


def _hand_table() -> pd.DataFrame:
    rows = []
    values = {
        "T1": {"a": [2, 8], "b": [5, 5], "c": [1, 1]},
        "T2": {"a": [9, 9], "b": [1, 4], "c": [3, 3]},
    }
    for task, per in values.items():
        for signal, vs in per.items():
            for seed, v in enumerate(vs):
                rows.append(dict(task=task, signal=signal, seed=seed, value=float(v), family="f"))
    return pd.DataFrame(rows)


def test_summarise_ranks_and_dist_by_hand():
    s = summarise(_hand_table(), "value", shift=0).set_index(["task", "signal"])
    assert s.loc[("T1", "a"), "geomean"] == pytest.approx(4.0)
    assert s.loc[("T2", "b"), "geomean"] == pytest.approx(2.0)
    assert s.loc[("T1", "a"), "mean"] == 5.0 and s.loc[("T1", "a"), "std"] == pytest.approx(np.sqrt(18))
    assert s.loc[("T1", "a"), ["min", "max"]].tolist() == [2.0, 8.0]
    assert s.loc[("T1", "a"), "n_seeds"] == 2 and s.loc[("T1", "a"), "family"] == "f"
    assert s["rank"].to_dict() == {
        ("T1", "b"): 1.0, ("T1", "a"): 2.0, ("T1", "c"): 3.0,
        ("T2", "a"): 1.0, ("T2", "c"): 2.0, ("T2", "b"): 3.0,
    }  # fmt: skip
    assert s["dist"].to_dict() == pytest.approx(
        {("T1", "b"): 0, ("T1", "a"): 1, ("T1", "c"): 4, ("T2", "a"): 0, ("T2", "c"): 6, ("T2", "b"): 7}
    )
    assert s.loc[("T1", "a"), "ci_low"] >= 2 and s.loc[("T1", "a"), "ci_high"] <= 8
    assert (s["metric"] == "value").all()
    low = summarise(_hand_table(), "value", shift=0, higher_is_better=False).set_index(["task", "signal"])
    assert low.loc[("T1", "c"), "rank"] == 1 and low.loc[("T1", "a"), "dist"] == pytest.approx(3.0)
    default = summarise(_hand_table(), "value").set_index(["task", "signal"])
    assert default.loc[("T1", "a"), "geomean"] == pytest.approx(np.sqrt(27) - 1)  # shift 1


def test_overall_ranking_by_hand():
    o = overall_ranking(summarise(_hand_table(), "value", shift=0)).set_index("signal")
    assert o["mean_rank"].to_dict() == {"a": 1.5, "b": 2.0, "c": 2.5}
    assert o["mean_dist"].to_dict() == pytest.approx({"a": 0.5, "b": 3.5, "c": 5.0})
    assert o["n_wins"].to_dict() == {"a": 1, "b": 1, "c": 0}
    assert o["overall_rank"].to_dict() == {"a": 1, "b": 2, "c": 3} and (o["n_tasks"] == 2).all()


def test_overall_ranking_puts_incomplete_signals_last():
    """A signal run on one easy task only must not outrank one run on every task, gets no
    mean rank, and does not move the complete signals' ranks (they met the same competitors)."""
    easy = pd.DataFrame(dict(task="T1", signal="d", seed=[0, 1], value=[90.0, 95.0], family="f"))
    table = pd.concat([_hand_table(), easy], ignore_index=True)
    o = overall_ranking(summarise(table, "value", shift=0))
    assert list(o["signal"]) == ["a", "b", "c", "d"]
    d = o.set_index("signal").loc["d"]
    assert np.isnan(d["mean_rank"]) and d["n_tasks"] == 1 and d["n_wins"] == 1
    complete = overall_ranking(summarise(_hand_table(), "value", shift=0))
    np.testing.assert_array_equal(o["mean_rank"][:3], complete["mean_rank"])


def test_summarise_ties_share_rank():
    table = _hand_table()
    table.loc[(table["task"] == "T1") & (table["signal"] == "c"), "value"] = 5.0
    s = summarise(table, "value", shift=0).set_index(["task", "signal"])
    assert s.loc[("T1", "b"), "rank"] == s.loc[("T1", "c"), "rank"] == 1.5
    assert s.loc[("T1", "c"), "dist"] == 0


def test_summarise_on_a_store(store):
    m = trial_metrics(load_trials(store), load_steps(store))
    s = summarise(m)
    assert len(s) == 2 * len(SIGNALS) and (s["n_seeds"] == 3).all()
    assert {"model", "dataset", "protocol", "alias", "sig_class"} <= set(s)
    assert (s["ci_low"] <= s["geomean"] + 1e-9).all() and (s["geomean"] <= s["ci_high"] + 1e-9).all()
    assert s.groupby("task")["rank"].min().eq(1).all() and (s["dist"] >= 0).all()
    assert (
        s.set_index(["task", "signal"])
        .loc[:, "rank"]
        .groupby("task")
        .idxmin()
        .map(lambda k: k[1])
        .eq("oracle")
        .all()
    )
    with pytest.raises(PrunetaxError, match="lacks"):
        summarise(m, "nope")


# ---------------------------------------------------------------- curves


def test_curves_by_hand(tiny):
    trials, steps = tiny
    c = curves(steps, trials, grid=[0, 5, 10, 15, 20, 25])
    a = c[c["run_key"] == "A"]
    np.testing.assert_allclose(a["test_acc"], [90, 89, 88, 84, 80, np.nan])
    np.testing.assert_allclose(a["acc_drop"], [0, 1, 2, 6, 10, np.nan])
    assert set(c["run_key"]) == {"A", "B", "C"}  # D has no steps
    held = curves(steps, trials, grid=[25], hold=True).set_index("run_key")
    assert held.loc["A", "test_acc"] == 80
    macs = curves(steps, trials, x="macs_sparsity", grid=[5]).set_index("run_key")
    assert macs.loc["A", "test_acc"] == pytest.approx(88.0)  # A's macs axis is halved
    ctest = c[c["run_key"] == "C"]
    np.testing.assert_allclose(ctest["test_acc"], [90, 88.5, 87, 85.5, 84, 84 + np.nan])  # NaN step skipped
    with pytest.raises(PrunetaxError):
        curves(steps, trials, x="flops")
