"""analysis.design (protocol labels, aggregation, test noise), the draws of random
(analysis.metrics.draws), Friedman's permutation p-value and caveat, the one rank matrix,
the palette's shades within a family, and rank quality along the oracle's trajectory."""

from __future__ import annotations

import json
from itertools import permutations, product

import numpy as np
import pandas as pd
import pytest
import scipy.stats as ss

from analysis.design import accuracy_noise, aggregations, is_default_label, protocol_labels
from analysis.metrics import collapse_draws, draw_spread, overall_ranking, summarise
from analysis.palette import signal_colours
from analysis.rank_quality import rank_quality, rank_quality_by_step, rank_quality_summary, rank_similarity
from analysis.stats import friedman, mean_ranks, summary_matrix

# ---------------------------------------------------------------- protocol labels


def _trial(protocol="sensitivity", units=None, initial=80, aggregation=None, **params) -> dict:
    return dict(
        protocol=protocol,
        protocol_json=json.dumps({"name": protocol, **params}),
        units_per_step=units,
        initial_units=initial,
        aggregation=aggregation,
    )


def test_protocol_labels_name_every_variant_and_coarse_steps():
    trials = pd.DataFrame(
        [
            _trial(units=1, aggregation="pooled", channels_per_step=1.0, tap="output"),  # the paper's
            _trial(),  # an older store: nothing recorded -> every default
            _trial(aggregation="sum"),
            _trial(channels_per_step=0.1),  # 10 % of 80 units -> 8 per step
            _trial(channels_per_step=0.1, initial=110),  # 11 per step on another network
            _trial(units=8, channels_per_step=8.0),
            _trial(group_reduction="sum", tap="conv"),  # the pre-pooled name of the aggregation
            _trial("retrain", retrain_steps=20, aggregation="pooled"),
            _trial("retrain", mean_replacement=True),
            _trial("oneshot", channels_per_step=0.1, targets=[10, 20]),  # one-shot has no step size
            _trial(eval_batches=4, retrain_steps=20),  # retrain_steps means nothing for sensitivity
        ]
    )
    assert protocol_labels(trials).tolist() == [
        "sensitivity",
        "sensitivity",
        "sensitivity [aggregation=sum]",
        "sensitivity [coarse (8–11 units per step)]",
        "sensitivity [coarse (8–11 units per step)]",
        "sensitivity [coarse (8 units per step)]",
        "sensitivity [aggregation=sum; tap=conv]",
        "retrain [retrain_steps=20]",
        "retrain [mean replacement]",
        "oneshot",
        "sensitivity [eval_batches=4]",
    ]
    assert aggregations(trials).tolist()[:3] == ["pooled", "pooled", "sum"]
    assert protocol_labels(pd.DataFrame({"protocol": ["retrain"]})).tolist() == ["retrain"]
    assert is_default_label("sensitivity") and not is_default_label("sensitivity [aggregation=sum]")


def test_accuracy_noise_by_hand():
    trials = pd.DataFrame(
        dict(
            model=["a", "a", "b"],
            dataset="d",
            reference_acc=[90.0, 94.0, 80.0],
            n_test=[1000, 1000, None],
        )
    )
    noise = accuracy_noise(trials).set_index("model")
    assert noise.loc["a", "se"] == pytest.approx(100 * np.sqrt(0.92 * 0.08 / 1000))
    assert np.isnan(noise.loc["b", "n_test"]) and np.isnan(noise.loc["b", "se"])
    assert np.isnan(accuracy_noise(trials.drop(columns="n_test"))["se"]).all()


# ---------------------------------------------------------------- draws of random


def test_collapse_draws_takes_the_median_per_seed_and_leaves_others_alone():
    m = pd.DataFrame(
        dict(
            task="T",
            signal=["a", "random", "random", "random", "random"],
            base_seed=[0, 0, 0, 0, 1],
            seed=[0, 0, 0, 0, 1],
            draw=[0, 0, 1, 2, 0],
            v=[1.0, 5.0, 3.0, 10.0, 7.0],
        )
    )
    out = collapse_draws(m)
    assert out["signal"].tolist() == ["a", "random", "random"]
    assert out["v"].tolist() == [1.0, 5.0, 7.0] and out["n_draws"].tolist() == [1, 3, 1]
    spread = draw_spread(m, "v").set_index("signal").loc["random"]
    assert spread["n_draws"] == 4 and spread["draw_median"] == 6.0
    assert spread["draw_low"] == pytest.approx(np.quantile([5, 3, 10, 7], 0.1)) and spread["draw_max"] == 10
    assert draw_spread(m[m["signal"] == "a"], "v").empty


# ---------------------------------------------------------------- one rank matrix, Friedman


def test_summary_matrix_and_mean_ranks_keep_complete_signals_only():
    summary = pd.DataFrame(
        dict(
            task=["t1", "t1", "t1", "t2", "t2"],
            signal=["a", "b", "c", "a", "b"],
            geomean=[3.0, 2.0, 9.0, 1.0, 5.0],
        )
    )
    wide = summary_matrix(summary)
    assert list(wide.columns) == ["a", "b"] and wide.attrs["dropped_treatments"] == ["c"]
    assert mean_ranks(wide).to_dict() == {"a": 1.5, "b": 1.5}
    ranking = overall_ranking(summarise(summary.rename(columns={"geomean": "v"}), "v", shift=0))
    assert ranking.set_index("signal")["mean_rank"].isna().tolist() == [False, False, True]


def test_friedman_permutation_p_is_exact_on_small_tables_and_flags_the_approximation():
    wide = pd.DataFrame([[1.0, 2.0, 3.0], [1.5, 2.5, 3.5], [3.0, 1.0, 2.0]], columns=list("abc"))
    out = friedman(wide, permutations=10_000)
    stat = lambda w: (w.rank(axis=1).sum() ** 2).sum()  # noqa: E731
    observed = stat(wide)
    null = [
        stat(pd.DataFrame([[row[i] for i in p] for row, p in zip(wide.to_numpy(), ps, strict=True)]))
        for ps in product(list(permutations(range(3))), repeat=3)
    ]
    assert out["pvalue_permutation"] == pytest.approx(np.mean(np.array(null) >= observed - 1e-9))
    assert out["approximate"] and "cannot be trusted" in out["caveat"]
    rng = np.random.default_rng(0)
    big = pd.DataFrame(rng.normal(size=(12, 6)) + np.arange(6))
    assert not friedman(big, permutations=0)["approximate"] and friedman(big, permutations=0)["caveat"] == ""


# ---------------------------------------------------------------- palette


def test_one_family_gets_distinct_shades():
    signals = [f"activation-taylor-{r}-none" for r in ("sum", "l1", "l2", "abs_sum", "sqr_sum")]
    colours = signal_colours([*signals, "random", "oracle"])
    assert len({colours[s] for s in signals}) == 5
    assert colours["random"] == colours["oracle"] == "#555555"
    assert signal_colours(["weight-value-l1-none"]) == {"weight-value-l1-none": "#332288"}


# ---------------------------------------------------------------- rank quality per oracle step


GOOD, NOISE = "activation-taylor-abs_sum-l2", "activation-taylor-l1-none"  # one family: two shades


def _trajectory(steps: int = 4, units: int = 10, seed: int = 0):
    """Scores and oracle along the oracle's trajectory: step k scores the units left after
    its k least important units are gone; `good` follows the oracle, `noise` does not."""
    rng = np.random.default_rng(seed)
    loss = rng.gamma(2.0, 1.0, units)
    order = np.argsort(loss)
    ids = dict(run_key="k", model="m", dataset="d", base_seed=0, seed=0)
    oracle, scores = [], []
    for k in range(steps):
        active = np.sort(order[k:])
        change = loss[active] * (1 + k) + rng.normal(0, 0.01, len(active))
        oracle.append(
            pd.DataFrame(dict(**ids, step=k, unit=active, unit_name="", layer="c", loss_change=change))
        )
        for name, score in (
            (GOOD, change + rng.normal(0, 0.3 * k, len(active))),
            (NOISE, rng.normal(size=len(active))),
        ):
            scores.append(
                pd.DataFrame(
                    dict(
                        **ids,
                        step=k,
                        level="unit",
                        signal=name,
                        layer="c",
                        channel=active,
                        unit=active,
                        score=score,
                    )
                )
            )
    return pd.concat(scores, ignore_index=True), pd.concat(oracle, ignore_index=True)


def test_rank_quality_is_computed_per_oracle_step_over_the_active_units():
    scores, oracle = _trajectory()
    rq = rank_quality(scores, oracle)
    glob = rq[rq["scope"] == "global"].set_index(["signal", "step"])
    assert sorted(glob.index.get_level_values("step").unique()) == [0, 1, 2, 3]
    for (signal, step), row in glob.iterrows():
        s = scores[(scores["signal"] == signal) & (scores["step"] == step)].sort_values("unit")
        o = oracle[oracle["step"] == step].sort_values("unit")
        assert row["n_units"] == 10 - step
        assert row["spearman"] == pytest.approx(ss.spearmanr(s["score"], o["loss_change"]).statistic)
        assert row["kendall"] == pytest.approx(ss.kendalltau(s["score"], o["loss_change"]).statistic)
    by_step = rank_quality_by_step(rq).set_index(["signal", "step"])
    assert by_step.loc[(GOOD, 0), "spearman"] == pytest.approx(1.0)
    assert by_step.loc[(GOOD, 0), "n_units"] == 10 and by_step.loc[(GOOD, 3), "n_units"] == 7
    summary = rank_quality_summary(rq, n_resamples=10).set_index("signal")  # step 0 only, as before
    assert summary.loc[GOOD, "spearman"] == pytest.approx(1.0) and summary.loc[GOOD, "n_units"] == 10
    sim = rank_similarity(scores)
    assert sim.attrs["n_runs"] == 1  # step 0 only: the later steps are other networks


def test_without_a_step_column_rank_quality_is_step_zero():
    scores, oracle = _trajectory(steps=1)
    old = rank_quality(scores.drop(columns="step"), oracle.drop(columns="step"))
    new = rank_quality(scores, oracle)
    pd.testing.assert_frame_equal(old, new)
    assert (old["step"] == 0).all()


def test_the_step_figure_draws_every_signal_and_refuses_one_step():
    from analysis.plots import rank_quality_steps

    scores, oracle = _trajectory()
    by_step = rank_quality_by_step(rank_quality(scores, oracle))
    fig = rank_quality_steps(by_step, signals=[GOOD, NOISE], data="test")
    ax = fig.axes[0]
    drawn = [line for line in ax.get_lines() if len(line.get_xdata()) == 4]  # the zero line has 2 points
    assert len(drawn) == 2 and len({line.get_color() for line in drawn}) == 2
    good = next(line for line in drawn if line.get_ydata()[0] == pytest.approx(1.0))
    assert list(good.get_xdata()) == [0, 1, 2, 3]
    assert [t.get_text() for t in ax.get_xticklabels()] and [t.get_text() for t in ax.get_yticklabels()]
    with pytest.raises(ValueError, match="one step only"):
        rank_quality_steps(by_step[by_step["step"] == 0])
