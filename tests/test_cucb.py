"""The ``cucb`` protocol: the CUCB index and updates against a worked example, selection counts,
gated training steps equal to steps of the network without the gated channels, executed-MAC
accounting against fvcore, Taylor rewards against finite differences, determinism."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F

from study.bandit import CUCB, arms_per_layer
from study.flops import fvcore_macs
from study.gating import GatedNetwork, MacForm, bn_units, keep_bn_stats, masked_sgd_step
from study.groups import build_groups
from study.masks import MaskedModel
from study.physical import physically_pruned
from study.protocols import make_protocol
from study.protocols.cucb import _Stepper, taylor_rewards, train_cucb
from study.trajectory import TIMINGS, Setup
from study.trial import TrialSpec
from taxonomy.errors import PrunetaxError
from taxonomy.spec import parse
from tests.nets import CLASSES, batch, make


def test_index_and_updates_follow_a_worked_example():
    # two layers: arms 0-2 (k=2) and arms 3-4 (k=1); c = 1; ties in index order
    bandit = CUCB(torch.tensor([0, 0, 0, 1, 1]), [2, 1], 1.0, torch.arange(5))
    assert bandit.select(1).tolist() == [True, True, False, True, False]  # all +inf: tie order
    bandit.update(
        torch.tensor([True, True, False, True, False]),
        torch.tensor([0.5, 1.0, 0.0, 0.2, 0.0], dtype=torch.float64),
    )
    assert bandit.counts.tolist() == [1, 1, 0, 1, 0]
    assert bandit.means.tolist() == [0.5, 1.0, 0.0, 0.2, 0.0]
    # t = 2: played arms get mu + sqrt(ln 2 / 1); the unplayed arms 2 and 4 are +inf
    r2 = math.sqrt(math.log(2))
    index = bandit.index(2)
    assert index[:2].tolist() == pytest.approx([0.5 + r2, 1.0 + r2])
    assert index[3].item() == pytest.approx(0.2 + r2) and math.isinf(index[2]) and math.isinf(index[4])
    chosen = bandit.select(2)
    assert chosen.tolist() == [False, True, True, False, True]
    bandit.update(chosen, torch.tensor([0.0, 0.0, 0.6, 0.0, 0.9], dtype=torch.float64))
    assert bandit.counts.tolist() == [1, 2, 1, 1, 1]
    assert bandit.means.tolist() == pytest.approx([0.5, 0.5, 0.6, 0.2, 0.9])
    # t = 3: 0.5+1.048, 0.5+0.741, 0.6+1.048 | 0.2+1.048, 0.9+1.048
    r3 = math.sqrt(math.log(3))
    assert bandit.index(3).tolist() == pytest.approx(
        [0.5 + r3, 0.5 + math.sqrt(math.log(3) / 2), 0.6 + r3, 0.2 + r3, 0.9 + r3]
    )
    assert bandit.select(3).tolist() == [True, False, True, False, True]
    # pruning order: fewest executions first, then the lower mean reward
    assert torch.argsort(bandit.prune_order_scores()).tolist() == [3, 0, 2, 4, 1]


def test_ties_follow_the_seeded_permutation_and_bad_input_is_named():
    bandit = CUCB(torch.zeros(4, dtype=torch.long), [2], 1.0, torch.tensor([3, 1, 0, 2]))
    assert bandit.select(1).nonzero().flatten().tolist() == [1, 3]
    assert arms_per_layer([16, 3, 1], 0.5) == [8, 2, 1]
    with pytest.raises(PrunetaxError, match="rewards must lie in"):
        bandit.update(torch.ones(4, dtype=torch.bool), torch.full((4,), 1.5))
    with pytest.raises(PrunetaxError, match="keep"):
        arms_per_layer([4], 0.0)


def _setup(name: str = "chain") -> Setup:
    model, shape = make(name)
    x, y = batch(name, n=64, seed=3)
    tx, ty = batch(name, n=40, seed=4)
    return Setup(
        model, build_groups(model, shape), [(x[:24], y[:24])], (tx, ty), (x, y), 100 / CLASSES[name], 0
    )


@pytest.mark.parametrize("name", ["chain", "residual"])
def test_a_gated_step_is_the_step_of_the_network_without_the_gated_channels(name):
    setup = _setup(name)
    net = copy.deepcopy(setup.model).train()
    chosen = torch.rand(setup.groups.n_units, generator=torch.Generator().manual_seed(1)) < 0.5
    x, y = setup.train[0][:16], setup.train[1][:16]
    # the reference: the channels pruned (masked), trained one SGD step, slices kept at zero
    ref = MaskedModel(copy.deepcopy(net), setup.groups)
    ref.prune((~chosen).nonzero().flatten().tolist())
    ref.freeze()
    opt = torch.optim.SGD(ref.model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-2)
    F.cross_entropy(ref.model(x), y).backward()
    opt.step()
    ref.apply()
    before = copy.deepcopy(net.state_dict())
    recipe = type("R", (), {"momentum": 0.9, "weight_decay": 1e-2})()
    stepper, gated = _Stepper(net, setup, recipe), GatedNetwork(net, setup.groups)
    gated.gates = chosen.float()
    stepper(gated, x, y, chosen, 0.1)
    masks = MaskedModel(net, setup.groups)
    masks.active = chosen
    for pname, mask in masks.masks().items():
        mine, theirs, old = net.get_parameter(pname), ref.model.get_parameter(pname), before[pname]
        on = mask.expand_as(mine).bool()
        torch.testing.assert_close(mine[on], theirs[on], rtol=1e-5, atol=1e-6)
        assert torch.equal(mine[~on], old[~on])  # gated slices: untouched (weight decay and momentum too)
    for bn, units in bn_units(net, setup.groups):
        off = ~torch.cat([chosen, torch.ones(1, dtype=torch.bool)])[units]
        prefix = next(n for n, m in net.named_modules() if m is bn)
        assert torch.equal(bn.running_mean[off], before[f"{prefix}.running_mean"][off])
        assert not torch.equal(bn.running_mean[~off], before[f"{prefix}.running_mean"][~off])


@pytest.mark.parametrize("name", ["chain", "nobn", "residual"])
def test_a_steps_macs_are_those_of_its_executed_channels(name):
    setup = _setup(name)
    form = MacForm(setup.groups)
    shape = tuple(setup.train[0].shape[1:])
    generator = torch.Generator().manual_seed(2)
    for _ in range(3):
        chosen = torch.rand(setup.groups.n_units, generator=generator) < 0.6
        masked = MaskedModel(copy.deepcopy(setup.model), setup.groups)
        masked.prune((~chosen).nonzero().flatten().tolist())
        assert (
            form.macs(chosen).item() == masked.counts().macs == fvcore_macs(physically_pruned(masked), shape)
        )
        assert form.weights(chosen).item() == masked.counts().weights


def test_rewards_are_the_normalised_taylor_terms():
    setup = _setup("chain")
    net = copy.deepcopy(setup.model).double().train()
    gated = GatedNetwork(net, setup.groups)
    x, y = setup.train[0][:8].double(), setup.train[1][:8]
    chosen = torch.tensor([True, False, True, True, True, False, True])
    gates = chosen.double().expand(8, -1).clone().requires_grad_()
    gated.gates = gates
    F.cross_entropy(gated(x), y, reduction="sum").backward()
    brute = torch.zeros(8, len(chosen), dtype=torch.float64)
    with torch.no_grad():
        for n in range(8):
            for u in chosen.nonzero().flatten().tolist():
                losses = []
                for eps in (1e-6, -1e-6):
                    g = chosen.double().expand(8, -1).clone()
                    g[n, u] += eps
                    gated.gates = g
                    losses.append(F.cross_entropy(gated(x), y, reduction="sum"))
                brute[n, u] = (losses[0] - losses[1]) / 2e-6
    torch.testing.assert_close(gates.grad[:, chosen], brute[:, chosen], rtol=1e-5, atol=1e-7)
    r = taylor_rewards(gates.grad, chosen, setup.groups.unit_group)
    s = brute.abs().mean(0) * chosen
    for g in range(len(setup.groups.group_sizes)):
        members = setup.groups.unit_group == g
        torch.testing.assert_close(r[members], s[members] / s[members].norm(), rtol=1e-5, atol=1e-9)
    assert r[~chosen].eq(0).all()


def test_selection_counts_and_training_macs():
    setup = _setup("residual")
    protocol = make_protocol(
        "cucb", keep=0.5, train_steps=12, train_batch_size=8, finetune_steps=0, targets=(30.0,)
    )
    net = copy.deepcopy(setup.model)
    bandit, executed = train_cucb(net, setup, protocol.recipe(setup), 0.5, 1.0, 0)
    k = torch.tensor(arms_per_layer(setup.groups.group_sizes, 0.5))
    per_layer = torch.zeros(len(k), dtype=torch.long).index_add_(0, setup.groups.unit_group, bandit.counts)
    assert per_layer.tolist() == (12 * k).tolist()  # k executions per layer and step
    assert bool((bandit.counts >= 1).all())  # every arm was tried (unplayed arms have index +inf)
    assert executed < 12 * MacForm(setup.groups).macs(torch.ones(setup.groups.n_units)).item()


def test_keep_all_is_dense_training():
    setup = _setup("chain")
    protocol = make_protocol("cucb", keep=1.0, train_steps=6, train_batch_size=8, train_lr=0.05)
    recipe = protocol.recipe(setup)
    net, dense = copy.deepcopy(setup.model), copy.deepcopy(setup.model)
    train_cucb(net, setup, recipe, 1.0, 1.0, 0)
    opt = torch.optim.SGD(
        dense.parameters(), lr=0.05, momentum=recipe.momentum, weight_decay=recipe.weight_decay
    )
    dense.train()
    x, y = setup.train
    for _, idx, lr in recipe.batches(len(y), torch.Generator().manual_seed(0)):
        for group in opt.param_groups:
            group["lr"] = lr
        opt.zero_grad()
        F.cross_entropy(dense(x[idx]), y[idx]).backward()
        opt.step()
    for (name, a), b in zip(net.state_dict().items(), dense.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)


def _strip(rows):
    return [{k: v for k, v in r.items() if k not in {f"t_{t}" for t in TIMINGS}} for r in rows]


def test_the_protocol_runs_records_and_is_deterministic_per_seed():
    setup = _setup("residual")
    protocol = make_protocol(
        "cucb", train_steps=16, train_batch_size=8, finetune_steps=4, targets=(30.0, 60.0), keep=0.5
    )
    a, b = (protocol.run(setup, [parse("random")], draws=[0])[0] for _ in range(2))
    other = protocol.run(setup, [parse("random")], draws=[1])[0]
    assert a.error is None and [r["step"] for r in a.rows] == [0, 1, 2]
    assert _strip(a.rows) == _strip(b.rows) and a.trial == b.trial
    assert _strip(a.rows) != _strip(other.rows)
    assert a.rows[1]["sparsity"] >= 30 and a.rows[2]["sparsity"] >= 60
    assert all(math.isfinite(r["finetune_acc"]) for r in a.rows[1:])
    assert a.trial["started_from"] == "scratch" and a.trial["train_steps"] == 16
    assert 0 < a.trial["train_macs_saved"] < 100
    assert a.trial["train_macs"] < a.trial["train_macs_dense"] == 3 * 8 * 16 * a.rows[0]["macs_remaining"]


def test_cucb_takes_only_the_random_signal():
    protocol = make_protocol("cucb")
    with pytest.raises(PrunetaxError, match="signal random"):
        TrialSpec("tiny_cnn", "digits", "l1_filter", protocol)
    assert TrialSpec("tiny_cnn", "digits", "random", protocol, draw=2).signal == "random"
    with pytest.raises(PrunetaxError, match="keep"):
        make_protocol("cucb", keep=1.5)


def test_bn_statistics_of_gated_channels_are_restored():
    setup = _setup("chain")
    net = copy.deepcopy(setup.model).train()
    bns = bn_units(net, setup.groups)
    before = [(bn.running_mean.clone(), bn.running_var.clone()) for bn, _ in bns]
    net(setup.train[0][:8])
    keep_bn_stats(bns, before, torch.zeros(setup.groups.n_units, dtype=torch.bool))
    assert all(
        torch.equal(bn.running_mean, m) and torch.equal(bn.running_var, v)
        for (bn, _), (m, v) in zip(bns, before, strict=True)
    )


def test_masked_sgd_leaves_masked_entries_and_momentum():
    p = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    p.grad = torch.tensor([0.5, 0.5])
    buffers = [None]
    masked_sgd_step([(p, torch.tensor([1.0, 0.0]))], buffers, lr=0.1, momentum=0.9, weight_decay=0.1)
    assert p.tolist() == pytest.approx([1.0 - 0.1 * 0.6, 2.0]) and buffers[0].tolist() == pytest.approx(
        [0.6, 0.0]
    )
    p.grad = torch.tensor([0.0, 1.0])
    masked_sgd_step([(p, torch.tensor([0.0, 1.0]))], buffers, lr=0.1, momentum=0.9, weight_decay=0.0)
    assert buffers[0].tolist() == pytest.approx([0.6, 1.0]) and p[1].item() == pytest.approx(1.9)


def test_a_diverging_draw_fails_alone_and_is_stored_as_failed():
    from types import SimpleNamespace

    from study.execute import _record
    from taxonomy.equivalence import Context

    setup = _setup("chain")
    protocol = make_protocol("cucb", train_steps=6, train_batch_size=8, train_lr=1e30, finetune_steps=0)
    (failed,) = protocol.run(setup, [parse("random")])
    assert failed.rows == [] and "diverged" in failed.error
    base = SimpleNamespace(
        reference_acc=20.0,
        checkpoint=SimpleNamespace(config_hash="c", splits=SimpleNamespace(fingerprint="f")),
        splits=SimpleNamespace(test=SimpleNamespace(y=torch.zeros(3))),
    )
    record = _record(TrialSpec("tiny_cnn", "digits", "random", protocol), failed, base, Context(), {})
    assert record.trial["status"] == "failed" and "diverged" in record.trial["error"] and record.steps == []


def test_a_sweep_spec_with_cucb_on_other_signals_fails_before_running():
    from study.sweep.plan import expand
    from study.sweep.spec import parse_spec

    text = (
        '[sweep]\nmodels = ["tiny_cnn"]\nsignals = ["l1_filter"]\n[[runs]]\nprotocol = "cucb"\nkeep = 0.25\n'
    )
    with pytest.raises(PrunetaxError, match="signal random"):
        expand(parse_spec(text))
    ok = expand(parse_spec(text.replace("keep = 0.25", 'keep = 0.25\nsignals = ["random"]')))
    assert [(t.signal, t.draw, t.protocol.keep) for t in ok] == [("random", d, 0.25) for d in range(5)]
