"""Every registry model builds for common geometries, fx-traces, and obeys the hook rules."""

from __future__ import annotations

import dataclasses
import operator
from collections import Counter

import pytest
import torch
import torch.fx as fx
from torch import nn

from study import models
from taxonomy.errors import PrunetaxError

GEOMETRIES = [(1, 10, 8), (1, 10, 16), (3, 10, 32), (3, 100, 32)]
TV_MODELS = ["tv:resnet18", "tv:mobilenet_v2"]


def _calls(model: nn.Module) -> tuple[fx.GraphModule, Counter]:
    gm = fx.symbolic_trace(model)
    return gm, Counter(str(n.target) for n in gm.graph.nodes if n.op == "call_module")


def _check_rules(model: nn.Module, own: bool) -> None:
    gm, calls = _calls(model)
    shared = [t for t, k in calls.items() if k > 1]
    assert not shared, f"modules called more than once: {shared}"
    inplace = [n for n, m in model.named_modules() if getattr(m, "inplace", False)]
    assert not inplace, f"in-place modules: {inplace}"
    ops = [n.target for n in gm.graph.nodes if n.op in ("call_function", "call_method")]
    assert not [t for t in ops if str(getattr(t, "__name__", t)).endswith("_") or t is operator.iadd]
    if own:  # our networks: every op but the residual add is a module
        assert set(ops) <= {operator.add}, ops


CASES = [(n, g) for n in models.names() for g in GEOMETRIES] + [
    (n, g) for n in TV_MODELS for g in [(1, 10, 16), (3, 100, 32)]
]


@pytest.mark.parametrize(("name", "geometry"), CASES, ids=[f"{n}-{'x'.join(map(str, g))}" for n, g in CASES])
def test_builds_traces_and_follows_rules(name, geometry):
    c, k, s = geometry
    if s < models.entry(name).min_image_size:
        with pytest.raises(PrunetaxError, match="image_size"):
            models.build(name, c, k, s)
        return
    torch.manual_seed(0)
    model = models.build(name, c, k, s).eval()
    x = torch.randn(2, c, s, s)
    with torch.no_grad():
        out = model(x)
        assert out.shape == (2, k)
        assert torch.isfinite(out).all()
        gm, _ = _calls(model)
        torch.testing.assert_close(gm(x), out)
    _check_rules(model, own=name in models.names())


@pytest.mark.parametrize("name", models.names())
def test_min_image_size_is_tight(name):
    entry = models.entry(name)
    models.build(name, 1, 10, entry.min_image_size)
    if entry.min_image_size > 1:
        with pytest.raises(PrunetaxError, match="image_size"):
            models.build(name, 1, 10, entry.min_image_size - 1)


def _convs(model: nn.Module) -> list[nn.Conv2d]:
    return [m for m in model.modules() if isinstance(m, nn.Conv2d)]


def test_alexnet_groups():
    convs = _convs(models.build("alexnet_cifar", 3, 10, 32))
    assert [c.groups for c in convs] == [1, 2, 1, 2, 2]
    assert [c.out_channels for c in convs] == [96, 256, 384, 384, 256]


def test_nin_ends_with_conv_classifier():
    model = models.build("nin", 3, 100, 32)
    assert not [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert _convs(model)[-1].out_channels == 100
    assert model.features[-1] is _convs(model)[-1]  # no ReLU between class maps and the pool
    assert isinstance(model.classifier[0], nn.AdaptiveAvgPool2d)


def test_lenet5_is_caffe_variant():
    model = models.build("lenet5", 1, 10, 28)
    assert not [m for m in model.features if isinstance(m, nn.ReLU)]
    assert [c.out_channels for c in _convs(model)] == [20, 50]
    assert [m.out_features for m in model.classifier if isinstance(m, nn.Linear)] == [500, 10]
    assert model.classifier[1].in_features == 50 * 4 * 4


def test_cifar10_quick_layers():
    model = models.build("cifar10_quick", 3, 10, 32)
    assert [(c.out_channels, c.kernel_size[0]) for c in _convs(model)] == [(32, 5), (32, 5), (64, 5)]
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(64 * 4 * 4, 64), (64, 10)]


@pytest.mark.parametrize(("name", "blocks"), [("resnet20", 3), ("resnet32", 5), ("resnet56", 9)])
def test_cifar_resnets_use_projection_shortcuts(name, blocks):
    model = models.build(name, 3, 10, 32)
    convs3 = [c for c in _convs(model) if c.kernel_size == (3, 3)]
    assert len(convs3) + 1 == 6 * blocks + 2  # depth = 3x3 convs + fc
    projections = [c for c in _convs(model) if c.kernel_size == (1, 1)]
    assert [(p.in_channels, p.out_channels, p.stride[0]) for p in projections] == [(16, 32, 2), (32, 64, 2)]
    assert {c.out_channels for c in convs3} == {16, 32, 64}


def test_vgg16_bn_layers():
    model = models.build("vgg16_bn", 3, 10, 32)
    assert len(_convs(model)) == 13
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 13
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.modules()) == 5
    assert model.classifier[-1].in_features == 512


def test_torchvision_first_conv_and_no_download():
    model = models.build("tv:resnet18", 1, 7, 16)
    assert model.conv1.in_channels == 1
    assert model.fc.out_features == 7
    assert "layer1.0.conv1.weight" in model.state_dict()


def test_build_is_seeded():
    def weights():
        torch.manual_seed(3)
        return models.build("tiny_resnet", 1, 10, 8).state_dict()

    a, b = weights(), weights()
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize(
    ("bad", "suggestion"), [("resnet2O", "resnet20"), ("tiny-cnn", "tiny_cnn"), ("tv:resnet1", "tv:resnet18")]
)
def test_unknown_name_did_you_mean(bad, suggestion):
    with pytest.raises(PrunetaxError, match="Did you mean") as err:
        models.build(bad, 1, 10, 8)
    assert suggestion in str(err.value)


def test_bad_geometry_is_a_user_error():
    with pytest.raises(PrunetaxError, match="num_classes"):
        models.build("tiny_cnn", 1, 1, 8)


def test_hyperparams_carry_the_papers_retraining():
    steps = {n: models.hyperparams(n).retrain_steps for n in models.names()}
    assert {k: steps[k] for k in ("lenet5", "cifar10_quick", "resnet20", "nin", "alexnet_cifar")} == {
        "lenet5": 256,
        "cifar10_quick": 256,
        "resnet20": 50,
        "nin": 25,
        "alexnet_cifar": 10,
    }
    decay = {n: models.hyperparams(n).retrain_weight_decay for n in models.names()}
    assert decay["nin"] == decay["resnet20"] == decay["resnet56"] == 1e-4
    assert decay["lenet5"] == decay["alexnet_cifar"] == decay["cifar10_quick"] == 5e-4
    hp = models.hyperparams("resnet20")
    assert (hp.retrain_lr, hp.retrain_momentum, hp.schedule) == (1e-3, 0.9, "step")
    with pytest.raises(dataclasses.FrozenInstanceError):
        hp.lr = 1.0  # type: ignore[misc]
    assert models.hyperparams("tv:resnet18").epochs > 0
