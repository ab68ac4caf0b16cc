"""Dead and constant channels (Evci et al. 2018) and the ``centered`` measure, by hand.

A 1x1 conv with five hand-set channels on 100 constant images (image n is the value n/100
everywhere): a plain ReLU channel, a dead one, a constant one, one that fires on 1 image in
100 (dead: zero on 99 %) and one that fires on 2 (alive).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from study.dead_units import CONSTANT_TOLERANCE, DEAD_FRACTION, activity_rows, channel_activity
from study.groups import build_groups
from study.masks import MaskedModel
from study.unit_scores import Workspace, unit_scores
from taxonomy.spec import parse

# (weight, bias) of conv1's five channels; the values each takes on image n are relu(w n/100 + b)
CHANNELS = [(1.0, 0.0), (0.0, -1.0), (0.0, 2.0), (1.0, -0.985), (10.0, -9.75)]


class DeadNet(nn.Module):
    """conv1 (1->5, 1x1) - ReLU - conv2 (5->2, 1x1) - ReLU - flatten - linear; 2x2 inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 5, 1)
        self.conv2 = nn.Conv2d(5, 2, 1)
        self.fc = nn.Linear(2 * 2 * 2, 3)
        with torch.no_grad():
            self.conv1.weight.copy_(torch.tensor([w for w, _ in CHANNELS]).view(5, 1, 1, 1))
            self.conv1.bias.copy_(torch.tensor([b for _, b in CHANNELS]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(torch.relu(self.conv2(torch.relu(self.conv1(x)))), 1))


def _data() -> tuple[MaskedModel, list[tuple[torch.Tensor, torch.Tensor]]]:
    torch.manual_seed(0)
    model = DeadNet().eval()
    x = (torch.arange(100, dtype=torch.float64) / 100).float().view(100, 1, 1, 1).expand(100, 1, 2, 2)
    y = torch.zeros(100, dtype=torch.long)
    return MaskedModel(model, build_groups(model, (1, 2, 2))), [(x[:60], y[:60]), (x[60:], y[60:])]


def test_dead_and_constant_channels_by_hand() -> None:
    masked, batches = _data()
    rows = [r for r in activity_rows(masked, batches) if r["layer"] == "conv1"]
    # share of images with an all-zero map: channel 0 is 0 on image 0 only; channel 3 fires on
    # image 99 (0.99 - 0.985 > 0) only; channel 4 on images 98 and 99
    assert [r["zero_fraction"] for r in rows] == pytest.approx([0.01, 1.0, 0.0, 0.99, 0.98])
    assert [r["dead"] for r in rows] == [False, True, False, True, False]
    # variance across images, per element: {n/100} has (100^2 - 1)/12 x 1e-4; channel 3 takes
    # 0.005 once, channel 4 takes 0.05 and 0.15: E[x^2] - E[x]^2
    variance = [9999 / 12 * 1e-4, 0.0, 0.0, 0.005**2 / 100 - (0.005 / 100) ** 2, 0.025 / 100 - 0.002**2]
    assert [r["variance"] for r in rows] == pytest.approx(variance, rel=1e-4, abs=1e-12)
    layer = sum(variance) / 5
    assert rows[0]["layer_variance"] == pytest.approx(layer, rel=1e-4)
    assert [r["constant"] for r in rows] == [v <= CONSTANT_TOLERANCE * layer for v in variance]
    assert [r["constant"] for r in rows] == [False, True, True, True, False]
    assert {r["nonlinearity"] for r in rows} == {"relu"} and rows[0]["n_examples"] == 100  # torch.relu
    assert rows[0]["dead_threshold"] == DEAD_FRACTION and rows[0]["tap"] == "output"


def test_the_thresholds_are_inclusive_and_a_dead_layer_is_constant() -> None:
    values = torch.zeros(100, 3, 4)
    values[:1, 0] = 1.0  # zero on 99 of 100 inputs: dead
    values[:2, 1] = 1.0  # zero on 98: alive
    got = channel_activity(values)
    assert got["dead"].tolist() == [True, False, True]
    dead_layer = channel_activity(torch.zeros(5, 2, 3))
    assert dead_layer["dead"].all() and dead_layer["constant"].all()


def test_the_variance_column_is_the_variance_alias() -> None:
    """``activation-centered-l2-l0`` (alias ``variance``) at the output tap: the same numbers."""
    masked, batches = _data()
    rows = activity_rows(masked, batches)
    ws = Workspace(masked.model, masked.groups)
    scores, errors = unit_scores(ws, [parse("variance")], batches)
    assert not errors and parse("variance").id == "activation-centered-l2-l0"
    by_unit = {r["unit"]: r["variance"] for r in rows}
    got = torch.tensor([by_unit[u] for u in range(masked.groups.n_units)], dtype=torch.float64)
    torch.testing.assert_close(scores[0], got, rtol=1e-4, atol=1e-9)


def test_centered_joins_the_zero_class_and_explain_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    from study.cli import main
    from taxonomy.equivalence import Context, members, representative

    zero = parse("weight-centered-sum-none")
    for context in (Context(), Context(True, "pooled"), Context(True, "sum"), Context(True, "max")):
        assert len(members(zero, context)) == 42  # rules 4d and 4e hold at the unit level
        assert representative(parse("activation-centered-sum-l2"), context) == zero
    assert main(["signals", "--pointwise", "centered", "--distinct", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    # the zero class, then activation l1/l2/abs_sum/sqr_sum under 6 scalings (l0_active = l0)
    assert len(data) == 1 + 4 * 6 and data[0]["id"] == zero.id and data[0]["class_size"] == 42
    assert main(["explain", "variance"]) == 0
    out = capsys.readouterr().out
    assert "activation-centered-l2-l0" in out and "Evci" in out


def test_a_rank_job_writes_the_activity_table(model_cache: Path, tmp_path: Path) -> None:
    from study.environment import Environment
    from study.rankings import RankJob, execute_rank_job
    from study.store import Store, load

    job = RankJob("tiny_cnn", "digits", 0, 0, ("variance",))
    assert execute_rank_job(job, Store(tmp_path), Environment(model_cache))
    activity, scores = load(tmp_path, "activity"), load(tmp_path, "scores")
    assert len(activity) == len(scores) and set(activity["run_key"]) == {job.run_key}
    assert activity["dead"].dtype == bool and set(activity["tap"]) == {"output"}
    merged = activity.merge(scores, on=["layer", "channel"])
    torch.testing.assert_close(
        torch.tensor(merged["variance"].to_numpy()),
        torch.tensor(merged["score"].to_numpy()),
        rtol=1e-4,
        atol=1e-9,
    )
