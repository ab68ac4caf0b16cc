"""Anwar's search baselines (issue 13, item 3): best-of-N random masks and activation voting.

Best-of-N is checked against brute force (every drawn mask's eval loss recomputed on an
independent masked copy) and against the oracle at a target one unit reaches; voting
against votes counted by hand on a two-conv network whose activations are known.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from study.groups import build_groups
from study.masks import MaskedModel
from study.oracle import oracle_scores
from study.protocols import make_protocol
from study.protocols.best_of_n import PrefixSparsity
from study.trajectory import Run, Setup, choose_units, draw_seed, tie_order
from study.unit_scores import ScoringContext, Workspace
from study.voting import activation_votes, votes_of_lowest, voting_scores
from taxonomy.errors import PrunetaxError
from taxonomy.spec import parse
from tests.nets import CLASSES, batch, make

RANDOM = parse("random")


def _setup(name: str = "chain", seed: int = 0) -> Setup:
    model, shape = make(name)
    x, y = batch(name, n=48, seed=3)
    tx, ty = batch(name, n=40, seed=4)
    groups = build_groups(model, shape)
    return Setup(
        model, groups, [(x[:24], y[:24]), (x[24:], y[24:])], (tx, ty), (x, y), 100 / CLASSES[name], seed
    )


def _loss_without(setup: Setup, units: list[int]) -> float:
    """Mean eval cross-entropy of an independent copy of the network with ``units`` removed."""
    masked = MaskedModel(copy.deepcopy(setup.model), setup.groups)
    masked.prune(units)
    x = torch.cat([b[0] for b in setup.eval_batches])
    y = torch.cat([b[1] for b in setup.eval_batches])
    with torch.no_grad():
        return F.cross_entropy(masked.model.eval()(x), y, reduction="none").double().mean().item()


@pytest.mark.parametrize("name", ["chain", "nobn", "residual"])
def test_prefix_sparsity_equals_the_masked_counts_for_every_prefix(name):
    setup = _setup(name)
    run = Run(setup, [RANDOM], "pooled", "output")
    prefix = PrefixSparsity(setup.groups, run.initial.weights)
    g, n = torch.Generator().manual_seed(1), setup.groups.n_units
    for _ in range(5):
        order = run.choose(torch.rand(n, generator=g, dtype=torch.float64), n)
        curve = prefix.curve(order)
        for p in range(len(order) + 1):
            masked = MaskedModel(setup.model, setup.groups)
            masked.active[order[:p]] = False
            assert float(curve[p]) == 100.0 * (1 - masked.counts().weights / run.initial.weights)
        assert prefix.cut(curve, 0.0) == 0 and prefix.cut(curve, 101.0) == len(order)


def test_best_of_n_at_a_one_unit_target_finds_the_oracles_choice():
    """At 1 % every mask is one unit; 200 uniform draws over 7 units miss none (p < 1e-13), so
    the best mask is the unit whose removal raises eval loss least: the oracle's argmin."""
    setup = _setup("chain")
    (result,) = make_protocol("best_of_n", n_masks=200, targets=(1.0,)).run(setup, [RANDOM])
    masked = MaskedModel(setup.model, setup.groups)
    change = oracle_scores(masked, setup.eval_batches)
    best = int(torch.argmin(change))
    row = result.rows[1]
    assert row["pruned"] == setup.groups.unit_names()[best] and row["n_pruned"] == 1
    assert row["oracle_evals"] == 200 and result.stop_reason == "all targets evaluated"
    assert result.trial["oracle_evals"] == 200
    assert row["eval_loss"] == pytest.approx(result.rows[0]["eval_loss"] + float(change[best]), abs=1e-6)


def _drawn_masks(setup: Setup, n_masks: int, target: float, draw: int = 0) -> list[list[int]]:
    """The masks best_of_n draws, rebuilt from its definition: uniform keys from the draw's
    generator, one unit per group kept, cut by brute-force counts."""
    g = torch.Generator().manual_seed(draw_seed(setup.seed, draw))
    n, masked = setup.groups.n_units, MaskedModel(setup.model, setup.groups)
    initial = masked.counts().weights
    out = []
    for _ in range(n_masks):
        keys = torch.rand(n, generator=g, dtype=torch.float64)
        order = choose_units(keys, masked, n, tie_order(n, setup.tie_seed))
        for p in range(len(order) + 1):
            masked.active[:] = True
            masked.active[order[:p]] = False
            if 100.0 * (1 - masked.counts().weights / initial) >= target or p == len(order):
                break
        masked.active[:] = True
        out.append(order[:p])
    return out


def test_best_of_n_keeps_the_drawn_mask_with_the_lowest_eval_loss():
    setup = _setup("residual")
    targets, n_masks = (15.0, 40.0), 8
    (result,) = make_protocol("best_of_n", n_masks=n_masks, targets=targets).run(setup, [RANDOM])
    names = setup.groups.unit_names()
    for row, target in zip(result.rows[1:], targets, strict=True):
        masks = _drawn_masks(setup, n_masks, target)
        losses = [_loss_without(setup, m) for m in masks]
        best = masks[losses.index(min(losses))]  # the first among equals
        assert row["pruned"] == ";".join(names[u] for u in best)
        assert row["sparsity"] >= target and row["oracle_evals"] == n_masks
        assert row["eval_loss"] == pytest.approx(min(losses), abs=1e-6)
        assert len({tuple(m) for m in masks}) > 1  # the masks differ: a real search


def test_best_of_n_draws_are_independent_and_deterministic():
    setup = _setup("residual")
    protocol = make_protocol("best_of_n", n_masks=4, targets=(30.0,))
    a, b = protocol.run(setup, [RANDOM, RANDOM], draws=[0, 1])
    (again,) = protocol.run(setup, [RANDOM], draws=[1])
    strip = lambda rows: [{k: v for k, v in r.items() if not k.startswith("t_")} for r in rows]  # noqa: E731
    assert strip(b.rows) == strip(again.rows)
    assert _drawn_masks(setup, 4, 30.0, 0) != _drawn_masks(setup, 4, 30.0, 1)
    assert a.rows[0] == b.rows[0]  # both start from the same unpruned network


def test_best_of_n_runs_the_random_signal_only():
    with pytest.raises(PrunetaxError, match="best_of_n .* signal `random`"):
        from study.trial import TrialSpec

        TrialSpec("tiny_cnn", "digits", "l1_filter", make_protocol("best_of_n"))
    setup = _setup("chain")
    ok, bad = make_protocol("best_of_n", n_masks=2, targets=(20.0,)).run(setup, [RANDOM, parse("l1_filter")])
    assert ok.error is None and len(ok.rows) == 2
    assert "signal `random`" in bad.error and len(bad.rows) == 1


# ----------------------------------------------------------------------------- voting


def test_votes_of_lowest_counted_by_hand():
    acts = torch.tensor([[1.0, 2.0, 3.0, 0.5], [4.0, 4.0, 1.0, 4.0], [0.0, 0.0, 0.0, 7.0]])
    votes = votes_of_lowest(acts, 2)
    expected = [[1, 0, 0, 1], [1 / 3, 1 / 3, 1, 1 / 3], [2 / 3, 2 / 3, 2 / 3, 0]]
    torch.testing.assert_close(votes, torch.tensor(expected, dtype=torch.float64))
    torch.testing.assert_close(votes.sum(1), torch.full((3,), 2.0, dtype=torch.float64))  # k per image
    group = torch.tensor([0, 0, 1, 1, 1])
    active = torch.tensor([True, True, True, False, True])
    five = torch.tensor([[1.0, 2.0, 5.0, -9.0, 6.0], [3.0, 2.0, 8.0, -9.0, 8.0]])
    # group 0: 2 active units, k = 1: votes 1, 1; group 1: units 2 and 4 (3 is pruned), k = 1:
    # image 0 votes for unit 2, image 1 splits its vote between the tied 2 and 4
    got = activation_votes(five, group, active, fraction=0.1)
    torch.testing.assert_close(got, torch.tensor([1.0, 1.0, 1.5, 0.0, 0.5], dtype=torch.float64))


class VoteNet(nn.Module):
    """1x1 convs on constant 2x2 images: every activation sum is 4 x a hand-computable number."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(2, 4, 1, bias=False)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(4, 2, 1, bias=False)
        self.relu2 = nn.ReLU()
        self.fc = nn.Linear(2 * 2 * 2, 3)
        with torch.no_grad():  # conv1 channels: a, b, a + b, 2(a + b); conv2: conv1's 0 and 3
            self.conv1.weight.copy_(torch.tensor([[1.0, 0], [0, 1], [1, 1], [2, 2]]).view(4, 2, 1, 1))
            self.conv2.weight.copy_(torch.tensor([[1.0, 0, 0, 0], [0, 0, 0, 1]]).view(2, 4, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.relu2(self.conv2(self.relu1(self.conv1(x)))), 1))


def _vote_setup() -> Setup:
    model = VoteNet().eval()
    ab = torch.tensor([[1.0, 3.0], [3.0, 1.0], [1.0, 1.0], [2.0, 5.0]])  # (a, b) of each image
    x = ab.view(4, 2, 1, 1).expand(4, 2, 2, 2).contiguous()
    y = torch.tensor([0, 1, 2, 0])
    return Setup(model, build_groups(model, (2, 2, 2)), [(x, y)], (x, y), (x, y), 50.0, 0)


def test_voting_counts_by_hand_and_prunes_the_most_voted_first():
    """conv1 sums (a, b, a+b, 2(a+b)) x 4: images (1,3), (2,5) vote for unit 0, (3,1) for unit 1,
    (1,1) splits its vote (a tie): 2.5 and 1.5 of 4 votes. conv2 reads (a, 2(a+b)): unit 0 always."""
    setup = _vote_setup()
    ws = Workspace(setup.model, setup.groups)
    scores = voting_scores(ScoringContext(ws, setup.eval_batches, None))
    got = dict(zip(setup.groups.unit_names(), scores.tolist(), strict=True))
    assert got == {
        "conv1:0": -2.5 / 4,
        "conv1:1": -1.5 / 4,
        "conv1:2": 0.0,
        "conv1:3": 0.0,
        "conv2:0": -1.0,
        "conv2:1": 0.0,
    }
    (result,) = make_protocol("sensitivity").run(setup, [parse("activation_voting")])
    # then conv1 {1, 2, 3}: every image's lowest is unit 1; then {2, 3}: unit 2
    assert [r["pruned"] for r in result.rows[1:]] == ["conv2:0", "conv1:0", "conv1:1", "conv1:2"]
    assert result.rows[1]["score"] == -1.0


def test_voting_on_coupled_units_pools_members_and_casts_k_votes_per_group():
    setup = _setup("residual")
    ws = Workspace(setup.model, setup.groups)
    ws.masked.prune([1])
    scores = voting_scores(ScoringContext(ws, setup.eval_batches, None))
    groups, active = setup.groups, ws.masked.active
    for g in torch.unique(groups.unit_group).tolist():
        members = active & (groups.unit_group == g)
        k = math.ceil(0.1 * int(members.sum()))
        assert float(-scores[members].sum()) == pytest.approx(k)  # each image: k votes in the group
    # the residual group's units are pooled: each member conv's channel sum adds up
    layers = ws.collector.collect(setup.eval_batches, _needs())
    sums = torch.cat([layer.activation.value.double().sum(-1) for layer in layers], 1)
    pooled = torch.zeros(sums.shape[0], groups.n_units, dtype=torch.float64).index_add_(
        1, groups.members, sums
    )
    votes = activation_votes(pooled, groups.unit_group, active)
    torch.testing.assert_close(scores, -votes / sums.shape[0])
    assert groups.coupled


def _needs():
    from taxonomy.components import Input
    from taxonomy.statistics import Needs

    return Needs.from_names({Input.ACTIVATION: {"value"}})


def test_explain_and_the_cli_know_the_new_methods(capsys):
    from study.cli import build_parser, main
    from study.cli.run import protocol_from_args
    from taxonomy.listing import explain

    text = explain(parse("activation_voting"))
    assert "Anwar et al. 2017" in text and "reference signal" in text
    assert main(["explain", "activation_voting"]) == 0 and "votes" in capsys.readouterr().out
    assert main(["signals", "--aliases"]) == 0
    listing = capsys.readouterr().out
    for method in ("activation_voting  activation-sum voting (Anwar", "best_of_n ", "myopic "):
        assert method in listing, method
    args = build_parser().parse_args(
        ["run", "--signal", "random", "--protocol", "best_of_n", "--n-masks", "7"]
    )
    assert protocol_from_args(args).n_masks == 7
    assert main(["run", "--signal", "l1_filter", "--protocol", "best_of_n", "--store", "/nonexistent/x"]) == 2
    assert "signal `random`" in capsys.readouterr().err


SPEC = """
[sweep]
name = "methods"
store = "{store}"
models = ["tiny_cnn"]
datasets = ["digits"]
base_seeds = [0]
signals = ["taylor_fo", "activation_voting"]
random_draws = 2

[[runs]]
protocol = "best_of_n"
signals = ["{signal}"]
n_masks = 10

[[runs]]
protocol = "myopic"
k = 3
candidates_from = ["l1_filter"]
"""


def test_sweeps_plan_the_new_methods_and_reject_a_wrong_signal(tmp_path):
    from study.sweep.plan import expand
    from study.sweep.spec import parse_spec

    trials = expand(parse_spec(SPEC.format(store=tmp_path / "s", signal="random")))
    kinds = sorted((t.protocol.name, t.signal, t.draw) for t in trials)
    assert kinds == [
        ("best_of_n", "random", 0),
        ("best_of_n", "random", 1),
        ("myopic", "activation-taylor-abs_sum-l2", 0),
        ("myopic", "activation_voting", 0),
    ]
    myopic = next(t for t in trials if t.protocol.name == "myopic")
    assert myopic.protocol.candidates_from == ("weight-value-l1-none",) and myopic.protocol.k == 3
    with pytest.raises(PrunetaxError, match="best_of_n .* signal `random`"):
        expand(parse_spec(SPEC.format(store=tmp_path / "s", signal="l1_filter")))


def test_prunetax_run_stores_both_searches_with_their_cost(model_cache, tmp_path):
    from study.cli import main
    from study.store import load

    store = tmp_path / "store"
    common = ["--model", "tiny_cnn", "--store", str(store), "--cache-dir", str(model_cache)]
    best = ["--protocol", "best_of_n", "--n-masks", "3", "--targets", "20,40", "--random-draws", "1"]
    assert main(["run", "--signal", "random", *best, *common]) == 0
    myopic = ["--protocol", "myopic", "--k", "2", "--candidates-from", "l1_filter", "--target-sparsity", "8"]
    assert main(["run", "--signal", "activation_voting", *myopic, *common]) == 0
    trials, steps = load(store, "trials"), load(store, "steps")
    assert set(trials["protocol"]) == {"best_of_n", "myopic"} and (trials["status"] == "ok").all()
    spent = steps.dropna(subset=["oracle_evals"]).merge(trials[["run_key", "protocol"]], on="run_key")
    assert set(spent.loc[spent["protocol"] == "best_of_n", "oracle_evals"]) == {3}
    assert spent.loc[spent["protocol"] == "myopic", "oracle_evals"].between(2, 4).all()
    total = trials.set_index("protocol")["oracle_evals"]
    assert (
        total["best_of_n"] == 6
        and total["myopic"] == spent.loc[spent["protocol"] == "myopic", "oracle_evals"].sum()
    )
