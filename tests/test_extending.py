"""Each recipe of docs/extending.md, followed step by step on a tiny network.

Every test registers its example, runs it through the real engine (bank, collector,
protocols, CLI) and unregisters it, so the built-in space is unchanged afterwards.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Annotated

import pytest
import torch
from pydantic import Field
from pydantic.dataclasses import dataclass

from study.collect import Collector
from study.groups import build_groups
from study.masks import MaskedModel
from study.params import STRICT
from study.passes import PASSES, flat, register_pass
from study.protocols import PROTOCOLS, make_protocol, register_protocol
from study.protocols.retrain import Retrain
from study.trajectory import Setup
from study.unit_scores import REFERENCE_SCORERS, register_reference
from taxonomy.bank import score
from taxonomy.components import Input, Pointwise, Reference, Scaling
from taxonomy.equivalence import distinct
from taxonomy.spec import all_cells, parse
from taxonomy.statistics import Needs
from tests.nets import CLASSES, batch, make


@contextmanager
def registered(axis, ident: str, *args, **kwargs):
    member = axis.register(ident, *args, **kwargs)
    try:
        yield member
    finally:
        axis.unregister(ident)


def _layers(signals, name: str = "chain"):
    model, shape = make(name)
    masked = MaskedModel(model, build_groups(model, shape))
    x, y = batch(name, n=8)
    return Collector(masked).collect([(x, y)], Needs.of([parse(s) for s in signals]))


def _setup(name: str = "residual") -> Setup:
    model, shape = make(name)
    x, y = batch(name, n=48, seed=3)
    tx, ty = batch(name, n=40, seed=4)
    return Setup(model, build_groups(model, shape), [(x, y)], (tx, ty), (x, y), 100.0 / CLASSES[name], 0)


def test_a_pointwise_measure_joins_every_input_reduction_and_scaling():
    cells, classes = len(all_cells()), len(distinct())
    with registered(
        Pointwise, "toy_abs", "magnitude", "|x|", r"|x|", needs={"value"}, fn=lambda e: e.x.abs()
    ):
        assert (
            len(all_cells()) == cells + 2 * 5 * 7 and len(distinct()) == classes + 65
        )  # rule 4b merges activation l0_active
        ident = "weight-toy_abs-sum-none"
        layers = _layers([ident, "l1_filter"])
        got = score([ident, "l1_filter"], layers)
        torch.testing.assert_close(got[0], got[1])  # sum |w| is the L1 filter norm
    assert len(all_cells()) == cells and len(distinct()) == classes


def test_a_scaling_divides_every_base_score():
    with registered(
        Scaling,
        "toy_half",
        "twice the score",
        "D = 2",
        "2",
        fn=lambda s, lay, i: s.new_full(s.shape, 2.0),
        pooling="unit",
    ):
        layers = _layers(["activation-taylor-abs_sum-toy_half", "activation-taylor-abs_sum-none"])
        got = score(["activation-taylor-abs_sum-toy_half", "activation-taylor-abs_sum-none"], layers)
        torch.testing.assert_close(got[0] * 2, got[1])


def test_a_statistic_pass_and_a_measure_that_reads_it():
    def squares(ctx):
        return {
            (Input.ACTIVATION, "toy_sq"): [flat(ctx.tapped.taps[t].value).square() for t in ctx.tap_nodes]
        }

    register_pass("toy_squares", {(Input.ACTIVATION, "toy_sq")}, squares)
    try:
        with registered(
            Pointwise, "toy_sq", "squared value", "x^2", "x^2", needs={"toy_sq"}, fn=lambda e: e["toy_sq"]
        ):
            signals = ["activation-toy_sq-sum-none", "activation-value-l2-none"]
            layers = _layers(signals)
            assert all("toy_sq" in layer.activation.available() for layer in layers)
            got = score(signals, layers)
            torch.testing.assert_close(got[0], got[1])  # sum of x^2 = the l2 reduction of x
    finally:
        PASSES.remove("toy_squares")
    with pytest.raises(Exception, match="no registered statistic pass provides activation toy_sq"):
        Collector(MaskedModel(*_masked_parts())).collect(
            [batch("chain")], Needs.from_names({Input.ACTIVATION: {"toy_sq"}})
        )


def _masked_parts():
    model, shape = make("chain")
    return model, build_groups(model, shape)


def test_a_reference_scorer_ranks_units():
    Reference.register("toy_index", "unit index", "S_u = u", "u")
    register_reference(
        "toy_index", lambda ctx: torch.arange(ctx.ws.masked.groups.n_units, dtype=torch.float64)
    )
    try:
        setup = _setup()
        (result,) = make_protocol("sensitivity", channels_per_step=2).run(setup, [parse("toy_index")])
        names = setup.groups.unit_names()
        assert result.error is None
        assert result.rows[1]["pruned"] == ";".join(names[:2])  # the two lowest indices go first
    finally:
        Reference.unregister("toy_index")
        REFERENCE_SCORERS.remove("toy_index")


@register_protocol
@dataclass(frozen=True, config=STRICT)
class _RetrainEvery(Retrain):
    """The recipe's example: retrain only after every ``every``-th prune."""

    name = "toy_retrain_every"
    summary = "retrain after every N-th prune only"
    every: Annotated[int, Field(ge=1, description="retrain after every N-th prune")] = 2

    def retrainer(self, setup):
        inner = super().retrainer(setup)
        if inner is None:
            return None
        return lambda masked, step: inner(masked, step) if step % self.every == 0 else 0


PROTOCOLS.remove("toy_retrain_every")  # registered inside the test only


def test_a_protocol_gets_options_validation_and_runs():
    from study.cli import build_parser
    from study.cli.run import protocol_from_args
    from taxonomy.errors import PrunetaxError

    PROTOCOLS.add("toy_retrain_every", _RetrainEvery)
    try:
        args = build_parser().parse_args(
            [
                "run",
                "--signal",
                "l1_filter",
                "--protocol",
                "toy_retrain_every",
                "--every",
                "3",
                "--retrain-steps",
                "2",
            ]
        )
        protocol = protocol_from_args(args)
        assert protocol.every == 3 and protocol.retrain_steps == 2
        with pytest.raises(PrunetaxError, match="`every` applies to toy_retrain_every"):
            make_protocol("sensitivity", every=3)
        with pytest.raises(PrunetaxError, match="every"):
            make_protocol("toy_retrain_every", every=0)
        (result,) = protocol.run(_setup(), [parse("l1_filter")])
        used = [(r["step"], r["retrain_steps"]) for r in result.rows[1:]]
        assert used and all((n > 0) == (step % 3 == 0) for step, n in used)
        assert not math.isnan(result.rows[-1]["test_acc"])
    finally:
        PROTOCOLS.remove("toy_retrain_every")
