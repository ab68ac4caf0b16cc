"""Batched trajectories (study.batched) compute what the lockstep engine computes.

The batched engine stacks many pruning states of one network into one pass (channel
gates instead of weight masks). These tests run the same trials on both engines and
demand the same pruning decisions and ``steps`` rows equal within 1e-5; a decision may
differ only between scores that tie within 1e-6 relative, and such ties are counted
(printed with ``-s``). They also prove gates equal masks on networks that need
input gates (a sigmoid between convs), the batched oracle equal to the unit-by-unit one,
which runs the engine serves, and that passes shrink after an out-of-memory error.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from study import models
from study.batched import Batching, engine_for, using
from study.batched.engine import BatchedRun
from study.batched.forward import GatedNet, gated_losses
from study.batched.gates import Gate
from study.batched.memory import fit, halving
from study.batched.oracle import batched_oracle
from study.batched.stats import StackedStatistics
from study.collect import Collector
from study.evaluation import losses_and_hits
from study.groups import build_groups
from study.masks import MaskedModel
from study.oracle import oracle_scores
from study.protocols import make_protocol
from study.trajectory import TIMINGS, Run, Setup
from taxonomy.errors import PrunetaxError
from taxonomy.spec import all_cells, parse
from taxonomy.statistics import Needs
from tests.nets import make, randomize

SIGNALS = [
    "best_gradient",  # activation taylor2_gn (backward)
    "l1_filter",  # weight value (data-free)
    "obd",  # weight hessian_lm (LM pass)
    "activation-apoz-sum-l0",  # forward only; ties often
    "activation-value-l2-l1",  # forward, layer norm
    "weight-taylor-l2-weights_removed",  # per-example weight gradients
    "weight-gradient-abs_sum-l0_active",
    "activation-hessian_lm-sqr_sum-l2",
    "activation-taylor2_lm-abs_sum-none",
    "weight-taylor2_lm-l1-l1",
    "activation-centered-sqr_sum-macs_removed",
    "random",
    "oracle",
]
TIMING_COLUMNS = {f"t_{k}" for k in TIMINGS}


def _alive(model: nn.Module, x: torch.Tensor) -> nn.Module:
    """BN statistics measured on ``x`` and random affine terms near (1, 0): untrained channels
    that are not dead, so that signals disagree (dead channels tie at 0 under every signal)."""
    g = torch.Generator().manual_seed(1)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # a plain average over the calibration batch
    with torch.no_grad():
        model.train()(x)
        for bn in bns:
            bn.weight.copy_(1 + 0.3 * torch.randn(bn.num_features, generator=g))
            bn.bias.copy_(0.3 * torch.randn(bn.num_features, generator=g))
    return model.eval()


def _registry_setup(name: str, channels: int, size: int, n_eval: int = 8, n_test: int = 24) -> Setup:
    """A registry network with random weights and BN statistics of random data of its shape."""
    torch.manual_seed(0)
    shape = (channels, size, size)
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2 * n_eval + n_test, *shape, generator=g)
    y = torch.randint(0, 10, (2 * n_eval + n_test,), generator=g)
    model = _alive(models.build(name, channels, 10, size), x)
    batches = [(x[:n_eval], y[:n_eval]), (x[n_eval : 2 * n_eval], y[n_eval : 2 * n_eval])]
    test = (x[2 * n_eval :], y[2 * n_eval :])
    return Setup(model, build_groups(model, shape), batches, test, test, 10.0, seed=3, model_name=name)


def _same(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-5, abs_tol=1e-5)
    return a == b


def compare(lockstep: list, batched: list) -> int:
    """Assert both engines' results agree; return the decisions that differed (each must be
    between scores that tie within 1e-6 relative; the trajectories are not compared after it)."""
    ties = 0
    for a, b in zip(lockstep, batched, strict=True):
        assert a.error is None and b.error is None, (a.error, b.error)
        for ra, rb in zip(a.rows, b.rows, strict=False):
            if ra["pruned"] != rb["pruned"]:
                sa, sb = ra["score"], rb["score"]
                assert abs(sa - sb) <= 1e-6 * max(abs(sa), abs(sb)), (a.signal.id, ra["step"], sa, sb)
                ties += 1
                break
            bad = {k: (ra[k], rb[k]) for k in ra if k not in TIMING_COLUMNS and not _same(ra[k], rb[k])}
            assert not bad, (a.signal.id, ra["step"], bad)
        else:
            assert len(a.rows) == len(b.rows) and a.stop_reason == b.stop_reason, a.signal.id
    return ties


class _Spy:
    """Counts trajectories per statistics pass and gate rows per evaluation."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.passes: list[int] = []
        self.rows: list[int] = []
        stats_call, losses = StackedStatistics.__call__, gated_losses

        def stats(this, actives, needs):  # noqa: ANN001, ANN202
            self.passes.append(actives.shape[0])
            return stats_call(this, actives, needs)

        def rows(net, actives, *args):  # noqa: ANN001, ANN202
            self.rows.append(actives.shape[0])
            return losses(net, actives, *args)

        monkeypatch.setattr(StackedStatistics, "__call__", stats)
        monkeypatch.setattr("study.batched.engine.gated_losses", rows)


def _equal_runs(name: str, channels: int, size: int, params: dict, signals: list[str], spy: _Spy) -> int:
    setup = _registry_setup(name, channels, size)
    protocol = make_protocol("sensitivity", **params)
    specs = [parse(s) for s in signals]
    lockstep = protocol.run(setup, specs)
    spy.passes.clear()
    with using(Batching("batched", 4)):
        batched = protocol.run(setup, specs)
    ties = compare(lockstep, batched)
    assert max(spy.passes) > 1 and max(spy.rows) > 1  # trajectories really were stacked
    print(f"\n{name} {params}: {sum(len(r.rows) for r in batched)} rows compared, {ties} ties")
    return ties


NO_ORACLE = SIGNALS[:-1]  # the unit-by-unit oracle of a ResNet is the slow side of the comparison


@pytest.mark.parametrize(
    ("name", "channels", "size", "params", "signals"),
    [
        ("tiny_cnn", 1, 8, {"target_sparsity": 10.0}, SIGNALS),
        ("tiny_resnet", 1, 8, {"target_sparsity": 10.0, "test_interval": 3}, NO_ORACLE),
        ("resnet20", 3, 8, {"target_sparsity": 1.5}, NO_ORACLE),
    ],
    ids=["tiny_cnn", "tiny_resnet", "resnet20"],
)
def test_batched_runs_equal_lockstep_runs(name, channels, size, params, signals, monkeypatch):
    """One unit per step (the paper's protocol), M = 4 trajectories per pass."""
    _equal_runs(name, channels, size, params, signals, _Spy(monkeypatch))


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "channels", "size", "params"),
    [
        ("tiny_cnn", 1, 8, {}),
        ("tiny_resnet", 1, 8, {"test_interval": 2}),
        ("resnet20", 3, 8, {"target_sparsity": 20.0}),
        ("resnet20", 3, 8, {"channels_per_step": 16, "test_interval": 2}),
    ],
    ids=["tiny_cnn", "tiny_resnet", "resnet20", "resnet20-coarse"],
)
def test_batched_runs_equal_lockstep_runs_to_the_end(name, channels, size, params, monkeypatch):
    """Every signal of the list pruned until nothing is left (or far), with the oracle."""
    _equal_runs(name, channels, size, params, SIGNALS, _Spy(monkeypatch))


def test_random_draws_and_several_signals_per_branch():
    """Several draws of random, and signals that share branches, on the plain test network."""
    model, shape = make("chain")
    g = torch.Generator().manual_seed(5)
    x, y = torch.randn(40, *shape, generator=g), torch.randint(0, 5, (40,), generator=g)
    setup = Setup(model, build_groups(model, shape), [(x[:8], y[:8])], (x[8:], y[8:]), (x, y), 20.0, seed=4)
    signals = [parse(s) for s in ["random"] * 3 + ["l1_filter", "l2_filter", "weight-value-l1-l0", "oracle"]]
    draws = [0, 1, 2, 0, 0, 0, 0]
    protocol = make_protocol("sensitivity")
    lockstep = protocol.run(setup, signals, draws=draws)
    with using(Batching("batched", 2)):
        print(f"\nchain with draws: {compare(lockstep, protocol.run(setup, signals, draws=draws))} ties")


class SigmoidNet(nn.Module):
    """conv-BN-sigmoid-conv: sigmoid(0) != 0, so pruned channels need input gates."""

    def __init__(self) -> None:
        super().__init__()
        self.c1, self.b1, self.s1 = nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.Sigmoid()
        self.c2, self.r2 = nn.Conv2d(4, 3, 3, padding=1), nn.ReLU()
        self.fc = nn.Linear(3 * 4 * 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.r2(self.c2(self.s1(self.b1(self.c1(x)))))
        return self.fc(torch.flatten(x, 1))


@pytest.mark.parametrize("name", ["sigmoid", "chain", "nobn", "residual"])
def test_gated_forward_and_statistics_equal_masked_ones(name):
    if name == "sigmoid":
        torch.manual_seed(0)
        model, shape = randomize(SigmoidNet()), (2, 4, 4)
    else:
        model, shape = make(name)
    groups = build_groups(model, shape)
    x = torch.randn(6, *shape, generator=torch.Generator().manual_seed(1))
    y = torch.randint(0, 3, (6,), generator=torch.Generator().manual_seed(2))
    actives = torch.rand(3, groups.n_units, generator=torch.Generator().manual_seed(3)) > 0.4
    actives[0] = True
    net = GatedNet.of(model, groups)
    gated_loss, _ = gated_losses(net, actives, x, y, images=1024)
    stacked = StackedStatistics(model, groups, "output", [(x, y)])
    needs = Needs.of(all_cells())
    shares = stacked(actives, needs)
    for m in range(3):
        masked = MaskedModel(__import__("copy").deepcopy(model), groups)
        masked.prune(torch.nonzero(~actives[m]).flatten().tolist())
        torch.testing.assert_close(gated_loss[m], losses_and_hits(masked.model, x, y)[0])
        alone = Collector(masked).collect([(x, y)], needs)
        for a, b in zip(alone, shares[m], strict=True):
            keep = a.active  # pruned channels are never ranked: only active ones must agree
            for ia, ib in ((a.weight, b.weight), (a.activation, b.activation)):
                for stat in ia.tensors:
                    torch.testing.assert_close(ia[stat][:, keep], ib[stat][:, keep], msg=f"{a.name} {stat}")
                torch.testing.assert_close(ia.count_active, ib.count_active)
            torch.testing.assert_close(a.weights_removed, b.weights_removed)
    gates = sorted(n for n, m in net.module.named_modules() if isinstance(m, Gate))
    if name == "sigmoid":  # c1's gate is b1's; c2 needs an input gate (sigmoid(0) != 0), fc does not
        assert gates == ["_prunetax_gate_in_c2", "_prunetax_gate_out_b1", "_prunetax_gate_out_c2"]
    if name == "chain":  # conv1's gate is bn1's; conv2 (no BN) keeps its own; no input gate needed
        assert gates == ["_prunetax_gate_out_bn1", "_prunetax_gate_out_conv2"]


def test_batched_oracle_equals_unit_by_unit_oracle():
    model, shape = make("residual")
    masked = MaskedModel(model, build_groups(model, shape))
    masked.prune([1, 6, 9])
    batches = [tuple(t[:12] for t in _xy(shape, 24, 5)), tuple(t[12:] for t in _xy(shape, 24, 5))]
    expected = oracle_scores(masked, batches)
    torch.testing.assert_close(batched_oracle(masked, batches), expected, rtol=0, atol=1e-9)
    some = [0, 1, 4, 7]
    got = batched_oracle(masked, batches, units=some)
    assert torch.isinf(got[[u for u in range(len(got)) if u not in (0, 4, 7)]]).all()
    torch.testing.assert_close(got[[0, 4, 7]], expected[[0, 4, 7]], rtol=0, atol=1e-9)


def _xy(shape: tuple[int, ...], n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, *shape, generator=g), torch.randint(0, 5, (n,), generator=g)


def test_engine_choice(monkeypatch):
    monkeypatch.delenv("PRUNETAX_TRAJECTORIES_PER_PASS", raising=False)
    setup = _registry_setup("tiny_cnn", 1, 8)
    sensitivity, retrain = make_protocol("sensitivity"), make_protocol("retrain", retrain_steps=1)
    assert engine_for(sensitivity, setup, None) is Run  # auto on the CPU: lockstep, unchanged
    with using(Batching.parse(2)):
        assert engine_for(sensitivity, setup, None).func is BatchedRun
        assert engine_for(retrain, setup, retrain.retrainer(setup)) is Run  # weights diverge: unbatched
        assert engine_for(make_protocol("myopic"), setup, None) is Run  # measures on the live network
    with using(Batching.parse("off")):
        assert engine_for(sensitivity, setup, None) is Run
    assert Batching.parse("on") == Batching("batched") and Batching.parse(" 16 ") == Batching("batched", 16)
    monkeypatch.setenv("PRUNETAX_TRAJECTORIES_PER_PASS", "3")  # outside a scope: the variable
    factory = engine_for(sensitivity, setup, None)
    assert factory.func is BatchedRun and factory.keywords["batching"] == Batching("batched", 3)
    with using(Batching.parse("off")):  # a scope wins
        assert engine_for(sensitivity, setup, None) is Run
    for bad in ("fast", 0, -3, 2.5, True):
        with pytest.raises(PrunetaxError, match="PRUNETAX_TRAJECTORIES_PER_PASS"):
            Batching.parse(bad)


def test_size_from_memory_and_halving_on_overflow(monkeypatch):
    monkeypatch.setattr("study.batched.memory._usable", lambda device, share: int(share * 10e9))
    assert fit(10**9, torch.device("cpu")) == 7 and fit(10**9, torch.device("cpu"), 0.5) == 3
    assert fit(10**15, torch.device("cpu")) == 1

    def needs_two(size: int) -> int:
        if size > 2:
            raise torch.OutOfMemoryError("too big")
        return size * 10

    assert halving(needs_two, 16) == (20, 2)
    with pytest.raises(torch.OutOfMemoryError):
        halving(lambda size: needs_two(3), 4)


def test_auto_size_and_out_of_memory_recovery(monkeypatch):
    """Without a size the first pass measures one trajectory and fits the rest; a pass that runs
    out of memory is halved and run again; the rows do not change."""
    setup = _registry_setup("tiny_cnn", 1, 8)
    protocol = make_protocol("sensitivity", target_sparsity=20.0)
    signals = [parse(s) for s in SIGNALS[:6]]
    lockstep = protocol.run(setup, signals)
    spy = _Spy(monkeypatch)
    call = StackedStatistics.__call__

    def small_memory(this, actives, needs):  # noqa: ANN001, ANN202
        if actives.shape[0] > 2:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return call(this, actives, needs)

    monkeypatch.setattr(StackedStatistics, "__call__", small_memory)
    with using(Batching("batched")):
        print(f"\ntiny_cnn, simulated overflow: {compare(lockstep, protocol.run(setup, signals))} ties")
    assert spy.passes[0] == 1 and max(spy.passes) == 2


def test_a_pass_too_large_even_alone_fails_its_signals_not_the_run(monkeypatch):
    def no_memory(this, actives, needs):  # noqa: ANN001, ANN202
        raise torch.OutOfMemoryError("CUDA out of memory (simulated)")

    monkeypatch.setattr(StackedStatistics, "__call__", no_memory)
    setup = _registry_setup("tiny_cnn", 1, 8)
    with using(Batching("batched", 2)):
        results = make_protocol("sensitivity").run(setup, [parse("best_gradient"), parse("random")])
    assert "out of memory" in results[0].error and results[1].error is None


def test_a_nan_signal_fails_alone_when_batched():
    setup = _registry_setup("tiny_cnn", 1, 8)
    with torch.no_grad():
        setup.model.get_submodule("features.0").weight[0, 0, 0, 0] = float("nan")
    with using(Batching("batched", 3)):
        results = make_protocol("sensitivity").run(setup, [parse("l1_filter"), parse("random")])
    assert "NaN" in results[0].error and results[1].error is None


@pytest.mark.parametrize("moved", ["per_example", "everything"])
def test_statistics_on_another_device_score_there(moved):
    """A GPU run scores statistics that live on the GPU: per-example tensors only (the lockstep
    collector keeps counts on the CPU) or every tensor (each share of a batched pass). ``meta``
    tensors stand in for a GPU: they check devices as strictly and need none."""
    from dataclasses import replace

    from study.batched.stats import _on
    from taxonomy.bank import UnitMap, score

    model, shape = make("residual")
    groups = build_groups(model, shape)
    masked = MaskedModel(model, groups)
    masked.prune([1])
    x, y = _xy(shape, 6, 3)
    cells = list(all_cells())
    meta = torch.device("meta")

    def per_example(stats):  # noqa: ANN001, ANN202
        return replace(stats, tensors={k: v.to(meta) for k, v in stats.tensors.items()})

    layers = []
    for layer in Collector(masked).collect([(x, y)], Needs.of(cells)):
        act = None if layer.activation is None else per_example(layer.activation)
        layer = replace(layer, weight=per_example(layer.weight), activation=act)
        layers.append(_on(meta, layer) if moved == "everything" else layer)
    for units in (None, UnitMap(groups.members, groups.n_units)):
        out = score(cells, layers, units)
        assert out.device == meta and out.shape[0] == len(cells)
