"""analysis.stats, analysis.effects and analysis.rank_quality against scipy, statsmodels,
scikit-posthocs, published tables and hand-computed values; analysis stays torch-free."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scikit_posthocs as sp
import scipy.stats as ss
from statsmodels.stats.multitest import multipletests

from analysis.effects import cells, component_effects, interaction
from analysis.rank_quality import rank_quality, rank_quality_summary, rank_similarity
from analysis.stats import (
    block_matrix,
    critical_difference,
    friedman,
    holm,
    kendall_w,
    nemenyi,
    rank_stability,
    wilcoxon_holm,
)
from taxonomy.equivalence import distinct
from taxonomy.errors import PrunetaxError

ROOT = Path(__file__).resolve().parents[1]

# 10 blocks x 5 treatments, fixed numbers (a few ties and one zero difference on purpose)
WIDE = pd.DataFrame(
    {
        "a": [71.2, 65.0, 80.1, 55.5, 60.0, 72.3, 68.8, 59.9, 77.0, 64.1],
        "b": [70.0, 66.2, 79.0, 54.0, 60.0, 70.1, 67.5, 58.2, 75.5, 63.0],
        "c": [60.3, 58.8, 70.2, 50.1, 52.2, 61.0, 60.0, 51.7, 66.6, 55.3],
        "d": [69.9, 64.0, 81.0, 56.0, 59.0, 71.0, 69.0, 60.0, 76.2, 64.1],
        "e": [50.0, 49.0, 61.0, 45.0, 47.5, 52.0, 50.5, 44.0, 58.0, 48.0],
    },
    index=pd.Index([f"task{i}" for i in range(10)], name="task"),
)
WIDE.columns.name = "signal"


def _long(wide: pd.DataFrame, seeds: int = 2, spread: float = 1.0) -> pd.DataFrame:
    """Trials whose seed mean is ``wide`` (seeds at value -/+ spread)."""
    rows = []
    for task, row in wide.iterrows():
        for signal, v in row.items():
            for s in range(seeds):
                rows.append(
                    dict(task=task, signal=signal, seed=s, base_seed=0, value=v + spread * (2 * s - 1))
                )
    return pd.DataFrame(rows)


# ---------------------------------------------------------------- blocks, omnibus, post-hoc


def test_block_matrix_averages_seeds_and_keeps_complete_signals():
    long = _long(WIDE)
    long = pd.concat([long, pd.DataFrame([dict(task="task0", signal="f", seed=0, base_seed=0, value=1.0)])])
    wide = block_matrix(long, "value")
    pd.testing.assert_frame_equal(wide, WIDE, check_names=False)
    assert wide.attrs["dropped_treatments"] == ["f"]
    with pytest.raises(PrunetaxError, match=">= 2 blocks"):
        block_matrix(long[long["task"] == "task0"], "value")
    with pytest.raises(PrunetaxError, match="lacks"):
        block_matrix(long, "missing")


def test_friedman_matches_scipy_and_hand_ranks():
    res = friedman(WIDE)
    expected = ss.friedmanchisquare(*(WIDE[c] for c in WIDE))
    assert res["statistic"] == pytest.approx(expected.statistic) and res["pvalue"] == pytest.approx(
        expected.pvalue
    )
    assert (res["n_blocks"], res["n_treatments"]) == (10, 5)
    n, k, chi2 = 10, 5, res["statistic"]
    assert res["iman_davenport"] == pytest.approx((n - 1) * chi2 / (n * (k - 1) - chi2))
    ranks = WIDE.rank(axis=1, ascending=False).mean()
    pd.testing.assert_series_equal(res["mean_ranks"], ranks.sort_values().rename("mean_rank"))
    assert res["mean_ranks"].index[-1] == "e" and res["mean_ranks"]["e"] == 5.0
    tiny = pd.DataFrame({"x": [3, 3], "y": [2, 1], "z": [1, 2]})
    assert friedman(tiny)["mean_ranks"].to_dict() == {"x": 1.0, "y": 2.5, "z": 2.5}
    with pytest.raises(PrunetaxError, match=">= 3"):
        friedman(WIDE[["a", "b"]])


def test_holm_by_hand_and_against_statsmodels():
    p = [0.01, 0.04, 0.03, 0.005]
    # sorted 0.005*4, 0.01*3, 0.03*2, 0.04*1 -> running max 0.02, 0.03, 0.06, 0.06
    np.testing.assert_allclose(holm(p), [0.03, 0.06, 0.06, 0.02])
    rng = np.random.default_rng(0)
    for _ in range(5):
        q = rng.uniform(0, 0.2, 12)
        np.testing.assert_allclose(holm(q), multipletests(q, method="holm")[1])
    assert np.isnan(holm([0.01, np.nan])[1]) and holm([0.01, np.nan])[0] == pytest.approx(0.01)


def test_wilcoxon_holm_matches_scipy_and_statsmodels():
    res = wilcoxon_holm(WIDE)
    assert len(res) == 10
    for row in res.itertuples():
        expected = ss.wilcoxon(WIDE[row.a], WIDE[row.b])
        assert row.statistic == pytest.approx(expected.statistic)
        assert row.pvalue == pytest.approx(expected.pvalue)
        assert row.median_diff == pytest.approx(np.median(WIDE[row.a] - WIDE[row.b]))
    np.testing.assert_allclose(res["p_holm"], multipletests(res["pvalue"], method="holm")[1])
    assert (res["significant"] == (res["p_holm"] < 0.05)).all()
    ae = res[(res["a"] == "a") & (res["b"] == "e")].iloc[0]
    assert ae["better"] == "a" and ae["pvalue"] == pytest.approx(2 / 2**10)  # exact: all 10 positive
    ad = res[(res["a"] == "a") & (res["b"] == "d")].iloc[0]
    assert ad["n_nonzero"] == 9  # task9 ties: dropped as scipy's zero_method="wilcox" does
    vs = wilcoxon_holm(WIDE, control="e")
    assert list(vs["b"]) == ["a", "b", "c", "d"] and (vs["a"] == "e").all() and (vs["better"] != "e").all()
    np.testing.assert_allclose(vs["p_holm"], multipletests(vs["pvalue"], method="holm")[1])
    same = wilcoxon_holm(pd.DataFrame({"x": [1.0, 2.0, 3.0], "y": [1.0, 2.0, 3.0]}))
    assert same.loc[0, "pvalue"] == 1.0 and same.loc[0, "statistic"] == 0.0 and same.loc[0, "better"] == ""
    with pytest.raises(PrunetaxError):
        wilcoxon_holm(WIDE, control="zz")


def test_nemenyi_matches_scikit_posthocs():
    p = nemenyi(WIDE)
    expected = sp.posthoc_nemenyi_friedman(WIDE.to_numpy())
    np.testing.assert_allclose(p.to_numpy(), expected.to_numpy())
    assert list(p.index) == list(p.columns) == list(WIDE.columns)
    np.testing.assert_allclose(p.to_numpy(), p.to_numpy().T)


def test_nemenyi_among_treatments_equals_the_full_matrix():
    # the CD diagram's shortcut: only the drawn pairs, ranked within the full table
    rng = np.random.default_rng(0)
    wide = pd.DataFrame(rng.normal(size=(6, 12)), columns=[f"s{i}" for i in range(12)])
    for hib in (True, False):
        shown = list(friedman(wide, higher_is_better=hib)["mean_ranks"].index[:5])
        among = nemenyi(wide, treatments=shown)
        assert list(among.index) == list(among.columns) == shown
        full = nemenyi(wide).loc[shown, shown]
        np.testing.assert_allclose(among.to_numpy(), full.to_numpy(), atol=1e-12)
    with pytest.raises(PrunetaxError):
        nemenyi(wide, treatments=["s0", "zz"])


@pytest.mark.parametrize(
    "k, q", [(2, 1.960), (3, 2.343), (4, 2.569), (5, 2.728), (6, 2.850), (8, 3.031), (10, 3.164)]
)
def test_critical_difference_matches_demsar_table5(k, q):
    n = 12
    cd = critical_difference(k, n)
    assert cd / np.sqrt(k * (k + 1) / (6 * n)) == pytest.approx(q, abs=1e-3)


def test_critical_difference_reference_value_and_errors():
    assert critical_difference(8, 12) == pytest.approx(3.031, abs=1e-3)  # the value autorank reports
    assert critical_difference(4, 12, alpha=0.10) < critical_difference(4, 12)
    with pytest.raises(PrunetaxError):
        critical_difference(1, 5)


# ---------------------------------------------------------------- Kendall's W

# 3 judges rank 6 items. Rank sums R = 4, 6, 8, 13, 15, 17; mean m(n+1)/2 = 10.5;
# S = 6.5^2 + 4.5^2 + 2.5^2 + 2.5^2 + 4.5^2 + 6.5^2 = 137.5; W = 12 S / (m^2 (n^3 - n)) = 1650 / 1890.
JUDGES = pd.DataFrame([[1, 2, 3, 4, 5, 6], [2, 1, 3, 4, 6, 5], [1, 3, 2, 5, 4, 6]], columns=list("ABCDEF"))
# Judge 3 ties B and C (2.5 each): R = 4, 5.5, 8.5, 13, 15, 17; S = 140; T = 2^3 - 2 = 6;
# W = 12 * 140 / (9 * 210 - 3 * 6) = 1680 / 1872 (1680 / 1890 without the tie correction).
TIED = pd.DataFrame([[1, 2, 3, 4, 5, 6], [2, 1, 3, 4, 6, 5], [1, 2.5, 2.5, 5, 4, 6]], columns=list("ABCDEF"))


def test_kendall_w_textbook_values():
    assert kendall_w(JUDGES) == pytest.approx(1650 / 1890)
    assert kendall_w(TIED) == pytest.approx(1680 / 1872)
    assert kendall_w(TIED, ties=False) == pytest.approx(1680 / 1890)
    # W = Friedman chi2 / (m (n - 1)) with raters as blocks (scipy applies the tie correction)
    chi2 = ss.friedmanchisquare(*(TIED[c] for c in TIED)).statistic
    assert kendall_w(TIED) == pytest.approx(chi2 / (3 * 5))
    scores = -np.exp(JUDGES.to_numpy())  # any monotone transform of the ranks, any direction
    assert kendall_w(scores) == pytest.approx(1650 / 1890)
    assert kendall_w(pd.DataFrame([[1, 2, 3], [1, 2, 3]])) == pytest.approx(1.0)
    assert kendall_w(pd.DataFrame([[1, 2], [2, 1]])) == pytest.approx(0.0)
    assert np.isnan(kendall_w(pd.DataFrame([[1, 2, 3]])))


def test_rank_stability_per_task():
    rows = []
    for task, noise in (("t1", 0.0), ("t2", 5.0)):
        rng = np.random.default_rng(0)
        for seed in range(4):
            for i, signal in enumerate("abcdef"):
                rows.append(
                    dict(task=task, signal=signal, seed=seed, base_seed=0, v=10.0 * i + noise * rng.normal())
                )
    out = rank_stability(pd.DataFrame(rows), "v").set_index("task")
    assert out.loc["t1", "kendall_w"] == pytest.approx(1.0) and out.loc["t1", "n_seeds"] == 4
    assert out.loc["t1", "n_signals"] == 6 and out.loc["t2", "kendall_w"] < 1.0
    assert out.loc["t1", "pvalue"] < 0.01


# ---------------------------------------------------------------- component effects

EFFECT = {
    "input": {"weight": -1.5, "activation": 1.5},
    "pointwise": {
        "value": 4.0, "gradient": -6.0, "taylor": 2.0, "hessian_lm": 1.0,
        "hessian_gn": 0.5, "taylor2_lm": 2.5, "taylor2_gn": 3.0, "apoz": -4.0, "centered": 0.8,
    },
    "reduction": {"sum": -5.0, "l1": 2.0, "l2": 3.0, "abs_sum": 4.0, "sqr_sum": 0.0},
    "scaling": {
        "none": 0.0, "l1": 2.0, "l2": 3.0, "l0": -1.0, "l0_active": -1.0, "weights_removed": 8.0,
        "macs_removed": 6.0,
    },
}  # fmt: skip


def _additive_trials(specs, tasks=(("t1", 30.0), ("t2", 45.0)), seeds=2) -> pd.DataFrame:
    rows = []
    for task, base in tasks:
        for spec in specs:
            parts = dict(zip(EFFECT, (c.id for c in spec.components), strict=True))
            value = base + sum(EFFECT[axis][opt] for axis, opt in parts.items())
            for s in range(seeds):
                comps = {f"sig_{a}": o for a, o in parts.items()}
                noisy = value + (2 * s - 1) * 0.7  # seeds average back to value
                rows.append(
                    dict(
                        task=task,
                        signal=spec.id,
                        sig_class=spec.id,
                        seed=s,
                        base_seed=0,
                        value=noisy,
                        **comps,
                    )
                )
    return pd.DataFrame(rows)


def test_component_effects_recover_additive_effects_exactly():
    reps = distinct()  # one cell per equivalence class: an incomplete grid (437 of 630 cells)
    metrics = _additive_trials(reps)
    refs = pd.DataFrame(
        [dict(task="t1", signal="random", sig_class="random", seed=0, base_seed=0, value=99.0)]
    )
    out = component_effects(pd.concat([metrics, refs]), "value", n_resamples=200).set_index(
        ["component", "option"]
    )
    for axis, effects in EFFECT.items():
        present = [o for o in effects if (axis, o) in out.index]
        truth = {o: effects[o] - np.mean([effects[p] for p in present]) for o in present}
        for option, value in truth.items():
            assert out.loc[(axis, option), "effect"] == pytest.approx(value, abs=1e-9), (axis, option)
            assert (
                out.loc[(axis, option), "ci_low"] <= value + 1e-9 <= out.loc[(axis, option), "ci_high"] + 2e-9
            )
    assert ("scaling", "l0_active") in out.index  # weight-...-l0_active cells stay distinct
    assert out["n_pairs"].gt(0).all()
    assert (out.loc["input", "n_cells"].sum()) == 2 * len(reps)  # two tasks, references excluded


def test_component_effects_complete_grid_is_the_mean_paired_difference():
    rows = []
    vals = {("l1", "l2"): 10.0, ("l1", "l0"): 14.0, ("l2", "l2"): 13.0, ("l2", "l0"): 20.0}
    for (red, sc), v in vals.items():
        sig = f"weight-value-{red}-{sc}"
        comps = dict(sig_input="weight", sig_pointwise="value", sig_reduction=red, sig_scaling=sc)
        rows.append(dict(task="t", signal=sig, sig_class=sig, seed=0, base_seed=0, value=v, **comps))
    out = component_effects(pd.DataFrame(rows), "value", n_resamples=100).set_index(["component", "option"])
    # reduction sets: scaling l2 -> (10, 13), l0 -> (14, 20); l1 - set mean: -1.5, -3 -> -2.25
    assert out.loc[("reduction", "l1"), "effect"] == pytest.approx(-2.25)
    assert out.loc[("reduction", "l2"), "effect"] == pytest.approx(2.25)
    # scaling sets: l1 -> (10, 14), l2 -> (13, 20); l2 - set mean: -2, -3.5 -> -2.75
    assert out.loc[("scaling", "l2"), "effect"] == pytest.approx(-2.75)
    assert out.loc[("reduction", "l1"), "n_pairs"] == 2 and out.loc[("reduction", "l1"), "n_cells"] == 2
    assert np.isnan(out.loc[("input", "weight"), "effect"])  # one option only: no pairs


def test_equivalent_members_count_once():
    rep = "weight-value-abs_sum-none"
    member = "weight-value-sqr_sum-none"  # rule 4c: the same ranking as rep
    rows = []
    for sig, v in ((rep, 10.0), (member, 12.0), ("weight-value-l1-none", 20.0)):
        comps = dict(
            zip(("sig_input", "sig_pointwise", "sig_reduction", "sig_scaling"), sig.split("-"), strict=True)
        )
        cls = rep if sig == member else sig
        rows.append(dict(task="t", signal=sig, sig_class=cls, seed=0, base_seed=0, value=v, **comps))
    table = cells(pd.DataFrame(rows), "value")
    assert len(table) == 2 and table.set_index("sig_class").loc[rep, "value"] == 11.0
    assert table.set_index("sig_class").loc[rep, "n_members"] == 2
    assert set(table["reduction"]) == {"abs_sum", "l1"}  # the member sits at its representative
    out = component_effects(pd.DataFrame(rows), "value", n_resamples=50).set_index(["component", "option"])
    assert out.loc[("reduction", "l1"), "effect"] == pytest.approx(4.5)
    assert out.loc[("reduction", "abs_sum"), "n_cells"] == 1


def test_interaction_is_zero_for_an_additive_complete_grid():
    from taxonomy.spec import parse

    specs = [parse(f"weight-value-{r}-{s}") for r in ("l1", "l2") for s in ("l2", "l0", "weights_removed")]
    metrics = _additive_trials(specs)
    wide = interaction(metrics, "value")
    assert list(wide.index) == ["l1", "l2"] and list(wide.columns) == ["l2", "l0", "weights_removed"]
    # mean over the two tasks (30, 45) + weight + value + reduction + scaling
    assert wide.loc["l2", "weights_removed"] == pytest.approx(37.5 - 1.5 + 4.0 + 3.0 + 8.0)
    tidy = interaction(metrics, "value", tidy=True)
    np.testing.assert_allclose(tidy["interaction"], 0.0, atol=1e-9)
    assert (tidy["n_blocks"] == 2).all() and (tidy["n_cells"] == 2).all()
    with pytest.raises(PrunetaxError):
        interaction(metrics, "value", a="scaling", b="scaling")


# ---------------------------------------------------------------- rank quality


def _rank_tables():
    units = np.arange(6)
    layers = np.array(["conv1"] * 3 + ["conv2"] * 3)
    loss = np.array([0.1, 0.5, 0.3, 0.2, 0.9, 0.4])
    ids = dict(run_key="k", model="m", dataset="d", base_seed=0, seed=0)
    oracle = pd.DataFrame(
        dict(**ids, unit=units, unit_name=[f"u{u}" for u in units], layer=layers, loss_change=loss)
    )
    signals = {
        "same": loss * 10,  # identical ranking
        "reversed": -loss,
        "tied": np.array([1.0, 2.0, 2.0, 1.0, 3.0, 3.0]),
        "layerwise": np.array([1.0, 3.0, 2.0, 101.0, 103.0, 102.0]),  # right within layers only
    }
    scores = pd.concat(
        pd.DataFrame(
            dict(
                run_key="k",
                model="m",
                dataset="d",
                base_seed=0,
                seed=0,
                tap="output",
                level="unit",
                signal=name,
                layer=layers,
                channel=units % 3,
                unit=units,
                score=s,
            )
        )
        for name, s in signals.items()
    )
    return scores, oracle, signals, loss, layers


def test_rank_quality_by_hand():
    scores, oracle, signals, loss, layers = _rank_tables()
    rq = rank_quality(scores, oracle).set_index(["signal", "scope"])
    assert len(rq) == 4 * 3
    for scope in ("global", "conv1", "conv2"):
        assert rq.loc[("same", scope), ["spearman", "kendall"]].tolist() == pytest.approx([1.0, 1.0])
        assert rq.loc[("reversed", scope), ["spearman", "kendall"]].tolist() == pytest.approx([-1.0, -1.0])
    assert rq.loc[("same", "global"), "n_units"] == 6 and rq.loc[("same", "conv1"), "n_units"] == 3
    assert rq.loc[("layerwise", "conv1"), "spearman"] == pytest.approx(1.0)
    assert rq.loc[("layerwise", "global"), "spearman"] < 1.0
    for scope, mask in (("global", slice(None)), ("conv2", layers == "conv2")):
        s = signals["tied"][mask]
        assert rq.loc[("tied", scope), "spearman"] == pytest.approx(ss.spearmanr(s, loss[mask]).statistic)
        assert rq.loc[("tied", scope), "kendall"] == pytest.approx(ss.kendalltau(s, loss[mask]).statistic)
    assert list(rank_quality(scores, oracle)["scope"][:3]) == ["global", "conv1", "conv2"]
    no_key = rank_quality(scores.assign(run_key="other"), oracle)  # falls back to the identity columns
    assert no_key.set_index(["signal", "scope"]).loc[("same", "global"), "spearman"] == pytest.approx(1.0)


def test_vectorised_correlations_equal_scipy_with_ties():
    rng = np.random.default_rng(3)
    layers = np.repeat(["a", "b", "c"], [1, 17, 40])  # a one-unit layer gives NaN
    units = np.arange(len(layers))
    oracle, scores = [], []
    for seed in range(2):
        ids = dict(
            run_key=f"r{seed}", model="m", dataset="d", base_seed=0, seed=seed, unit=units, layer=layers
        )
        loss = rng.integers(0, 6, len(units)).astype(float)  # many ties
        oracle.append(pd.DataFrame(dict(**ids, unit_name="", loss_change=loss)))
        for k in range(3):
            score = np.round(loss + rng.normal(0, k + 0.5, len(units)))
            if k == 2:
                score[layers == "b"] = 7.0  # constant within a layer
            scores.append(pd.DataFrame(dict(**ids, level="unit", signal=f"s{k}", channel=0, score=score)))
    scores, oracle = pd.concat(scores), pd.concat(oracle)
    rq = rank_quality(scores.sample(frac=1, random_state=0), oracle)
    merged = scores.merge(oracle[["run_key", "unit", "loss_change"]], on=["run_key", "unit"])
    assert len(rq) == 2 * 3 * 4
    for row in rq.itertuples():
        part = merged[(merged["run_key"] == row.run_key) & (merged["signal"] == row.signal)]
        if row.scope != "global":
            part = part[part["layer"] == row.scope]
        expected = [np.nan, np.nan]
        if len(part) > 1:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                expected = [
                    ss.spearmanr(part["score"], part["loss_change"]).statistic,
                    ss.kendalltau(part["score"], part["loss_change"]).statistic,
                ]
        np.testing.assert_allclose([row.spearman, row.kendall], expected, atol=1e-12, equal_nan=True)
    assert rq["kendall"].isna().sum() == 2 * 3 + 2  # the one-unit layers, the constant layers


def test_rank_quality_summary_and_similarity():
    scores, oracle, *_ = _rank_tables()
    both_s = pd.concat([scores, scores.assign(run_key="k2", seed=1)])
    both_o = pd.concat([oracle, oracle.assign(run_key="k2", seed=1)])
    rq = rank_quality(both_s, both_o)
    summary = rank_quality_summary(rq, n_resamples=100).set_index("signal")
    assert summary.loc["same", "spearman"] == pytest.approx(1.0) and summary.loc["same", "n_seeds"] == 2
    assert summary.index[0] == "same" and summary.loc["same", "spearman_ci_low"] == pytest.approx(1.0)
    layers = rank_quality_summary(rq, "layers", n_resamples=100).set_index("signal")
    assert layers.loc["layerwise", "spearman"] == pytest.approx(1.0) and (layers["scope"] == "layers").all()
    assert len(rank_quality_summary(rq, None, n_resamples=10)) == 4 * 3
    sim = rank_similarity(both_s)
    assert sim.attrs["n_runs"] == 2 and sim.loc["same", "reversed"] == pytest.approx(-1.0)
    np.testing.assert_allclose(np.diag(sim), 1.0)
    assert rank_similarity(both_s, "kendall").loc["same", "reversed"] == pytest.approx(-1.0)


# ---------------------------------------------------------------- layering


def test_analysis_modules_do_not_import_torch():
    code = (
        "import sys; import analysis.metrics, analysis.stats, analysis.effects, analysis.rank_quality, "
        "analysis.frames; assert 'torch' not in sys.modules, 'torch was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
