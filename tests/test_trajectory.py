"""The pruning loop: lockstep sharing is exact, runs are deterministic, protocols behave."""

from __future__ import annotations

import math

import pytest
import torch

from study.evaluation import mean_loss as eval_loss
from study.groups import build_groups
from study.masks import MaskedModel
from study.oracle import oracle_scores
from study.protocols import make_protocol
from study.trajectory import Setup
from taxonomy.spec import parse
from tests.nets import CLASSES, batch, make

TIMING = {"t_stats", "t_score", "t_prune", "t_retrain", "t_eval"}
RETRAIN = dict(retrain_steps=3, retrain_lr=0.05, retrain_weight_decay=1e-4, retrain_batch_size=8)


def Protocol(name: str = "sensitivity", **params):  # noqa: N802 - reads like the old constructor
    if name in ("retrain", "characterise"):
        params = {**RETRAIN, **params}
    return make_protocol(name, **params)


def _setup(protocol, name: str = "residual", seed: int = 0) -> Setup:
    model, shape = make(name)
    x, y = batch(name, n=48, seed=3)
    tx, ty = batch(name, n=40, seed=4)
    setup = Setup(
        model=model,
        groups=build_groups(model, shape),
        eval_batches=[(x[:24], y[:24]), (x[24:], y[24:])],
        test=(tx, ty),
        train=(x, y),
        reference_acc=100.0 / CLASSES[name],
        seed=seed,
    )
    setup.protocol = protocol
    return setup


def run_protocol(setup: Setup, signals):
    return setup.protocol.run(setup, signals)


def _strip(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIMING} for r in rows]


SIGNALS = [
    "best_gradient",
    "l1_filter",
    "obd",
    "activation-apoz-sum-l0",
    "random",
    "oracle",
    "weight-taylor-l2-weights_removed",
    "activation-hessian_lm-sqr_sum-l1",
]


@pytest.mark.parametrize(
    "protocol",
    [
        Protocol(channels_per_step=2),
        Protocol("retrain", channels_per_step=2),
        Protocol("oneshot", targets=(10, 30, 60)),
    ],
)
def test_lockstep_equals_solo_runs(protocol):
    setup = _setup(protocol)
    signals = [parse(s) for s in SIGNALS]
    together = run_protocol(setup, signals)
    for signal, shared in zip(signals, together, strict=True):
        (alone,) = run_protocol(setup, [signal])
        assert alone.error is None and shared.error is None
        assert _strip(alone.rows) == _strip(shared.rows), signal.id


def test_same_spec_twice_is_bit_identical():
    setup = _setup(Protocol("retrain"))
    a = run_protocol(setup, [parse("best_gradient"), parse("random")])
    b = run_protocol(setup, [parse("best_gradient"), parse("random")])
    assert [_strip(r.rows) for r in a] == [_strip(r.rows) for r in b]


def test_greedy_prunes_until_one_unit_per_group_and_curve_falls():
    setup = _setup(Protocol())
    (res,) = run_protocol(setup, [parse("best_gradient")])
    rows = res.rows
    assert rows[0]["step"] == 0 and rows[0]["sparsity"] == 0 and rows[0]["n_pruned"] == 0
    assert res.stop_reason == "nothing left to prune"
    assert rows[-1]["units_remaining"] == len(setup.groups.group_sizes)
    sparsity = [r["sparsity"] for r in rows]
    assert sparsity == sorted(sparsity) and sparsity[-1] > 80
    assert sum(r["n_pruned"] for r in rows) == setup.groups.n_units - len(setup.groups.group_sizes)


def test_stop_acc_target_and_test_interval():
    setup = _setup(Protocol(target_sparsity=60, test_interval=3))
    (res,) = run_protocol(setup, [parse("l1_filter")])
    assert res.rows[-1]["sparsity"] >= 60 > res.rows[-2]["sparsity"]
    evaluated = [r["step"] for r in res.rows if not math.isnan(r["test_acc"])]
    last = res.rows[-1]["step"]
    assert evaluated == [s for s in range(0, last, 3)] + [last]
    setup = _setup(Protocol(stop_acc=99.0))
    (res,) = run_protocol(setup, [parse("l1_filter")])
    assert len(res.rows) == 2 and "stop_acc" in res.stop_reason


def test_oneshot_reaches_each_target_in_order():
    setup = _setup(Protocol("oneshot", targets=(50, 10, 30)))
    (res,) = run_protocol(setup, [parse("l2_filter")])
    got = [r["sparsity"] for r in res.rows[1:]]
    assert len(got) == 3 and got == sorted(got)
    assert all(g >= t for g, t in zip(got, (10, 30, 50), strict=True))


def test_characterise_retrains_only_when_train_accuracy_drops():
    setup = _setup(Protocol("characterise", channels_per_step=3))
    (res,) = run_protocol(setup, [parse("random")])
    steps = [r["retrain_steps"] for r in res.rows[1:]]
    assert all(0 <= s <= RETRAIN["retrain_steps"] for s in steps)


def test_oracle_is_the_measured_loss_change():
    setup = _setup(Protocol())
    masked = MaskedModel(setup.model, setup.groups)
    scores = oracle_scores(masked, setup.eval_batches)
    base = eval_loss(setup.model, setup.eval_batches)
    for u in (0, 5, setup.groups.n_units - 1):
        trial = MaskedModel(__import__("copy").deepcopy(setup.model), setup.groups)
        trial.prune([u])
        assert scores[u] == pytest.approx(eval_loss(trial.model, setup.eval_batches) - base, abs=1e-6)
    # the model is restored exactly after measuring
    assert eval_loss(setup.model, setup.eval_batches) == base


def test_a_nan_signal_fails_alone():
    setup = _setup(Protocol())
    bad = setup.model.get_submodule("c1")
    with torch.no_grad():
        bad.weight[0, 0, 0, 0] = float("nan")
    results = run_protocol(setup, [parse("l1_filter"), parse("random")])
    assert results[0].error is not None and "NaN" in results[0].error
    assert results[1].error is None


def test_a_failing_reference_fails_alone(monkeypatch):
    from study.unit_scores import REFERENCE_SCORERS

    def broken(*args, **kwargs):
        raise RuntimeError("oracle exploded")

    monkeypatch.setitem(REFERENCE_SCORERS._items, "oracle", broken)
    results = run_protocol(_setup(Protocol(channels_per_step=3)), [parse("oracle"), parse("l1_filter")])
    assert "oracle exploded" in results[0].error
    assert results[1].error is None and results[1].stop_reason == "nothing left to prune"


def test_channels_last_networks_prune_like_nchw_ones():
    nchw = _setup(Protocol(channels_per_step=3))
    cl = _setup(Protocol(channels_per_step=3))
    cl.model.to(memory_format=torch.channels_last)
    cl.eval_batches = [(x.contiguous(memory_format=torch.channels_last), y) for x, y in cl.eval_batches]
    signals = [parse("oracle"), parse("best_gradient"), parse("obd")]
    for a, b in zip(run_protocol(nchw, signals), run_protocol(cl, signals), strict=True):
        assert b.error is None
        assert [r["pruned"] for r in a.rows] == [r["pruned"] for r in b.rows]


def test_stop_drop_reads_every_headline_exactly(model_cache):
    """On a trained network: stopping 10 points below the reference cuts the curve short
    but leaves every headline up to a 10-point drop exactly as the full run's."""
    from study.base_model import load_base
    from study.environment import Environment
    from study.execute import make_setup
    from study.trial import TrialSpec, headline

    base = load_base("tiny_cnn", "digits", 0, Environment(model_cache))
    signals = [parse("l1_filter"), parse("best_gradient"), parse("random")]
    runs = {}
    for stop in (None, 10.0):
        protocol = Protocol(channels_per_step=2, stop_drop=stop)
        setup = make_setup(TrialSpec("tiny_cnn", "digits", "l1_filter", protocol), base)
        runs[stop] = protocol.run(setup, signals)
    for a, b in zip(runs[None], runs[10.0], strict=True):
        assert len(b.rows) < len(a.rows) and "stop_drop" in b.stop_reason
        assert _strip(b.rows) == _strip(a.rows)[: len(b.rows)]  # the same trajectory, cut short
        head_a, head_b = headline(a.rows, base.reference_acc), headline(b.rows, base.reference_acc)
        for drop in (1, 2, 5, 10):
            assert head_a[f"sparsity_at_{drop}"] == head_b[f"sparsity_at_{drop}"]


def test_trajectories_that_reach_the_same_network_share_one_evaluation(monkeypatch):
    """Two orders of pruning the same units give one network: evaluated once, rows exact."""
    import study.trajectory as trajectory

    calls = {"n": 0}
    evaluate = trajectory.Run.evaluate

    def counting(self, timing):
        calls["n"] += 1
        return evaluate(self, timing)

    setup = _setup(Protocol())
    signals = [parse("l1_filter"), parse("weight-value-l1-l0")]  # equal up to a per-layer factor
    alone = [run_protocol(setup, [s])[0] for s in signals]
    monkeypatch.setattr(trajectory.Run, "evaluate", counting)
    together = run_protocol(setup, signals)
    for a, b in zip(alone, together, strict=True):
        assert _strip(a.rows) == _strip(b.rows)
    steps = [len(r.rows) - 1 for r in together]
    states = {
        tuple(sorted(u for row in r.rows[1 : k + 1] for u in row["pruned"].split(";")))
        for r in together
        for k in range(1, len(r.rows))
    }
    assert calls["n"] == 1 + len(states) < 1 + sum(steps)  # one evaluation per distinct network state
