"""Statistics collection against brute force: per-example gradients by single-example
backward passes, the LM pass by hand and by explicit squared Jacobians, rule 3."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from study.collect import Collector
from study.groups import build_groups
from study.masks import MaskedModel
from taxonomy.bank import score
from taxonomy.components import Input
from taxonomy.spec import parse
from taxonomy.statistics import Needs
from tests.nets import NETS, batch, make

ALL = Needs.from_names({Input.WEIGHT: {"value", "grad", "hess"}, Input.ACTIVATION: {"value", "grad", "hess"}})


def _collect(name: str, tap: str = "output", prune: tuple[int, ...] = ()):
    model, shape = make(name)
    masked = MaskedModel(model, build_groups(model, shape))
    masked.prune(list(prune))
    x, y = batch(name)
    stats = Collector(masked, tap).collect([(x[:4], y[:4]), (x[4:], y[4:])], ALL)
    return model, masked, x, y, stats


def _tap_modules(model: nn.Module, masked: MaskedModel, tap: str) -> dict[str, nn.Module]:
    """The module whose output is each layer's tap (test nets use one module per op)."""
    out = {}
    for layer in masked.groups.layers:
        site = layer.site
        if tap == "conv":
            out[layer.name] = model.get_submodule(layer.name)
        elif site.activation is not None:
            out[layer.name] = model.get_submodule(site.activation.replace("_", "."))
        else:
            out[layer.name] = model.get_submodule(site.bn or layer.name)
    return out


@pytest.mark.parametrize("name", sorted(NETS))
@pytest.mark.parametrize("tap", ["output", "conv"])
def test_per_example_gradients_match_single_example_backward(name, tap):
    model, masked, x, y, stats = _collect(name, tap, prune=(1,))
    taps = _tap_modules(model, masked, tap)
    for n in range(x.shape[0]):
        seen: dict[str, torch.Tensor] = {}

        def keep(mod, args, out, k, seen=seen):
            out.retain_grad()
            seen[k] = out

        hooks = [m.register_forward_hook(lambda mod, a, o, k=k: keep(mod, a, o, k)) for k, m in taps.items()]
        model.zero_grad()
        F.cross_entropy(model(x[n : n + 1]), y[n : n + 1], reduction="sum").backward()
        for h in hooks:
            h.remove()
        for layer in stats:
            conv = model.get_submodule(layer.name)
            ref = conv.weight.grad.flatten(1)
            if conv.bias is not None:
                ref = torch.cat([ref, conv.bias.grad[:, None]], 1)
            torch.testing.assert_close(layer.weight["grad"][n], ref, atol=1e-5, rtol=1e-4)
            torch.testing.assert_close(layer.activation.value[n], seen[layer.name][0].detach().flatten(1))
            torch.testing.assert_close(
                layer.activation["grad"][n], seen[layer.name].grad[0].flatten(1), atol=1e-6, rtol=1e-4
            )


def test_pruned_channels_read_zero():
    model, masked, x, y, stats = _collect("chain", prune=(0,))
    for layer, info in zip(stats, masked.groups.layers, strict=True):
        dead = ~masked.active[info.unit]
        for t in (
            layer.weight.value,
            layer.weight["grad"],
            layer.activation.value,
            layer.activation["grad"],
            layer.activation["hess"],
        ):
            assert t[:, dead].abs().max() == 0 if dead.any() else True
        assert not layer.active[dead].any()


class _Tiny(nn.Module):
    """1x1 conv (no bias) -> ReLU -> flatten -> linear: the LM pass by hand."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 1, bias=False)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(3 * 2 * 2, 4)

    def forward(self, x):
        return self.fc(torch.flatten(self.relu(self.conv(x)), 1))


def test_lm_pass_matches_hand_derivation():
    torch.manual_seed(0)
    model = _Tiny().eval()
    masked = MaskedModel(model, build_groups(model, (2, 2, 2)))
    x, y = torch.randn(3, 2, 2, 2), torch.tensor([0, 1, 3])
    for tap in ("output", "conv"):
        (layer,) = Collector(masked, tap).collect([(x, y)], ALL)
        with torch.no_grad():
            pre = model.conv(x)  # [N, 3, 2, 2]
            p = model(x).softmax(1)
            h_logits = p * (1 - p)  # [N, 4]
            h_z = (h_logits @ model.fc.weight.square()).view(3, 3, 2, 2)  # relu output
            h_y = h_z * (pre > 0)  # conv output
            h_w = torch.einsum("nohw,nihw->noi", h_y, x.square())
        expected = h_z if tap == "output" else h_y
        torch.testing.assert_close(layer.activation["hess"], expected.flatten(2))
        torch.testing.assert_close(layer.weight["hess"], h_w)


def _squared_jacobian_chain(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """LM diagonal at each ChainNet tap by explicit per-example Jacobians, squared."""
    stages = [
        ("conv1", lambda t: model.conv1(t)),
        ("relu1", lambda t: model.relu1(model.bn1(t))),
        ("conv2", lambda t: model.conv2(model.pool1(t))),
        ("relu2", lambda t: model.relu2(t)),
        ("logits", lambda t: model.fc(torch.flatten(model.pool2(t), 1))),
    ]
    out = {}
    for n in range(x.shape[0]):
        values, t = [x[n : n + 1]], x[n : n + 1]
        for _, f in stages:
            t = f(t)
            values.append(t)
        p = values[-1].softmax(1)
        h = (p * (1 - p)).flatten()
        for k in range(len(stages) - 1, 0, -1):
            jac = torch.autograd.functional.jacobian(stages[k][1], values[k], vectorize=True).reshape(
                h.numel(), -1
            )
            h = jac.square().T @ h
            out.setdefault(stages[k - 1][0], []).append(h.view_as(values[k][0]))
    return {k: torch.stack(v) for k, v in out.items()}


def test_lm_pass_matches_squared_jacobians():
    model, masked, x, y, stats = _collect("chain")
    ref = _squared_jacobian_chain(model, x[:2])  # explicit Jacobians are slow: two examples
    by_name = {layer.name: layer for layer in stats}
    torch.testing.assert_close(
        by_name["conv1"].activation["hess"][:2], ref["relu1"].flatten(2), atol=1e-6, rtol=1e-4
    )
    torch.testing.assert_close(
        by_name["conv2"].activation["hess"][:2], ref["relu2"].flatten(2), atol=1e-6, rtol=1e-4
    )
    _, _, _, _, conv_stats = _collect("chain", tap="conv")
    by_name = {layer.name: layer for layer in conv_stats}
    torch.testing.assert_close(
        by_name["conv1"].activation["hess"][:2], ref["conv1"].flatten(2), atol=1e-6, rtol=1e-4
    )
    torch.testing.assert_close(
        by_name["conv2"].activation["hess"][:2], ref["conv2"].flatten(2), atol=1e-6, rtol=1e-4
    )


@pytest.mark.parametrize(
    ("name", "tap"), [("chain", "conv"), ("residual", "conv"), ("nobn", "output"), ("nobn", "conv")]
)
def test_rule3_weight_taylor_equals_activation_taylor(name, tap):
    *_, stats = _collect(name, tap, prune=(2,))
    for reduction in ("sum", "abs_sum", "sqr_sum"):
        for scaling in ("none", "l1", "l2", "weights_removed"):
            w = score([parse(f"weight-taylor-{reduction}-{scaling}")], stats)
            a = score([parse(f"activation-taylor-{reduction}-{scaling}")], stats)
            torch.testing.assert_close(w, a, atol=1e-6, rtol=1e-4)


def test_rule3_fails_at_output_tap_with_bn():
    *_, stats = _collect("chain", "output")
    w = score([parse("weight-taylor-sum-none")], stats)
    a = score([parse("activation-taylor-sum-none")], stats)
    assert not torch.allclose(w, a, atol=1e-6, rtol=1e-4)
