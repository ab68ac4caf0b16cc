"""FLOP-aware pruning: the ``macs_removed`` scaling and Theis's cost-aware Fisher protocol.

Hand-computed on a network of three convs, two of them coupled by a residual add:
``macs_removed`` is the drop in fvcore's MACs when the unit is physically removed,
recomputed after every prune; ``fisher_cost`` prunes ``argmin S - beta * MACs removed /
initial MACs`` at every step (the change in the network's cost is minus what the unit removes).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from study.collect import Collector
from study.flops import fvcore_macs
from study.groups import build_groups
from study.masks import MaskedModel
from study.physical import physically_pruned
from study.protocols import make_protocol
from study.trajectory import Setup, choose_units, tie_order
from study.unit_scores import Workspace, unit_scores
from taxonomy.bank import score
from taxonomy.spec import parse
from taxonomy.statistics import Needs


class CostNet(nn.Module):
    """conv a (1->2) and conv b (2->2) joined by a residual add, conv c (2->3, stride 2), a
    linear head (12 -> 4); 4x4 inputs, 3x3 kernels, padding 1.

    MACs per image: a 2*1*9*16 = 288, b 2*2*9*16 = 576, c 3*2*9*4 = 216, fc 4*12 = 48.
    Removing channel j of the coupled pair removes a's filter j (9 weights x 16 positions),
    b's filter j and b's input slice j of the other filter (18 + 9 weights x 16) and c's
    input slice j (3*9 weights x 4): 144 + 432 + 108 = 684 MACs. Removing channel i of c
    removes its filter (18 x 4) and the head's 4 columns of its 2x2 map (4*4): 72 + 16 = 88.
    """

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(1, 2, 3, padding=1)
        self.b = nn.Conv2d(2, 2, 3, padding=1)
        self.c = nn.Conv2d(2, 3, 3, stride=2, padding=1)
        self.fc = nn.Linear(3 * 2 * 2, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.a(x))
        h = torch.relu(self.b(h) + h)
        return self.fc(torch.flatten(torch.relu(self.c(h)), 1))


SHAPE = (1, 4, 4)


@pytest.fixture
def net() -> tuple[nn.Module, MaskedModel]:
    torch.manual_seed(0)
    model = CostNet().eval()
    return model, MaskedModel(model, build_groups(model, SHAPE))


def _units(masked: MaskedModel, layer: str) -> list[int]:
    return next(lay for lay in masked.groups.layers if lay.name == layer).unit.tolist()


def test_macs_removed_by_hand(net) -> None:
    _, masked = net
    pair, c = _units(masked, "a"), _units(masked, "c")
    assert pair == _units(masked, "b") and masked.groups.coupled  # the add couples a and b
    assert masked.counts().macs == 288 + 576 + 216 + 48
    macs, weights = masked.macs_removed(), masked.weights_removed()
    assert macs[pair].tolist() == [684.0, 684.0] and macs[c].tolist() == [88.0, 88.0, 88.0]
    assert weights[pair].tolist() == [9 + 27 + 27] * 2 and weights[c].tolist() == [18 + 16] * 3
    masked.prune([c[0]])  # recomputed: c's input slices of the pair now feed 2 filters, not 3
    assert masked.macs_removed()[pair].tolist() == [144 + 432 + 2 * 9 * 4] * 2
    assert masked.macs_removed()[c[0]] == 0


def test_macs_removed_is_the_drop_in_fvcore_macs_of_the_physical_model(net) -> None:
    model, masked = net
    for state in ([], [_units(masked, "c")[1]], [_units(masked, "a")[0]]):
        masked.prune(state)
        before = fvcore_macs(physically_pruned(masked), SHAPE)
        removed = masked.macs_removed()
        for u in torch.nonzero(masked.active).flatten().tolist():
            trial = MaskedModel(model, masked.groups)
            trial.active = masked.active.clone()
            trial.active[u] = False
            if not trial.active[masked.groups.unit_group == masked.groups.unit_group[u]].any():
                continue  # a group is never emptied
            assert before - fvcore_macs(physically_pruned(trial), SHAPE) == removed[u], (state, u)


def test_collected_statistics_carry_macs_removed_to_the_bank(net) -> None:
    _, masked = net
    masked.prune([_units(masked, "c")[2]])
    x = torch.randn(5, *SHAPE, generator=torch.Generator().manual_seed(1))
    layers = Collector(masked).collect(
        [(x, torch.zeros(5, dtype=torch.long))], Needs.of([parse("l1_filter")])
    )
    removed = masked.macs_removed()
    for layer, found in zip(masked.groups.layers, layers, strict=True):
        torch.testing.assert_close(found.macs_removed, removed[layer.unit].float())
    scaled, plain = score(["weight-value-l1-macs_removed", "weight-value-l1-none"], layers)
    macs = torch.cat([found.macs_removed for found in layers]).clamp(min=1)  # 0 (pruned) reads as 1
    torch.testing.assert_close(scaled * macs, plain)


def _setup(seed: int = 0) -> Setup:
    from tests.nets import batch, make

    model, shape = make("residual", seed)
    x, y = batch("residual", n=32, seed=3)
    tx, ty = batch("residual", n=24, seed=4)
    return Setup(model, build_groups(model, shape), [(x, y)], (tx, ty), (x, y), 20.0, seed)


def _by_hand(setup: Setup, beta: float) -> list[str]:
    """Theis's loop written out: score fisher, subtract beta x the MACs share each unit removes now."""
    ws = Workspace(setup.model, setup.groups)
    initial, ties, pruned = ws.masked.counts().macs, tie_order(setup.groups.n_units, setup.seed), []
    while True:
        fisher, _ = unit_scores(ws, [parse("fisher")], setup.eval_batches)
        units = choose_units(fisher[0] - beta * ws.masked.macs_removed() / initial, ws.masked, 1, ties)
        if not units:
            break
        ws.masked.prune(units)
        pruned.append(setup.groups.unit_names()[units[0]])
    ws.restore()
    return pruned


@pytest.mark.parametrize("beta", [0.0, 0.05, 1e3])
def test_fisher_cost_prunes_argmin_of_fisher_minus_beta_macs_at_every_step(beta: float) -> None:
    setup = _setup()
    (result,) = make_protocol("fisher_cost", beta=beta).run(setup, [parse("fisher")])
    assert result.error is None
    got = [row["pruned"] for row in result.rows[1:]]
    assert got == _by_hand(_setup(), beta)
    if beta == 0.0:  # no price: the paper's sensitivity run
        (plain,) = make_protocol("sensitivity").run(_setup(), [parse("fisher")])
        assert got == [row["pruned"] for row in plain.rows[1:]]


def test_a_high_value_of_computation_prunes_the_most_expensive_unit_first() -> None:
    setup = _setup()
    ws = Workspace(setup.model, setup.groups)
    cost = ws.masked.macs_removed()
    (result,) = make_protocol("fisher_cost", beta=1e6).run(setup, [parse("fisher")])
    first = setup.groups.unit_names().index(result.rows[1]["pruned"])
    assert cost[first] == cost.max()


def test_beta_is_recorded_and_labels_the_variant() -> None:
    import pandas as pd

    from analysis.design import protocol_labels

    default, other = make_protocol("fisher_cost"), make_protocol("fisher_cost", beta=0.5)
    assert default.as_dict()["beta"] == 0.1 and other.as_dict()["beta"] == 0.5
    trials = pd.DataFrame(
        {
            "protocol": ["fisher_cost"] * 2,
            "protocol_json": ['{"name": "fisher_cost", "beta": 0.1}', '{"name": "fisher_cost", "beta": 0.5}'],
        }
    )
    assert protocol_labels(trials).tolist() == ["fisher_cost", "fisher_cost [beta=0.5]"]
    with pytest.raises(Exception, match="beta"):
        make_protocol("fisher_cost", beta=-1.0)


def test_signals_and_explain_know_macs_removed(capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from study.cli import main

    assert main(["signals", "--scaling", "macs_removed", "--format", "json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 2 * 9 * 5
    assert main(["explain", "activation-taylor-sqr_sum-macs_removed"]) == 0
    out = capsys.readouterr().out
    assert "multiply-adds removed transitively" in out and "rule 3" in out


def _sections_report(tmp_path):  # noqa: ANN001, ANN202
    """The costs sections alone (the rest of the report is tested elsewhere) on a synthetic store
    with cost-aware Fisher, a macs_removed cell, retraining with and without mean replacement
    and an ``activity`` table: (summary.md text, figures written)."""
    from analysis import metrics
    from analysis.report import costs_section
    from analysis.report.builder import Builder
    from analysis.report.figures import Renderer, use_agg
    from analysis.report.tables import load
    from study.store import Store
    from tests.synthetic_store import make_store

    root, signals = tmp_path / "store", ["fisher", "activation-taylor-sqr_sum-macs_removed", "l1_filter"]
    common = dict(models=("tiny_cnn",), seeds=2, steps=12, rank_tables=False)
    make_store(root, signals=[*signals, "random"], **common)
    make_store(root, signals=["fisher"], protocol="fisher_cost", params={"beta": 0.1}, seed=1, **common)
    for on in (False, True):
        params = {"mean_replacement": True} if on else None
        make_store(root, signals=signals, protocol="retrain", params=params, seed=2 + on, **common)
    ident = {"run_key": "job", "model": "tiny_cnn", "dataset": "digits", "base_seed": 0, "seed": 0}
    rows = [
        ident
        | {
            "tap": "output",
            "layer": layer,
            "channel": c,
            "unit": c,
            "nonlinearity": "relu",
            "n_examples": 256,
        }
        | {"zero_fraction": 1.0 if dead else 0.1, "variance": 0.0 if dead else 1.0, "layer_variance": 0.5}
        | {"dead": dead, "constant": dead, "dead_threshold": 0.99, "constant_tolerance": 1e-3, "step": 0}
        for layer, n_dead in (("features.0", 1), ("features.3", 0))
        for c in range(4)
        for dead in [c < n_dead]
    ]
    Store(root).write("activity", "job", rows)
    use_agg()
    data = load(root)
    m = metrics.trial_metrics(data["trials"], data["steps"])
    b = Builder(root, data, m, "sparsity_at_5", 5, Renderer(tmp_path / "report"))
    costs_section.sections(b)
    summary, _ = b.write()
    return summary.read_text(), b.renderer.done


def test_the_report_shows_flop_aware_pruning_mean_replacement_and_dead_units(tmp_path) -> None:
    from analysis.report.sections import SECTIONS

    assert any(getattr(s, "__module__", "") == "analysis.report.costs_section" for s in SECTIONS)
    text, figures = _sections_report(tmp_path)
    assert "## FLOP-aware pruning: accuracy against MAC sparsity" in text
    table = text.split("| network |")[1].split("\n\n")[0]
    rows = [line.split(" | ") for line in table.splitlines()[2:]]
    assert [r[1] for r in rows] == [  # best MAC headline first
        "`act·taylor·sqr_sum·mr · sensitivity`",  # the macs_removed cell
        "`fisher · fisher_cost`",  # Theis's method
        "`fisher · sensitivity`",  # beta = 0
    ]
    assert "macs_curves__flop_aware" in figures
    assert (
        "## Mean replacement on and off" in text and "`retrain` against `retrain [mean replacement]`" in text
    )
    assert "## Dead and constant channels before pruning" in text
    assert "tiny_cnn/digits: 1 dead and 1 constant of 8 channels" in text
