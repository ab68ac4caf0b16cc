"""The Python API on a model of one's own (not in the registry), and the README example."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from torch import nn

import prunetax
from study.flops import fvcore_macs
from taxonomy.errors import PrunetaxError
from tests.nets import batch


class OwnNet(nn.Module):
    """A researcher's network: a residual add (coupled units), BN, pooling, a linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU())
        self.branch = nn.Sequential(nn.Conv2d(6, 6, 3, padding=1), nn.BatchNorm2d(6))
        self.down = nn.Sequential(nn.Conv2d(6, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.head = nn.Linear(8 * 4 * 4, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(x)
        h = torch.relu(self.branch(h) + h)
        return self.head(torch.flatten(self.down(h), 1))


@pytest.fixture(scope="module")
def own():
    torch.manual_seed(0)
    model = OwnNet().eval()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    return model, batch("chain", n=32, seed=1), batch("chain", n=40, seed=2)


SIGNALS = ["taylor_fo", "l1_filter", "apoz", "activation-taylor2_gn-abs_sum-weights_removed", "oracle"]


def test_score_an_own_model_with_five_signals(own):
    model, data, _ = own
    before = {k: v.clone() for k, v in model.state_dict().items()}
    table = prunetax.score(model, data, SIGNALS)
    assert list(table.columns) == ["signal", "layer", "channel", "unit", "score"]
    assert table.groupby("signal").size().to_dict() == dict.fromkeys(table["signal"].unique(), 6 + 6 + 8)
    assert table["score"].notna().all() and len(table["signal"].unique()) == 5
    units = prunetax.score(model, data, SIGNALS, level="unit")
    assert len(units) == 5 * 14  # stem and branch are coupled by the add: 6 + 8 units
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # untouched


def test_prune_to_half_the_weights_and_export_a_smaller_model(own):
    model, data, test = own
    result = prunetax.prune(model, data, "taylor_fo", test=test, target_sparsity=50)
    assert result.stop_reason == "target sparsity 50.0 reached"
    last = result.steps.iloc[-1]
    assert last["sparsity"] >= 50 and result.headline["final_sparsity"] == last["sparsity"]
    small = result.export()
    x = test[0]
    torch.testing.assert_close(small.model(x), result.masked()(x), atol=1e-5, rtol=1e-5)
    assert small.weights == last["weights_remaining"]
    assert small.macs == last["macs_remaining"] == fvcore_macs(small.model, (1, 8, 8))
    assert small.parameters == sum(p.numel() for p in small.model.parameters())
    full = sum(p.numel() for p in model.parameters())
    assert small.parameters < full and small.macs < fvcore_macs(model, (1, 8, 8))
    again = prunetax.export_pruned(result)  # the result itself exports its final network
    torch.testing.assert_close(again.model(x), small.model(x))
    with pytest.raises(PrunetaxError, match="export_pruned\\(result\\)"):
        prunetax.export_pruned(model)


def test_several_signals_and_protocol_parameters(own):
    model, data, test = own
    results = prunetax.prune(model, data, ["l1_filter", "random"], test=test, channels_per_step=3)
    assert [r.signal for r in results] == ["weight-value-l1-none", "random"]
    assert all((r.steps["n_pruned"].iloc[1:-1] == 3).all() for r in results)
    with pytest.raises(PrunetaxError, match="retrain_steps"):
        prunetax.prune(model, data, "l1_filter", retrain_steps=3)


def test_bad_data_is_a_clear_error(own):
    model, _, _ = own
    with pytest.raises(PrunetaxError, match="DataLoader"):
        prunetax.score(model, [1, 2, 3], "taylor_fo")


def test_the_readme_python_example_runs(tmp_path, monkeypatch):
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    block = re.search(r"## Python\n.*?```python\n(.*?)```", readme, re.S)
    assert block, "the README has a Python section with a python example"
    monkeypatch.chdir(tmp_path)
    exec(compile(block.group(1), "README.md", "exec"), {"__name__": "readme"})
