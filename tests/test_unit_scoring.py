"""A coupled unit is scored as a whole (pooled), and equivalence rules hold at the unit level.

Hand-computable cases on fabricated statistics, a brute force that builds each coupled
unit as one channel of its members' concatenated elements, and every merged class run
through one greedy step on a residual and a plain network.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from study.collect import Collector
from study.groups import build_groups
from study.masks import MaskedModel
from study.unit_scores import Workspace, unit_scores
from taxonomy.bank import UnitMap, score
from taxonomy.components import Input, Reduction, Scaling
from taxonomy.equivalence import ZERO_RULES, Context, classes, representative, rule_of
from taxonomy.spec import all_cells, parse
from taxonomy.statistics import InputStats, LayerStats, Needs
from tests.nets import batch, make
from tests.reference_signals import random_layers, reference_score

CELLS = all_cells()


def _twin(layer: LayerStats, name: str) -> LayerStats:
    return dataclasses.replace(layer, name=name)


def test_a_unit_of_two_identical_channels_scores_like_one_by_the_documented_relation():
    """Pooled score of a unit made of channel u of layer A and its copy in layer B, against
    channel u of A alone: k^d / k^e with k = 2 copies, d = 2 for sqr_sum (the square of a
    sum that doubles) else 1, e = 1 for scalings whose denominator adds over the members
    (element counts, layer norms) else 0 (none, weights_removed: the unit's own)."""
    (a,) = random_layers([(4, 3, 2, True)], n=3, seed=5)
    a = dataclasses.replace(a, active=torch.ones(4, dtype=torch.bool))
    single = score(CELLS, [a])
    pooled = score(CELLS, [a, _twin(a, "copy")], UnitMap(torch.arange(4).repeat(2), 4))
    for row, cell in enumerate(CELLS):
        if cell == parse("activation-centered-sum-l1") or cell == parse("activation-centered-sum-l2"):
            continue  # the rounding noise of 0 over a layer norm of noise (rule 4e; tests/test_bank.py)
        d = 2 if cell.reduction is Reduction.SQR_SUM else 1
        e = 1 if cell.scaling.pooling == "sum" else 0
        torch.testing.assert_close(pooled[row], single[row] * 2**d / 2**e, rtol=1e-9, atol=1e-12, msg=cell.id)


def test_hand_computed_pooled_unit():
    """One unit of two weight channels: filters (1, -2) and (3, 0), one layer norm each."""

    def layer(name: str, w: list[list[float]]) -> LayerStats:
        value = torch.tensor([w], dtype=torch.float64)  # [1, C, 2]
        c = value.shape[1]
        stats = InputStats({"value": value}, torch.full((c,), 2), torch.full((c,), 2))
        return LayerStats(name, stats, None, torch.full((c,), 10), torch.ones(c, dtype=torch.bool))

    # layer A: unit 0 = (1, -2), unit 1 = (1, 1); layer B: unit 0 = (3, 0), unit 2 = (2, 2)
    layers = [layer("A", [[1, -2], [1, 1]]), layer("B", [[3, 0], [2, 2]])]
    units = UnitMap(torch.tensor([0, 1, 0, 2]), 3)
    got = score(
        ["weight-value-sum-none", "weight-value-sqr_sum-none", "weight-value-l1-l0", "weight-value-sum-l1"],
        layers,
        units,
    )
    assert got[0].tolist() == [2.0, 2.0, 4.0]  # (1 - 2 + 3 + 0), (1 + 1), (2 + 2)
    assert got[1].tolist() == [4.0, 4.0, 16.0]  # the square of the unit's own sum
    assert got[2].tolist() == [6 / 4, 2 / 2, 4 / 2]  # L1 over the union / the union's element count
    # layer norms (l1 of the channel sums): A: |-1| + |2| = 3, B: |3| + |4| = 7; unit 0 spans both
    assert got[3].tolist() == pytest.approx([2 / (3 + 7), 2 / 3, 4 / 7])


def _merged_layer(layers: list[LayerStats], unit: torch.Tensor, n_units: int) -> LayerStats:
    """Each unit as one channel whose elements are its members' elements side by side."""
    flat = [(k, c) for k, layer in enumerate(layers) for c in range(layer.channels)]
    by_unit = [
        [m for m, u in zip(flat, unit.tolist(), strict=True) if u == target] for target in range(n_units)
    ]

    def merge(get) -> InputStats:  # noqa: ANN001
        names = get(layers[0]).tensors.keys()
        tensors = {}
        for name in names:
            chans = [torch.cat([get(layers[k])[name][:, c] for k, c in group], dim=-1) for group in by_unit]
            width = max(t.shape[-1] for t in chans)
            tensors[name] = torch.stack(
                [torch.nn.functional.pad(t, (0, width - t.shape[-1])) for t in chans], 1
            )
        count = torch.stack([sum(get(layers[k]).count[c] for k, c in g) for g in by_unit])
        active = torch.stack([sum(get(layers[k]).count_active[c] for k, c in g) for g in by_unit])
        return InputStats(tensors, count, active)

    removed = torch.stack([layers[g[0][0]].weights_removed[g[0][1]] for g in by_unit])
    macs = torch.stack([layers[g[0][0]].macs_removed[g[0][1]] for g in by_unit])
    return LayerStats(
        "merged",
        merge(lambda x: x.weight),
        merge(lambda x: x.activation),
        removed,
        torch.ones(n_units, dtype=torch.bool),
        macs,
    )


@pytest.mark.parametrize("scaling", ["none", "l0", "l0_active", "weights_removed", "macs_removed"])
def test_pooled_scores_of_a_real_residual_network_equal_the_merged_channel_brute_force(scaling):
    model, shape = make("residual")
    groups = build_groups(model, shape)
    assert groups.coupled
    masked = MaskedModel(model, groups)
    x, y = batch("residual", n=10)
    cells = [c for c in CELLS if c.scaling.id == scaling]
    stats = Collector(masked).collect([(x, y)], Needs.of(cells))
    pooled = score(cells, stats, UnitMap(groups.members, groups.n_units))
    merged = _merged_layer(stats, groups.members, groups.n_units)  # zero padding adds nothing (apoz too)
    for row, cell in enumerate(cells):
        if rule_of(cell) == ["4e"]:  # 0, computed as float32 rounding noise by both (rule 4e)
            assert pooled[row].abs().max() < 1e-5 and reference_score(cell, [merged]).abs().max() < 1e-5
            continue
        torch.testing.assert_close(
            pooled[row].double(), reference_score(cell, [merged]), rtol=1e-5, atol=1e-7, msg=cell.id
        )


def _unit_order_agrees(a: torch.Tensor, b: torch.Tensor, active: torch.Tensor) -> bool:
    """b is non-decreasing along a's order of the active units (to float noise)."""
    idx = torch.nonzero(active).flatten()
    order = idx[torch.sort(a[idx], stable=True).indices]
    seq = b[order]
    tol = 1e-7 * seq.abs().max().clamp(min=1e-30)
    return bool((seq[1:] - seq[:-1] >= -tol).all())


@pytest.mark.parametrize("net", ["residual", "chain"])
@pytest.mark.parametrize("aggregation", ["pooled", "sum"])
def test_every_merged_class_ranks_units_identically(net, aggregation):
    """One greedy step's scores of every member of every class with two or more members."""
    model, shape = make(net)
    groups = build_groups(model, shape)
    context = Context(groups.coupled, aggregation)
    ws = Workspace(model, groups)
    ws.masked.prune([1])  # a pruned unit too
    merged = [m for m in classes(context).values() if len(m) > 1]
    signals = [s for m in merged for s in m]
    x, y = batch(net, n=12)
    scores, errors = unit_scores(ws, signals, [(x, y)], aggregation)
    assert not errors
    row = {s: k for k, s in enumerate(signals)}
    for group in merged:
        first = scores[row[group[0]]]
        for other in group[1:]:
            if set(rule_of(other, context)) & ZERO_RULES:  # 0 exactly, or the rounding noise of 0
                assert torch.equal(first, torch.zeros_like(first)), other.id
                if other.input is Input.WEIGHT or other.scaling not in (Scaling.L1, Scaling.L2):
                    assert scores[row[other]][ws.masked.active].abs().max() < 1e-6, other.id
                continue
            assert _unit_order_agrees(first, scores[row[other]], ws.masked.active), (group[0].id, other.id)


def test_rule_4c_breaks_for_coupled_units_under_sum_so_its_cells_stay_apart():
    model, shape = make("residual")
    groups = build_groups(model, shape)
    ws = Workspace(model, groups)
    pair = [parse("weight-value-abs_sum-none"), parse("weight-value-sqr_sum-none")]
    scores, _ = unit_scores(ws, pair, [batch("residual")], "sum")
    assert not _unit_order_agrees(scores[0], scores[1], ws.masked.active)  # the evidence
    coupled_sum, plain = Context(True, "sum"), Context(False, "sum")
    assert representative(pair[1], plain) == pair[0]
    assert representative(pair[1], coupled_sum) == pair[1]
    assert representative(pair[1], Context(True, "pooled")) == pair[0]  # (sum over the union)^2
    assert len(classes(coupled_sum)) == len(classes(plain)) + 4


def test_scaling_pooling_is_declared_for_every_scaling():
    assert {s.id: s.pooling for s in Scaling} == {
        "none": "unit",
        "l1": "sum",
        "l2": "sum",
        "l0": "sum",
        "l0_active": "sum",
        "weights_removed": "unit",
        "macs_removed": "unit",
    }
