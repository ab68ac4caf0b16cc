"""The study's design: taps do not alias in-place ops, ties break by a seeded permutation,
repeats are independent (their own stratified split and eval batches), and ``random`` is
a distribution of several draws."""

from __future__ import annotations

import torch
from torch import nn

from study import data
from study.collect import Collector
from study.groups import build_groups
from study.masks import MaskedModel
from study.protocols import make_protocol
from study.saliency import PAPER_SALIENCY
from study.trajectory import Setup, choose_units, draw_seed, tie_order
from taxonomy.bank import score
from taxonomy.spec import parse
from taxonomy.statistics import Needs
from tests.nets import CLASSES, batch, make


class InPlaceNet(nn.Module):
    """A user's plain Sequential: conv then an in-place ReLU, as torchvision writes them."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(4, 3, 3, padding=1),
            nn.ReLU(inplace=True),
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def test_the_conv_tap_stores_its_own_copy_under_in_place_ops():
    torch.manual_seed(0)
    model = InPlaceNet().eval()
    masked = MaskedModel(model, build_groups(model, (1, 8, 8)))
    x, y = batch("chain", n=6)
    value = [parse("activation-value-sum-none"), parse("activation-value-l2-l0")]
    alone = Collector(masked, "conv").collect([(x, y)], Needs.of(value))
    both = Collector(masked, "conv").collect([(x, y)], Needs.of([*value, parse("taylor_fo")]))
    raw = model.body[0](x)  # the true raw conv output: negative values included
    assert raw.min() < 0
    torch.testing.assert_close(alone[0].activation.value, raw.detach().flatten(2))
    torch.testing.assert_close(score(value, alone), score(value, both))
    lm = Collector(masked, "conv").collect([(x, y)], Needs.of([*value, parse("obd")]))
    torch.testing.assert_close(score(value, lm), score(value, alone))  # the LM pass does not write taps


def test_ties_follow_a_seeded_permutation_not_the_unit_index():
    model, shape = make("chain")
    masked = MaskedModel(model, build_groups(model, shape))
    n = masked.groups.n_units
    scores = torch.zeros(n, dtype=torch.float64)
    scores[0] = -1.0  # one clear minimum, every other unit tied
    by_index = choose_units(scores, masked, 3)
    assert by_index == [0, 1, 2]
    ties = tie_order(n, seed=7)
    picked = choose_units(scores, masked, 3, ties)
    rest = [u for u in ties.tolist() if u != 0]
    assert picked == [0, *rest[:2]]  # the minimum first, then the tied units in the permutation's order
    assert torch.equal(tie_order(n, 7), ties) and not torch.equal(tie_order(n, 8), ties)


def test_an_all_tied_signal_does_not_prune_the_last_conv_first():
    """Torch-Pruning numbers the last conv's units first: index order would strip one layer."""
    from study import models

    net = models.build("tiny_cnn", 1, 10, 8)
    masked = MaskedModel(net, build_groups(net, (1, 8, 8)))
    groups = masked.groups
    tied = torch.zeros(groups.n_units, dtype=torch.float64)
    roots = lambda units: {groups.group_roots[int(groups.unit_group[u])] for u in units}  # noqa: E731
    assert roots(choose_units(tied, masked, 8)) == {groups.group_roots[0]} == {"features.7"}  # the last conv
    assert len(roots(choose_units(tied, masked, 8, tie_order(groups.n_units, 0)))) > 1  # spread over layers


def test_repeats_draw_their_own_stratified_splits_deterministically():
    a, b, again = data.load("digits", seed=0), data.load("digits", seed=1), data.load("digits", seed=0)
    assert a.fingerprint() == again.fingerprint() != b.fingerprint()
    assert not torch.equal(a.indices["test"], b.indices["test"])
    y = data.load("digits", seed=0).test.y
    full = torch.cat([a.train.y, a.eval.y, a.test.y])
    for split in (a.test.y, a.eval.y, b.test.y):
        share = torch.bincount(split, minlength=10).double() / len(split)
        expected = torch.bincount(full, minlength=10).double() / len(full)
        assert (share - expected).abs().max() < 1.0 / len(split) + 1e-9  # stratified: within one example
    assert (
        len(y) == 360 and a.sizes()["eval"] > PAPER_SALIENCY.examples
    )  # a pool larger than one step's batches


def test_each_repeat_scores_on_its_own_eval_batches():
    splits = data.load("digits", seed=0)
    ev = splits.eval
    first, idx0 = PAPER_SALIENCY.draw(ev.x, ev.y, splits.indices["eval"], seed=0)
    _, idx1 = PAPER_SALIENCY.draw(ev.x, ev.y, splits.indices["eval"], seed=1)
    _, again = PAPER_SALIENCY.draw(ev.x, ev.y, splits.indices["eval"], seed=0)
    assert idx0 == again and set(idx0) != set(idx1) and len(idx0) == 256
    assert [len(b[1]) for b in first] == [128, 128]


def test_random_draws_are_independent_trajectories():
    model, shape = make("residual")
    x, y = batch("residual", n=48, seed=3)
    setup = Setup(model, build_groups(model, shape), [(x, y)], batch("residual", 40, 4), (x, y), 20.0, 0)
    random = parse("random")
    results = make_protocol("sensitivity", channels_per_step=2).run(setup, [random] * 3, draws=[0, 1, 2])
    orders = [[r["pruned"] for r in res.rows] for res in results]
    assert len({tuple(o) for o in orders}) == 3
    (solo,) = make_protocol("sensitivity", channels_per_step=2).run(setup, [random], draws=[1])
    assert [r["pruned"] for r in solo.rows] == orders[1]  # a draw is the same alone or in lockstep
    assert draw_seed(5, 0) == 5 and draw_seed(5, 1) != draw_seed(5, 2) != 5
    assert CLASSES["residual"] == 5
