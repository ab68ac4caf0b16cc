"""Equivalence classes of the signal space (SPEC §2.5): merged cells rank channels the same
way on any statistics that satisfy the rules' preconditions, distinct classes do not."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from taxonomy.bank import score
from taxonomy.components import Input, Pointwise, Reduction, Scaling
from taxonomy.equivalence import (
    MONOTONE_RULES,
    ZERO_RULES,
    classes,
    conditional_equivalents,
    distinct,
    members,
    representative,
    rule_of,
)
from taxonomy.spec import SignalSpec, all_cells, parse
from taxonomy.statistics import InputStats, LayerStats
from tests.reference_signals import random_layers

CELLS = all_cells()
ROW = {cell: k for k, cell in enumerate(CELLS)}
# Five chained convs: enough channels and layers that, on generic data, every pair of
# layer-dependent scalings (none/l1/l2/l0/l0_active/weights_removed/macs_removed) has a crossing
# pair.
SHAPES = [(16, 3, 9, True), (24, 1, 6, False), (12, 3, 4, True), (20, 1, 16, True), (8, 3, 25, False)]


def order_signature(scores: torch.Tensor, rel: float = 1e-9) -> torch.Tensor:
    """sign(s_i - s_j) for every pair of channels, with near-ties set to 0.

    Two score vectors rank every channel identically (same global argmin order, ties
    included) iff they have the same signature, i.e. iff one is a strictly increasing
    function of the other.
    """
    diff = scores[:, None] - scores[None, :]
    scale = torch.maximum(scores.abs()[:, None], scores.abs()[None, :])
    sign = torch.sign(diff)
    sign[diff.abs() <= rel * scale] = 0
    return sign.to(torch.int8)


def same_order(a: torch.Tensor, b: torch.Tensor) -> bool:
    return torch.equal(order_signature(a), order_signature(b))


def assert_positive_multiple(member: torch.Tensor, rep: torch.Tensor, what: str) -> None:
    """``member = c * rep`` for one constant c > 0 over every channel."""
    zero = rep == 0
    assert (member[zero] == 0).all(), f"{what}: non-zero where the representative is 0"
    assert (~zero).any(), f"{what}: representative is all zero, nothing tested"
    ratio = member[~zero] / rep[~zero]
    assert ratio[0] > 0, f"{what}: negative factor {ratio[0]}"
    torch.testing.assert_close(
        ratio,
        ratio[0].expand_as(ratio),
        rtol=1e-9,
        atol=0,
        msg=lambda m: f"{what}: not a single positive factor: {m}",
    )


def test_counts() -> None:
    assert len(distinct()) == 437
    assert sum(len(m) for m in classes().values()) == len(CELLS) == 630
    assert len(CELLS) == len(set(CELLS)) == 2 * 9 * 5 * 7
    # rules 4d/4e: the 35 weight-centered cells and the 7 activation-centered-sum ones score 0
    assert len(members(parse("weight-centered-sum-none"))) == 5 * 7 + 7


def _assert_zero_member(member: SignalSpec, got: torch.Tensor, layers: list[LayerStats]) -> None:
    """A rule-4d/4e member: 0 exactly, or (activation-centered-sum) the rounding noise of 0;
    divided by a layer norm of that noise (l1, l2) it is noise of order 1, so there the
    numerator is what is checked (the class is computed through its exact representative)."""
    numerator = score([member.replace(scaling=Scaling.NONE)], layers)[0]
    assert numerator.abs().max() < 1e-12, member.id
    if member.scaling not in (Scaling.L1, Scaling.L2):
        assert got.abs().max() < 1e-12, member.id


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_merged_cells_rank_identically(seed: int) -> None:
    layers = random_layers(SHAPES, n=4, seed=seed, dead=1 if seed == 2 else None, masked=seed != 1)
    for layer in layers:  # the rules' preconditions
        assert (layer.weight["hess"] >= 0).all() and (layer.activation["hess"] >= 0).all()
        assert torch.equal(layer.activation.count, layer.activation.count_active)
    scores = score(CELLS, layers)
    merged = 0
    for rep, group in classes().items():
        for member in group:
            if member == rep:
                continue
            merged += 1
            a, b = scores[ROW[member]], scores[ROW[rep]]
            what = f"{member.id} ~ {rep.id} (rules {rule_of(member)})"
            if set(rule_of(member)) & ZERO_RULES:
                assert torch.equal(b, torch.zeros_like(b)), what
                _assert_zero_member(member, a, layers)
            elif set(rule_of(member)) & MONOTONE_RULES:
                assert same_order(a, b), what
                assert not torch.allclose(a, b), f"{what}: expected a non-linear relation"
            else:
                assert_positive_multiple(a, b, what)
    assert merged == 630 - 437


def test_data_free_squares_are_merged() -> None:
    """Rule 4c: one data-free example, so sqr_sum = abs_sum^2 and, with u >= 0,
    u_i^2 / sum_j u_j^2 = (u_i / sqrt(sum_j u_j^2))^2: l1 of the square ranks as l2."""
    pairs = {
        "weight-value-sqr_sum-none": "weight-value-abs_sum-none",
        "weight-value-sqr_sum-l1": "weight-value-abs_sum-l2",
        "weight-apoz-sqr_sum-none": "weight-apoz-sum-none",
        "weight-apoz-sqr_sum-l1": "weight-apoz-sum-l2",
    }
    for member, rep in pairs.items():
        assert representative(parse(member)) == parse(rep) and rule_of(parse(member)) == ["4c"]
    for unmerged in (
        "weight-value-sqr_sum-l2",
        "weight-value-sqr_sum-l0",
        "activation-value-sqr_sum-none",
        "weight-gradient-sqr_sum-none",
    ):
        assert representative(parse(unmerged)) == parse(unmerged)


def test_centered_zero_rules_hold_exactly_on_exact_means() -> None:
    """Rules 4d and 4e with no rounding: integer activations over 4 examples have exact means,
    so every activation-centered-sum cell is 0 exactly, like every weight-centered cell."""
    layers = random_layers(SHAPES, n=4, seed=7)
    gen = torch.Generator().manual_seed(7)
    exact = []
    for layer in layers:
        act = layer.activation
        ints = torch.randint(-3, 4, act.value.shape, generator=gen).double() * layer.active[None, :, None]
        tensors = {**act.tensors, "value": ints}
        exact.append(dataclasses.replace(layer, activation=dataclasses.replace(act, tensors=tensors)))
    zero = members(parse("weight-centered-sum-none"))
    got = score(zero, exact)
    assert torch.equal(got, torch.zeros_like(got))
    assert {tuple(rule_of(m)) for m in zero} == {(), ("4d",), ("4e",)}
    variance = torch.cat([layer.activation.value.var(0, unbiased=False).sum(-1) for layer in exact])
    torch.testing.assert_close(score(["activation-centered-l2-none"], exact)[0], variance)  # not 0


@pytest.mark.parametrize("seed", [10, 11])
def test_distinct_classes_rank_differently(seed: int) -> None:
    """All 437*436/2 pairs of representatives: no two share a ranking on generic data."""
    layers = random_layers(SHAPES, n=4, seed=seed)
    weight_ratio = [(layer.weight.count / layer.weight.count_active).unique().tolist() for layer in layers]
    assert len({tuple(r) for r in weight_ratio}) > 1, "l0 and l0_active must differ across layers"
    assert len({layer.activation.count[0].item() for layer in layers}) == len(layers)
    reps = distinct()
    scores = score(reps, layers)
    seen: dict[bytes, SignalSpec] = {}
    clashes = []
    for spec, row in zip(reps, scores, strict=True):
        key = order_signature(row).numpy().tobytes()
        if key in seen:
            clashes.append(f"{seen[key].id} ~ {spec.id}")
        seen.setdefault(key, spec)
    assert not clashes, f"{len(clashes)} pairs of distinct classes rank identically: {clashes[:10]}"


def test_order_signature_detects_rank_changes() -> None:
    """The helper above is the test's judge: check it sees both outcomes."""
    a = torch.tensor([0.0, 1.0, 3.0, -2.0], dtype=torch.float64)
    assert same_order(a, a.exp()) and same_order(a, 5 * a + 1)
    assert not same_order(a, a.square()) and not same_order(a, torch.tensor([0.0, 1.0, 3.0, 3.0]))


def test_conditional_rule_3_is_reported_not_merged() -> None:
    weight = parse("weight-taylor-sum-none")
    activation = parse("activation-taylor-sum-none")
    assert any(c.rule == "3" and c.other == activation for c in conditional_equivalents(weight))
    assert any(c.rule == "3" and c.other == weight for c in conditional_equivalents(activation))
    assert representative(weight) != representative(activation)
    for cell in CELLS:
        rule3 = {c.other for c in conditional_equivalents(cell) if c.rule == "3"}
        expected = (
            cell.pointwise is Pointwise.TAYLOR
            and cell.reduction in (Reduction.SUM, Reduction.ABS_SUM, Reduction.SQR_SUM)
            and cell.scaling not in (Scaling.L0, Scaling.L0_ACTIVE)
        )
        other_input = Input.ACTIVATION if cell.input is Input.WEIGHT else Input.WEIGHT
        assert rule3 == ({cell.replace(input=other_input)} if expected else set()), cell.id
    for scaling in ("l0", "l0_active"):
        cell = parse(f"weight-taylor-sum-{scaling}")
        assert not [c for c in conditional_equivalents(cell) if c.rule == "3"]


def _conv_layer(seed: int) -> LayerStats:
    """Exact per-example statistics of one conv (``conv`` tap) feeding a linear head."""
    gen = torch.Generator().manual_seed(seed)
    n, c_in, c, k, hw = 3, 2, 4, 3, 5
    x = torch.randn(n, c_in, hw, hw, generator=gen, dtype=torch.float64)
    with torch.random.fork_rng():  # seeded module init, global RNG state left alone
        torch.manual_seed(seed)
        conv = torch.nn.Conv2d(c_in, c, k, padding=1).double()
        head = torch.nn.Linear(c * hw * hw, 3).double()
    labels = torch.tensor([0, 2, 1])
    a_values, a_grads, w_grads = [], [], []
    for i in range(n):  # one backward per example: per-example gradients, no batch mixing
        conv.zero_grad()
        y = conv(x[i : i + 1])
        y.retain_grad()
        torch.nn.functional.cross_entropy(head(y.flatten(1)), labels[i : i + 1]).backward()
        a_values.append(y.detach().flatten(2)[0])
        a_grads.append(y.grad.flatten(2)[0])
        w_grads.append(torch.cat([conv.weight.grad.flatten(1), conv.bias.grad[:, None]], 1))
    w_value = torch.cat([conv.weight.detach().flatten(1), conv.bias.detach()[:, None]], 1)[None]
    ones = torch.ones(c, dtype=torch.long)
    weight = InputStats(
        {"value": w_value, "grad": torch.stack(w_grads)}, ones * c_in * k * k, ones * c_in * k * k
    )
    activation = InputStats(
        {"value": torch.stack(a_values), "grad": torch.stack(a_grads)}, ones * hw * hw, ones * hw * hw
    )
    removed = torch.tensor([40, 41, 42, 43])
    return LayerStats("conv", weight, activation, removed, torch.ones(c, dtype=torch.bool))


def test_conditional_rule_3_holds_for_a_real_conv_at_the_conv_tap() -> None:
    """sum_e w*g_w + b*g_b = sum_hw y*g_y per example: a check of per-example weight gradients."""
    layers = [_conv_layer(0), _conv_layer(1)]
    for reduction in ("sum", "abs_sum", "sqr_sum"):
        for scaling in ("none", "l1", "l2", "weights_removed"):
            ids = [f"weight-taylor-{reduction}-{scaling}", f"activation-taylor-{reduction}-{scaling}"]
            w, a = score(ids, layers)
            torch.testing.assert_close(w, a, rtol=1e-9, atol=1e-12)
        w, a = score([f"weight-taylor-{reduction}-l0", f"activation-taylor-{reduction}-l0"], layers)
        assert not torch.allclose(w, a)  # the l0 denominators differ: 18 vs 25
    w, a = score(["weight-taylor-l1-none", "activation-taylor-l1-none"], layers)
    assert not torch.allclose(w, a)  # and rule 3 does not extend to l1


def test_conditional_rule_5_holds_for_non_negative_values() -> None:
    layers = random_layers(SHAPES, n=3, seed=4)
    relu = [
        LayerStats(
            layer.name,
            layer.weight,
            InputStats(
                {"value": layer.activation.value.clamp(min=0)},
                layer.activation.count,
                layer.activation.count_active,
            ),
            layer.weights_removed,
            layer.active,
        )
        for layer in layers
    ]
    cell = parse("activation-value-sum-l2")
    others = [c.other for c in conditional_equivalents(cell) if c.rule == "5"]
    assert {o.reduction for o in others} == {Reduction.L1, Reduction.ABS_SUM}
    got = score([cell, *others], relu)
    torch.testing.assert_close(got[1:], got[0].expand(2, -1), rtol=1e-12, atol=0)
    assert not torch.allclose(*score(["activation-value-sum-l2", "activation-value-l1-l2"], layers))


def test_representative_is_idempotent_and_members_partition() -> None:
    owner: dict[SignalSpec, SignalSpec] = {}
    for rep, group in classes().items():
        assert representative(rep) == rep and rule_of(rep) == []
        assert rep in group and group[0] == rep
        for member in group:
            assert member not in owner, f"{member.id} is in two classes"
            owner[member] = rep
            assert members(member) == group
            assert representative(representative(member)) == representative(member) == rep
            assert (rule_of(member) == []) == (member == rep)
    assert set(owner) == set(CELLS)
    assert set(classes()) == set(distinct())
    for ref in ("random", "oracle"):
        spec = parse(ref)
        assert representative(spec) == spec and members(spec) == (spec,)
        assert conditional_equivalents(spec) == []
