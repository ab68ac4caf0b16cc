"""Signal ids: one grammar, one parser, the literature aliases of SPEC §2.5, helpful errors."""

from __future__ import annotations

import dataclasses

import pytest

from taxonomy.aliases import ALIASES, aliases_of
from taxonomy.components import Input, Pointwise, Reduction, Reference, Scaling
from taxonomy.errors import PrunetaxError
from taxonomy.spec import SignalSpec, all_cells, parse

# SPEC §2.5, copied by hand: alias -> input-pointwise-reduction-scaling.
SPEC_ALIASES = {
    "l1_filter": "weight-value-l1-none",
    "l2_filter": "weight-value-l2-none",
    "min_weight": "weight-value-l2-l0",
    "mean_activation": "activation-value-sum-l0",
    "apoz": "activation-apoz-sum-l0",
    "taylor_fo": "activation-taylor-abs_sum-l2",
    "fisher": "activation-taylor-sqr_sum-none",
    "obd": "weight-hessian_lm-sum-none",
    "best_weight": "weight-value-l2-weights_removed",
    "best_activation": "activation-value-l2-weights_removed",
    "best_gradient": "activation-taylor2_gn-abs_sum-weights_removed",
    "variance": "activation-centered-l2-l0",  # beyond the SPEC table: Evci 2018's constant units
}


def test_all_cells_enumerate_the_product() -> None:
    cells = all_cells()
    assert len(cells) == len(set(cells)) == 630
    assert {c.input for c in cells} == set(Input) and {c.scaling for c in cells} == set(Scaling)
    assert {c.pointwise for c in cells} == set(Pointwise) and {c.reduction for c in cells} == set(Reduction)


def test_parse_roundtrips_every_cell() -> None:
    for cell in all_cells():
        assert parse(cell.id) == cell
        assert parse(cell) is cell
        assert cell.id.count("-") == 3 and str(cell) == cell.id


@pytest.mark.parametrize("name", ["random", "oracle"])
def test_parse_references(name: str) -> None:
    spec = parse(name)
    assert spec == SignalSpec(reference=Reference(name)) and spec.is_reference
    assert spec.id == name and parse(spec.id) == spec and parse(f"  {name.upper()} ") == spec
    with pytest.raises(PrunetaxError, match="reference"):
        _ = spec.components


@pytest.mark.parametrize(("alias", "ident"), sorted(SPEC_ALIASES.items()))
def test_alias_resolves_to_spec_table(alias: str, ident: str) -> None:
    spec = parse(alias)
    assert spec.id == ident and spec == parse(ident)
    assert alias in aliases_of(spec)
    assert parse(alias.upper()) == spec
    assert ALIASES[alias].citation


def test_alias_table_is_exactly_the_spec_table() -> None:
    assert set(ALIASES) == set(SPEC_ALIASES)
    assert {name: a.spec.id for name, a in ALIASES.items()} == SPEC_ALIASES
    assert aliases_of(parse("weight-value-sum-none")) == []


def test_case_and_whitespace_tolerance() -> None:
    want = SignalSpec(Input.ACTIVATION, Pointwise.TAYLOR, Reduction.SUM, Scaling.NONE)
    for text in (
        " Activation - TAYLOR-sum-none ",
        "ACTIVATION-Taylor-Sum-None",
        "activation-taylor-sum-none\n",
    ):
        assert parse(text) == want
    assert parse(" Taylor_FO ") == parse("taylor_fo")
    assert parse("weight - Hessian_LM - sqr_sum - L0_Active").id == "weight-hessian_lm-sqr_sum-l0_active"


def test_bad_components_are_named_with_suggestions() -> None:
    with pytest.raises(PrunetaxError) as info:
        parse("activaton-taylr-sum-none")
    msg = str(info.value)
    assert "'activaton'" in msg and "'taylr'" in msg
    assert "did you mean 'activation'" in msg and "'taylor'" in msg
    assert "unknown input" in msg and "unknown pointwise" in msg
    assert "unknown reduction" not in msg and "unknown scaling" not in msg  # good parts not blamed


def test_every_axis_error_is_reported() -> None:
    with pytest.raises(PrunetaxError) as info:
        parse("wieght-valeu-summ-l0_activ")
    msg = str(info.value)
    for bad, good in (("wieght", "weight"), ("valeu", "value"), ("summ", "sum"), ("l0_activ", "l0_active")):
        assert f"'{bad}'" in msg and f"'{good}'" in msg, (bad, msg)


@pytest.mark.parametrize("text", ["weight-value-sum", "taylor-fo", "", "a-b-c-d-e", "taylorfo"])
def test_malformed_ids_raise(text: str) -> None:
    with pytest.raises(PrunetaxError, match="alias"):
        parse(text)


def test_unknown_alias_suggests_the_closest() -> None:
    with pytest.raises(PrunetaxError, match="'taylor_fo'"):
        parse("taylor_f0")


def test_spec_is_frozen_and_hashable() -> None:
    spec = parse("taylor_fo")
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.scaling = Scaling.NONE  # type: ignore[misc]
    twin = SignalSpec(Input.ACTIVATION, Pointwise.TAYLOR, Reduction.ABS_SUM, Scaling.L2)
    assert spec == twin and hash(spec) == hash(twin) and len({spec, twin, parse("random")}) == 2
    assert spec.replace(scaling=Scaling.NONE).id == "activation-taylor-abs_sum-none"
    assert spec.id == "activation-taylor-abs_sum-l2"  # replace made a copy


@pytest.mark.parametrize(
    "parts",
    [
        (Input.WEIGHT, Pointwise.VALUE, Reduction.SUM),
        (Input.WEIGHT, Pointwise.VALUE, None, Scaling.NONE),
        (),
    ],
)
def test_missing_component_raises(parts: tuple) -> None:
    with pytest.raises(PrunetaxError, match="must be a"):
        SignalSpec(*parts)


def test_wrong_component_type_and_reference_with_components_raise() -> None:
    with pytest.raises(PrunetaxError, match="`pointwise` must be a Pointwise"):
        SignalSpec(Input.WEIGHT, Reduction.SUM, Reduction.SUM, Scaling.NONE)  # type: ignore[arg-type]
    with pytest.raises(PrunetaxError, match="no components"):
        SignalSpec(Input.WEIGHT, reference=Reference.RANDOM)
