"""Mean replacement (Evci et al. 2018): a pruned channel's mean contribution folded into its
consumers, checked by hand on a network of three convs (a 1x1 conv consumer, a BN-followed
bias-free conv consumer, a linear consumer), against the physically pruned network, and
through the protocols."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from study.groups import build_groups
from study.mean_replacement import MeanReplacement
from study.physical import physically_pruned
from study.protocols import make_protocol
from study.trajectory import Setup
from study.unit_scores import Workspace
from taxonomy.errors import PrunetaxError
from taxonomy.spec import parse
from tests.nets import batch, make, randomize

SHAPE = (1, 4, 4)


class FoldNet(nn.Module):
    """conv1 (1->2, 3x3, pad 1) - ReLU - conv2 (2->3, 1x1) - ReLU - conv3 (3->2, 3x3, pad 1, no
    bias) - BN - ReLU - flatten - linear (32 -> 3), on 4x4 inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 2, 3, padding=1)
        self.conv2 = nn.Conv2d(2, 3, 1)
        self.conv3 = nn.Conv2d(3, 2, 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(2)
        self.fc = nn.Linear(2 * 4 * 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a1 = torch.relu(self.conv1(x))
        a2 = torch.relu(self.conv2(a1))
        a3 = torch.relu(self.bn3(self.conv3(a2)))
        return self.fc(torch.flatten(a3, 1))


def _net(seed: int = 0) -> tuple[nn.Module, Workspace, list[tuple[torch.Tensor, torch.Tensor]]]:
    """FoldNet with non-trivial BN statistics, and two eval batches (8 + 4 examples)."""
    torch.manual_seed(seed)
    model = randomize(FoldNet(), seed)
    x = torch.randn(12, *SHAPE, generator=torch.Generator().manual_seed(seed + 1))
    y = torch.zeros(12, dtype=torch.long)
    return model, Workspace(model, build_groups(model, SHAPE)), [(x[:8], y[:8]), (x[8:], y[8:])]


def _unit(ws: Workspace, layer: str, channel: int) -> int:
    return int(next(lay for lay in ws.masked.groups.layers if lay.name == layer).unit[channel])


def _prune_with_fold(ws: Workspace, batches: list, units: list[int]) -> dict:
    """Fold ``units`` into the unpruned network, load the child, return its state."""
    state = MeanReplacement(ws, batches).fold("root", None, units)
    active = ws.masked.active.clone()
    active[units] = False
    ws.load(active, state, "child")
    return state


def _inputs(batches: list) -> torch.Tensor:
    return torch.cat([b[0] for b in batches])


def test_a_1x1_consumer_gets_the_channel_mean_in_its_bias_by_hand() -> None:
    model, ws, batches = _net()
    x = _inputs(batches)
    with torch.no_grad():
        a1 = torch.relu(F.conv2d(x, model.conv1.weight, model.conv1.bias, padding=1))
        w2, b2 = model.conv2.weight.clone(), model.conv2.bias.clone()
        mean = a1[:, 0].mean()  # over the 12 examples and the 16 positions
        # replacing channel 0's map by that constant: what the folded network must compute
        replaced = model.fc(
            torch.flatten(
                torch.relu(
                    model.bn3(
                        model.conv3(
                            torch.relu(
                                model.conv2(
                                    torch.cat([torch.full_like(a1[:, :1], mean.item()), a1[:, 1:]], 1)
                                )
                            )
                        )
                    )
                ),
                1,
            )
        )
    _prune_with_fold(ws, batches, [_unit(ws, "conv1", 0)])
    torch.testing.assert_close(model.conv2.bias, b2 + w2[:, 0, 0, 0] * mean)
    assert model.conv1.weight[0].abs().max() == 0 and model.conv2.weight[:, 0].abs().max() == 0
    with torch.no_grad():
        torch.testing.assert_close(model(x), replaced)


def test_a_linear_consumer_keeps_each_column_mean() -> None:
    model, ws, batches = _net(1)
    x = _inputs(batches)
    with torch.no_grad():
        a3 = torch.relu(model.bn3(model.conv3(torch.relu(model.conv2(torch.relu(model.conv1(x)))))))
        mean_map = a3[:, 0].mean(0)  # per position, over the examples
        w, b = model.fc.weight.clone(), model.fc.bias.clone()
        replaced = model.fc(torch.flatten(torch.cat([mean_map.expand_as(a3[:, :1]), a3[:, 1:]], 1), 1))
    _prune_with_fold(ws, batches, [_unit(ws, "conv3", 0)])
    torch.testing.assert_close(model.fc.bias, b + w[:, :16] @ mean_map.flatten())
    with torch.no_grad():
        torch.testing.assert_close(model(x), replaced)


def test_a_bias_free_conv_folds_into_its_batchnorm_and_keeps_its_mean_output() -> None:
    """conv3 (3x3, zero padding) has no bias: its BN's running mean takes the fold, and the
    BN's output keeps its mean over examples and positions (padding included)."""
    model, ws, batches = _net(2)
    x = _inputs(batches)

    def bn_out() -> torch.Tensor:
        with torch.no_grad():
            return model.bn3(model.conv3(torch.relu(model.conv2(torch.relu(model.conv1(x))))))

    with torch.no_grad():
        a2 = torch.relu(model.conv2(torch.relu(model.conv1(x))))
        w = model.conv3.weight.clone()
        contribution = F.conv2d(a2[:, 1:2], w[:, 1:2], padding=1).mean((0, 2, 3))
    before, running = bn_out().mean((0, 2, 3)), model.bn3.running_mean.clone()
    _prune_with_fold(ws, batches, [_unit(ws, "conv2", 1)])
    torch.testing.assert_close(model.bn3.running_mean, running - contribution)
    torch.testing.assert_close(bn_out().mean((0, 2, 3)), before)


def test_the_folded_three_conv_network_equals_its_physically_pruned_copy() -> None:
    """FoldNet with a channel of conv1 (folded into conv2's bias) and one of conv2 (folded
    into bn3's running mean) pruned: the physically smaller network, which carries the
    folded bias and running mean, computes what the masked one does."""
    model, ws, batches = _net(3)
    _prune_with_fold(ws, batches, [_unit(ws, "conv1", 1), _unit(ws, "conv2", 1)])
    small = physically_pruned(ws.masked).eval()
    assert small.conv2.in_channels == 1 and small.conv3.in_channels == 2
    x = torch.randn(7, *SHAPE, generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        torch.testing.assert_close(small(x), model(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ["residual", "nobn"])
def test_the_folded_masked_network_equals_the_physically_pruned_one(name: str) -> None:
    model, shape = make(name)
    ws = Workspace(model, build_groups(model, shape))
    batches = [batch(name, n=10)]
    groups = ws.masked.groups
    units = [int(g[0]) for g in torch.split(torch.arange(groups.n_units), groups.group_sizes)][:2]
    _prune_with_fold(ws, batches, units)
    x = batch(name, n=6, seed=5)[0]
    with torch.no_grad():
        torch.testing.assert_close(physically_pruned(ws.masked).eval()(x), model(x), atol=1e-5, rtol=1e-5)


def test_a_consumer_without_bias_or_batchnorm_is_refused_with_the_fix() -> None:
    model, shape = make("chain")  # conv2 has no bias and a ReLU after it
    ws = Workspace(model, build_groups(model, shape))
    with pytest.raises(PrunetaxError, match="`conv2`.*no bias and no BatchNorm.*give it a bias"):
        MeanReplacement(ws, [batch("chain")])
    setup = _setup("chain")
    with pytest.raises(PrunetaxError, match="conv2"):
        make_protocol("sensitivity", mean_replacement=True).run(setup, [parse("l1_filter")])


def _setup(name: str = "residual") -> Setup:
    model, shape = make(name)
    x, y = batch(name, n=32, seed=3)
    tx, ty = batch(name, n=24, seed=4)
    return Setup(model, build_groups(model, shape), [(x, y)], (tx, ty), (x, y), 20.0, 0)


def test_the_greedy_protocol_folds_at_every_step_like_the_hand_loop() -> None:
    """Each step's eval loss equals that of a hand loop that folds the step's unit into the
    network it is pruned from; without the option the losses differ."""
    from study.evaluation import mean_loss
    from study.trajectory import choose_units, tie_order
    from study.unit_scores import unit_scores

    setup = _setup()
    (folded,) = make_protocol("sensitivity", mean_replacement=True).run(setup, [parse("l1_filter")])
    (plain,) = make_protocol("sensitivity").run(_setup(), [parse("l1_filter")])
    ws = Workspace(setup.model, setup.groups)
    ties, names, losses, state = tie_order(setup.groups.n_units, 0), [], [], None
    for _ in range(len(folded.rows) - 1):
        scores, _ = unit_scores(ws, [parse("l1_filter")], setup.eval_batches)  # reads the folded biases
        units = choose_units(scores[0], ws.masked, 1, ties)
        state = MeanReplacement(ws, setup.eval_batches).fold(object(), state, units)
        active = ws.masked.active.clone()
        active[units] = False
        ws.load(active, state, object())
        names.append(setup.groups.unit_names()[units[0]])
        losses.append(mean_loss(ws.masked.model, setup.eval_batches))
    assert [row["pruned"] for row in folded.rows[1:]] == names
    got = [row["eval_loss"] for row in folded.rows[1:]]
    torch.testing.assert_close(torch.tensor(got), torch.tensor(losses), rtol=1e-6, atol=1e-9)
    assert got[:3] != [row["eval_loss"] for row in plain.rows[1:4]]


def test_every_protocol_has_the_option_and_old_run_keys_stand() -> None:
    from study.protocols import PROTOCOLS

    for cls in PROTOCOLS.values():
        assert "mean_replacement" in {f for f in cls.__dataclass_fields__}, cls.name
    plain, folded = make_protocol("sensitivity"), make_protocol("sensitivity", mean_replacement=True)
    assert "mean_replacement" not in plain.as_dict()  # the run_keys of stores written before it
    assert folded.as_dict()["mean_replacement"] is True
    (result,) = make_protocol("oneshot", targets=(20.0,), mean_replacement=True).run(
        _setup(), [parse("l1_filter")]
    )
    assert result.error is None and len(result.rows) == 2


def test_the_batched_engine_leaves_mean_replacement_to_the_lockstep_engine() -> None:
    from study.batched import engine_for, using
    from study.batched.select import Batching
    from study.trajectory import Run

    setup = _setup()
    with using(Batching("batched", 4)):
        assert engine_for(make_protocol("sensitivity", mean_replacement=True), setup, None) is Run
        assert engine_for(make_protocol("sensitivity"), setup, None) is not Run
