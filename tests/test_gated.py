"""The ``gated`` protocol: per-image executed MACs counted by hand on a 2-layer net, their
expectation under Bernoulli gates, per-input gates equal to per-image pruned networks, the
rows and per-image MAC distribution it records, determinism."""

from __future__ import annotations

import copy
import itertools
import math

import numpy as np
import pytest
import torch
from torch import nn

from study.gating import GatedNetwork, MacForm
from study.groups import build_groups
from study.masks import MaskedModel
from study.protocols import make_protocol
from study.protocols.gated import GateHeads, gated_counts, gated_outputs
from study.trajectory import TIMINGS, Setup
from study.trial import TrialSpec
from taxonomy.errors import PrunetaxError
from taxonomy.spec import parse
from tests.nets import CLASSES, batch, make


class TwoLayer(nn.Module):
    """conv 1->2 (3x3, pad 1) -> ReLU -> conv 2->3 (3x3, pad 1) -> ReLU -> avg pool -> linear 3->2, on 4x4."""

    def __init__(self) -> None:
        super().__init__()
        self.c1, self.r1 = nn.Conv2d(1, 2, 3, padding=1), nn.ReLU()
        self.c2, self.r2 = nn.Conv2d(2, 3, 3, padding=1), nn.ReLU()
        self.pool, self.flat, self.fc = nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.flat(self.pool(self.r2(self.c2(self.r1(self.c1(x)))))))


def _by_hand(g1: list[int], g2: list[int]) -> int:
    """MACs of one image: conv1 = out x in x 9 x 16, conv2 = out x in x 9 x 16, linear = out x in."""
    a1, a2 = sum(g1), sum(g2)
    return a1 * 1 * 9 * 16 + a2 * a1 * 9 * 16 + 2 * a2


def test_expected_macs_are_the_mean_of_per_image_counts_by_hand():
    net = TwoLayer()
    groups = build_groups(net, (1, 4, 4))
    assert dict(zip(groups.group_roots, groups.group_sizes, strict=True)) == {"c1": 2, "c2": 3}
    form = MacForm(groups)

    def vector(g1: list, g2: list) -> list:  # the units in the groups' order
        return [v for root in groups.group_roots for v in (g1 if root == "c1" else g2)]

    images = [([1, 0], [1, 1, 0]), ([1, 1], [0, 1, 1]), ([0, 1], [0, 0, 1]), ([1, 1], [1, 1, 1])]
    gates = torch.tensor([vector(g1, g2) for g1, g2 in images], dtype=torch.float64)
    per_image = form.macs(gates)
    # 144 + 288 + 4, 288 + 576 + 4, 144 + 144 + 2, 288 + 864 + 6
    assert per_image.tolist() == [_by_hand(g1, g2) for g1, g2 in images] == [436, 868, 290, 1158]
    assert per_image.mean().item() == (436 + 868 + 290 + 1158) / 4
    assert form.macs(torch.ones(5)).item() == 1158 == MaskedModel(net, groups).counts().macs
    # under independent Bernoulli gates: the closed form equals the enumeration of all 32 gate vectors
    p1, p2 = [0.9, 0.2], [0.5, 0.7, 0.1]
    exact = sum(
        math.prod(q if bit else 1 - q for q, bit in zip(p1 + p2, bits, strict=True))
        * _by_hand(list(bits[:2]), list(bits[2:]))
        for bits in itertools.product([0, 1], repeat=5)
    )
    p = torch.tensor(vector(p1, p2), dtype=torch.float64)
    assert form.macs(p, bernoulli=True).item() == pytest.approx(exact)


def test_per_input_gates_run_each_image_as_its_own_pruned_network():
    model, shape = make("residual")
    groups = build_groups(model, shape)
    gated = GatedNetwork(model, groups)
    x, _ = batch("residual", n=5)
    gates = (torch.rand(5, groups.n_units, generator=torch.Generator().manual_seed(0)) < 0.6).float()
    gated.gates = gates
    with torch.no_grad():
        out = gated(x)
        for n in range(5):
            masked = MaskedModel(copy.deepcopy(model), groups)
            masked.prune((gates[n] == 0).nonzero().flatten().tolist())
            torch.testing.assert_close(out[n : n + 1], masked.model(x[n : n + 1]), rtol=1e-5, atol=1e-6)


def test_heads_gate_each_group_once_and_the_counts_follow_the_gates():
    model, shape = make("residual")
    groups = build_groups(model, shape)
    gated = GatedNetwork(model, groups)
    heads = GateHeads(gated, model)
    assert sorted(int(g) for g in heads.linears) == sorted(set(gated.head_groups))
    heads.mode = "threshold"
    x, y = batch("residual", n=6)
    loss, hits, gates = gated_outputs(gated, x, y)
    assert gates.shape == (6, groups.n_units) and bool((gates == 1).all())  # heads start open (p = 0.88)
    gates[0, :2] = 0
    counts = gated_counts(MacForm(groups), gates, heads, groups)
    per_image = MacForm(groups).macs(gates) + heads.macs
    assert counts["macs_mean"] == pytest.approx(per_image.mean().item())
    for p in (5, 25, 50, 75, 95):
        assert counts[f"macs_p{p}"] == pytest.approx(float(np.percentile(per_image.numpy(), p)))
    assert counts["units_remaining"] == groups.n_units and bool(counts["ran"].all())


def _setup() -> Setup:
    model, shape = make("chain")
    x, y = batch("chain", n=64, seed=3)
    tx, ty = batch("chain", n=40, seed=4)
    return Setup(
        model, build_groups(model, shape), [(x[:24], y[:24])], (tx, ty), (x, y), 100 / CLASSES["chain"], 0
    )


def _strip(rows):
    return [{k: v for k, v in r.items() if k not in {f"t_{t}" for t in TIMINGS}} for r in rows]


def test_the_protocol_records_one_row_per_cost_and_is_deterministic():
    setup = _setup()
    protocol = make_protocol("gated", costs=(5.0, 0.0), gate_steps=6, gate_batch_size=8)
    a, b = (protocol.run(setup, [parse("random")], draws=[0])[0] for _ in range(2))
    assert a.error is None and [r["step"] for r in a.rows] == [0, 1, 2]
    assert _strip(a.rows) == _strip(b.rows) and a.trial == b.trial
    cheap, free = a.rows[2], a.rows[1]  # rows follow the sorted costs: 0.0 then 5.0
    assert cheap["macs_remaining"] <= free["macs_remaining"]
    for row in a.rows[1:]:
        q = [row[f"macs_p{p}"] for p in (5, 25, 50, 75, 95)]
        assert q == sorted(q) and q[0] > 0
        assert math.isclose(
            row["macs_sparsity"],
            100 * (1 - row["macs_remaining"] / a.rows[0]["macs_remaining"]),
            abs_tol=1e-3,
        )
    assert a.trial["started_from"] == "base" and a.trial["train_steps"] == 12
    assert torch.equal(setup.model.state_dict()["conv1.weight"], _setup().model.state_dict()["conv1.weight"])


def test_gated_takes_only_the_random_signal_and_validates():
    with pytest.raises(PrunetaxError, match="signal random"):
        TrialSpec("tiny_cnn", "digits", "taylor_fo", make_protocol("gated"))
    with pytest.raises(PrunetaxError, match="threshold"):
        make_protocol("gated", threshold=1.0)
    with pytest.raises(PrunetaxError, match="costs"):
        make_protocol("gated", costs=(-1.0,))
    with pytest.raises(PrunetaxError, match="mean_replacement"):
        make_protocol("gated", mean_replacement=True)


class _Fork(nn.Module):
    """A conv whose raw output feeds a BN and, past it, an add: no single gate point switches it off."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.bn, self.relu = nn.Conv2d(1, 2, 3, padding=1), nn.BatchNorm2d(2), nn.ReLU()
        self.fc = nn.Linear(2 * 16, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return self.fc(torch.flatten(self.relu(self.bn(y) + y), 1))


def test_a_channel_without_a_single_gate_point_is_refused():
    net = _Fork().eval()
    with pytest.raises(PrunetaxError, match="cannot be gated"):
        GatedNetwork(net, build_groups(net, (1, 4, 4)))
