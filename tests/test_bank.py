"""The vectorised signal bank against the loop reference, cell by cell (SPEC §2.2-2.4)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from taxonomy.aliases import ALIASES
from taxonomy.bank import layer_offsets, score
from taxonomy.components import Scaling
from taxonomy.errors import PrunetaxError
from taxonomy.spec import SignalSpec, all_cells, parse
from taxonomy.statistics import InputStats, LayerStats
from tests.reference_signals import random_layers, reference_score

CELLS = all_cells()
# Three chained convs: different channel counts, element counts (weight E = C_in*k*k [+1],
# activation E = H*W), counts and weights removed; some channels and input slices pruned.
SHAPES = [(5, 3, 6, True), (7, 1, 4, False), (4, 3, 2, True)]
# Float64 throughout: the comparison with the reference is then exact to rounding.
TOL = dict(rtol=1e-9, atol=1e-12)


@pytest.fixture(scope="module")
def generic() -> list[LayerStats]:
    return random_layers(SHAPES, n=3, seed=0)


@pytest.fixture(scope="module")
def degenerate() -> list[LayerStats]:
    """Layer 1 fully pruned: zero layer norms, zero weights removed, zero ``count_active``."""
    layers = random_layers(SHAPES, n=2, seed=1, dead=1)
    assert not layers[1].active.any() and (layers[2].weight.count_active == 0).all()
    return layers


@pytest.fixture(scope="module")
def unmasked() -> list[LayerStats]:
    """Pruned channels with non-zero tensors: only the ``active`` flag keeps them out of norms."""
    return random_layers(SHAPES, n=2, seed=2, masked=False)


@pytest.fixture(scope="module")
def datasets(
    generic: list[LayerStats], degenerate: list[LayerStats], unmasked: list[LayerStats]
) -> dict[str, list[LayerStats]]:
    return {"generic": generic, "degenerate": degenerate, "unmasked": unmasked}


@pytest.fixture(scope="module")
def batched(datasets: dict[str, list[LayerStats]]) -> dict[str, torch.Tensor]:
    """One bank call with all 630 signals per data set."""
    return {name: score(CELLS, layers) for name, layers in datasets.items()}


def test_data_is_what_the_tests_claim(generic: list[LayerStats]) -> None:
    """Guards against a fixture that silently stops exercising a branch."""
    assert len({layer.channels for layer in generic}) == len(generic)
    assert len({layer.weight.value.shape[2] for layer in generic}) == len(generic)
    assert all((~layer.active).any() and layer.active.sum() >= 2 for layer in generic)
    assert any((layer.weight.count_active < layer.weight.count).all() for layer in generic)
    assert all(len(set(layer.weights_removed[layer.active].tolist())) > 1 for layer in generic[:2])
    for layer in generic:
        act = layer.activation
        assert (layer.weight["hess"] >= 0).all() and (act["hess"] >= 0).all()
        assert (act.value > 0).any() and (act.value < 0).any() and (act.value[:, layer.active] == 0).any()
        assert (act.value[:, ~layer.active] == 0).all() and (
            layer.weight["grad"][:, ~layer.active] == 0
        ).all()


# activation-centered-sum is 0 exactly (rule 4e) but rounding noise numerically: divided by
# a layer norm of that noise (l1, l2) it is noise of order 1 that no two codes share.
NOISE_OVER_NOISE = {parse(f"activation-centered-sum-{s}") for s in ("l1", "l2")}


@pytest.mark.parametrize("cell", CELLS, ids=lambda s: s.id)
def test_bank_matches_reference(
    cell: SignalSpec, batched: dict[str, torch.Tensor], datasets: dict[str, list[LayerStats]]
) -> None:
    row = CELLS.index(cell)
    if cell in NOISE_OVER_NOISE:  # its numerator is the rounding noise of 0 in both codes
        numerator = cell.replace(scaling=Scaling.NONE)
        for layers in datasets.values():
            torch.testing.assert_close(score([numerator], layers)[0], reference_score(numerator, layers))
            assert score([numerator], layers).abs().max() < 1e-12
        return
    for name, layers in datasets.items():
        torch.testing.assert_close(
            batched[name][row], reference_score(cell, layers), **TOL, msg=lambda m, name=name: f"{name}: {m}"
        )


def test_reference_is_not_trivial() -> None:
    """The oracle itself, on a hand-computed case: one layer, one channel, two examples."""
    weight = InputStats(
        {
            "value": torch.tensor([[[2.0, -1.0]]], dtype=torch.float64),
            "grad": torch.tensor([[[1.0, 3.0]], [[-1.0, 0.5]]], dtype=torch.float64),
            "hess": torch.tensor([[[1.0, 2.0]], [[0.0, 4.0]]], dtype=torch.float64),
        },
        count=torch.tensor([2]),
        count_active=torch.tensor([1]),
    )
    layer = LayerStats("one", weight, None, torch.tensor([4]), torch.tensor([True]), torch.tensor([8]))
    # taylor f = -x*g: example 0 -> (-2, 3), example 1 -> (2, 0.5).
    expected = {
        "weight-taylor-sum-none": (1 + 2.5) / 2,
        "weight-taylor-l1-none": (5 + 2.5) / 2,
        "weight-taylor-l2-l0": (13 + 4.25) / 2 / 2,
        "weight-taylor-sqr_sum-weights_removed": (1 + 6.25) / 2 / 4,
        "weight-taylor2_lm-sum-none": ((-2 + 2) + (3 + 1) + (2 + 0) + (0.5 + 2)) / 2,
        "weight-value-abs_sum-l0_active": 1.0,
        "weight-apoz-sum-l2": 1.0,
        "weight-taylor-sqr_sum-macs_removed": (1 + 6.25) / 2 / 8,
        "weight-centered-l2-none": 0.0,  # one data-free example: x - E_n[x] = 0
    }
    for ident, value in expected.items():
        assert reference_score(parse(ident), [layer]).item() == pytest.approx(value), ident
        assert score([ident], [layer]).item() == pytest.approx(value), ident


def test_centered_is_the_deviation_from_the_mean_over_examples() -> None:
    """One channel, two examples of two elements: (1, 3) and (3, -1); means (2, 1), so the
    centered values are (-1, 2) and (1, -2), and l2 is the summed variance 1 + 4 = 5."""
    value = torch.tensor([[[1.0, 3.0]], [[3.0, -1.0]]], dtype=torch.float64)
    ones = torch.tensor([2])
    three = torch.tensor([3])
    weight = InputStats({"value": torch.zeros(1, 1, 3, dtype=torch.float64)}, three, three)
    activation = InputStats({"value": value}, ones, ones)
    layer = LayerStats("one", weight, activation, torch.tensor([4]), torch.tensor([True]), torch.tensor([8]))
    expected = {"l2": 5.0, "sum": 0.0, "abs_sum": 1.0, "sqr_sum": 1.0, "l1": 3.0}
    for reduction, want in expected.items():
        ident = f"activation-centered-{reduction}-none"
        assert reference_score(parse(ident), [layer]).item() == pytest.approx(want), ident
        assert score([ident], [layer]).item() == pytest.approx(want), ident
    variance = value.var(0, unbiased=False).sum()
    assert score(["activation-centered-l2-l0"], [layer]).item() == pytest.approx(variance.item() / 2)


def test_shape_and_finite(batched: dict[str, torch.Tensor], generic: list[LayerStats]) -> None:
    for matrix in batched.values():
        assert matrix.shape == (630, sum(layer.channels for layer in generic))
        assert matrix.dtype == torch.float64
        assert torch.isfinite(matrix).all()


def test_single_calls_agree_with_batched(batched: dict[str, torch.Tensor], generic: list[LayerStats]) -> None:
    sample = CELLS[::13] + [alias.spec for alias in ALIASES.values()]
    for spec in sample:
        single = score([spec], generic)
        assert single.shape == (1, batched["generic"].shape[1])
        torch.testing.assert_close(single[0], batched["generic"][CELLS.index(spec)], rtol=1e-12, atol=0)
    # A small mixed batch, ids given as strings and aliases, in a different order.
    mixed = score(["taylor_fo", "weight-value-l1-none", "activation-taylor-abs_sum-l2"], generic)
    torch.testing.assert_close(mixed[0], mixed[2], rtol=0, atol=0)
    l1_filter = batched["generic"][CELLS.index(parse("l1_filter"))]
    torch.testing.assert_close(mixed[1], l1_filter, rtol=1e-12, atol=0)


def _permute(layer: LayerStats, perm: torch.Tensor) -> LayerStats:
    def stats(s: InputStats) -> InputStats:
        return InputStats(
            {name: t[:, perm] for name, t in s.tensors.items()},
            count=s.count[perm],
            count_active=s.count_active[perm],
        )

    return LayerStats(
        layer.name,
        stats(layer.weight),
        stats(layer.activation),
        layer.weights_removed[perm],
        layer.active[perm],
        layer.macs_removed[perm],
    )


def test_permutation_equivariance(batched: dict[str, torch.Tensor], generic: list[LayerStats]) -> None:
    perm = torch.tensor([3, 0, 6, 1, 5, 2, 4])
    assert len(perm) == generic[1].channels
    permuted = [generic[0], _permute(generic[1], perm), generic[2]]
    got = score(CELLS, permuted)
    want = batched["generic"].clone()
    cols = layer_offsets(generic)["conv1"]
    want[:, cols] = want[:, cols][:, perm]
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-15)
    assert not torch.equal(got, batched["generic"])  # the permutation did move scores


def test_deterministic(batched: dict[str, torch.Tensor], generic: list[LayerStats]) -> None:
    assert torch.equal(score(CELLS, generic), batched["generic"])


def test_layer_offsets(generic: list[LayerStats]) -> None:
    assert layer_offsets(generic) == {"conv0": slice(0, 5), "conv1": slice(5, 12), "conv2": slice(12, 16)}


@pytest.mark.parametrize("ref", ["random", "oracle"])
def test_reference_signals_are_refused(ref: str, generic: list[LayerStats]) -> None:
    with pytest.raises(PrunetaxError, match=ref):
        score(["weight-value-l1-none", ref], generic)


@pytest.mark.parametrize(
    ("input_", "tensor", "ident"),
    [
        ("weight", "grad", "weight-taylor-sum-none"),
        ("weight", "hess", "weight-hessian_lm-sum-none"),
        ("activation", "grad", "activation-gradient-l2-l1"),
        ("activation", "hess", "activation-taylor2_lm-abs_sum-weights_removed"),
    ],
)
def test_missing_tensor_names_the_signal(
    input_: str, tensor: str, ident: str, generic: list[LayerStats]
) -> None:
    def drop(stats: InputStats) -> InputStats:
        kept = {name: t for name, t in stats.tensors.items() if name != tensor}
        return dataclasses.replace(stats, tensors=kept)

    layers = [dataclasses.replace(layer, **{input_: drop(getattr(layer, input_))}) for layer in generic]
    with pytest.raises(PrunetaxError, match=ident) as info:
        score(["activation-value-sum-none", ident], layers)
    assert tensor in str(info.value)
    # Signals that do not read the missing tensor still work.
    assert score(["weight-value-l2-none", "activation-apoz-sum-l0"], layers).shape[0] == 2


def test_missing_activation_statistics_raise(generic: list[LayerStats]) -> None:
    layers = [dataclasses.replace(layer, activation=None) for layer in generic]
    with pytest.raises(PrunetaxError, match="activation"):
        score(["activation-value-sum-none"], layers)
    assert torch.equal(score(["weight-value-l1-none"], layers), score(["weight-value-l1-none"], generic))


def test_no_layers_raise() -> None:
    with pytest.raises(PrunetaxError, match="no layers"):
        score(["weight-value-l1-none"], [])
