"""Coupled groups, masks and counts against brute force on tiny networks.

Masked and physically pruned models must compute the same function; the analytic
weight/MAC counts must equal the physical model's parameter count and fvcore's MACs;
``weights_removed`` must equal the weights actually removed by pruning one more unit.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from study.flops import fvcore_macs
from study.groups import build_groups
from study.masks import MaskedModel
from study.physical import SplitConv, physically_pruned
from tests.nets import NETS, batch, make


def _weights(model: nn.Module) -> int:
    return sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear))


def _prune_sets(n_units: int, seed: int) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n_units, generator=g).tolist()
    return [[], perm[:2], perm[2:5], perm[5 : 5 + n_units // 3]]


@pytest.fixture(params=sorted(NETS))
def net(request):
    model, shape = make(request.param)
    return request.param, model, shape, build_groups(model, shape)


def _safe(masked: MaskedModel, units: list[int]) -> list[int]:
    """Drop units that would empty their group (the protocol never does that)."""
    left = torch.bincount(masked.groups.unit_group[masked.active], minlength=len(masked.groups.group_sizes))
    keep = []
    for u in units:
        g = int(masked.groups.unit_group[u])
        if masked.active[u] and left[g] > 1:
            keep.append(u)
            left[g] -= 1
    return keep


def test_masked_equals_physical_and_counts(net):
    name, model, shape, groups = net
    masked = MaskedModel(model, groups)
    x, _ = batch(name)
    for units in _prune_sets(groups.n_units, seed=3):
        masked.prune(_safe(masked, units))
        physical = physically_pruned(masked).eval()
        with torch.no_grad():
            torch.testing.assert_close(physical(x), model(x), atol=1e-5, rtol=1e-5)
        counts = masked.counts()
        assert counts.weights == _weights(physical)
        assert counts.macs == fvcore_macs(physical, shape)


def test_weights_removed_is_what_pruning_removes(net):
    name, model, shape, groups = net
    masked = MaskedModel(model, groups)
    masked.prune(_safe(masked, _prune_sets(groups.n_units, seed=5)[2]))
    removed = masked.weights_removed()
    before = _weights(physically_pruned(masked))
    for u in torch.nonzero(masked.active).flatten().tolist():
        trial = MaskedModel(model, groups)
        trial.active = masked.active.clone()
        trial.active[u] = False
        # count on a copy: the brute force is the parameter count of the physical model
        assert before - trial.counts().weights == removed[u], u


def test_masks_zero_everything_a_unit_owns(net):
    name, model, shape, groups = net
    masked = MaskedModel(model, groups)
    unit = 0
    masked.prune([unit])
    # the unit's member conv channels produce exactly zero at their output
    outputs = {}
    hooks = [
        model.get_submodule(layer.site.bn or layer.name).register_forward_hook(
            lambda m, a, o, n=layer.name: outputs.__setitem__(n, o)
        )
        for layer in groups.layers
    ]
    with torch.no_grad():
        model(batch(name)[0])
    for h in hooks:
        h.remove()
    for layer in groups.layers:
        for c in torch.nonzero(layer.unit == unit).flatten().tolist():
            assert outputs[layer.name][:, c].abs().max() == 0


def test_residual_coupling_grouped_and_depthwise():
    model, shape = make("residual")
    groups = build_groups(model, shape)
    layer = {lay.name: lay for lay in groups.layers}
    # the residual add couples the stem and the block's second conv
    assert torch.equal(layer["stem"].unit, layer["c2"].unit)
    # the depthwise conv is coupled to the grouped conv that feeds it
    assert torch.equal(layer["dw"].unit, layer["grouped"].unit)
    # grouped conv: output channels 0-2 read inputs 0-1, channels 3-5 read inputs 2-3
    stem = layer["stem"].unit
    assert torch.equal(layer["grouped"].in_unit[0], stem[:2])
    assert torch.equal(layer["grouped"].in_unit[5], stem[2:])
    assert len(groups.group_sizes) == 3  # stem+c2, c1, grouped+dw


def test_uneven_grouped_conv_becomes_split_conv():
    model, shape = make("residual")
    groups = build_groups(model, shape)
    masked = MaskedModel(model, groups)
    grouped = next(lay for lay in groups.layers if lay.name == "grouped")
    masked.prune([int(grouped.unit[0])])
    physical = physically_pruned(masked)
    assert isinstance(physical.grouped, SplitConv)
    x, _ = batch("residual")
    with torch.no_grad():
        torch.testing.assert_close(physical(x), model(x), atol=1e-5, rtol=1e-5)


def test_retraining_keeps_pruned_slices_at_zero():
    from study.retrain import RetrainSettings, retrain

    model, shape = make("residual")
    masked = MaskedModel(model, build_groups(model, shape))
    masked.prune([0, 5])
    x, y = batch("residual", n=32)
    retrain(
        masked, x, y, RetrainSettings(steps=5, lr=0.1, momentum=0.9, weight_decay=1e-3, batch_size=8), seed=0
    )
    params = dict(model.named_parameters())
    for name, mask in masked.masks().items():
        assert (params[name].detach() * (1 - mask)).abs().max() == 0, name


def _registry_models() -> list[str]:
    from study import models

    return [*models.names(), "tv:resnet18", "tv:mobilenet_v2"]


@pytest.mark.parametrize("name", _registry_models())
def test_every_registry_model_masked_equals_physical_and_counts_equal_fvcore(name):
    from study import models
    from tests.nets import randomize

    size = 32 if name.startswith("tv:") else max(8, models.entry(name).min_image_size)
    model = randomize(models.build(name, 3, 10, size))
    groups = build_groups(model, (3, size, size))
    masked = MaskedModel(model, groups)
    perm = torch.randperm(groups.n_units, generator=torch.Generator().manual_seed(0)).tolist()
    masked.prune(_safe(masked, perm[: groups.n_units // 2]))
    physical = physically_pruned(masked).eval()
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        got, want = physical(x), model(x)
    if got.shape != want.shape:  # NIN: the classifier conv's pruned channels are pruned classes
        want = want[:, masked.active[groups.layers[-1].unit]]
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    counts = masked.counts()
    assert counts.weights == _weights(physical)
    assert counts.macs == fvcore_macs(physical, (3, size, size))
