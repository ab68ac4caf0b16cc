"""torchvision classification models (``tv:<name>``), made to follow the registry's rules.

Built with ``weights=None`` (nothing is ever downloaded). The first convolution is
replaced when the input is not RGB, in-place activations are made out-of-place, and
the model is fx-traced into a ``GraphModule`` in which a module called twice (e.g. the
one ReLU of torchvision's ``BasicBlock``) becomes one copy per call, so every call site
can be hooked on its own. Parameter names (``layer1.0.conv1.weight`` ...) are unchanged.
Activations that torchvision calls functionally (``F.relu`` in DenseNet) stay functional.
"""

from __future__ import annotations

import copy

import torch.fx as fx
from torch import nn

from taxonomy.errors import PrunetaxError

__all__ = ["PREFIX", "tv_names", "build_tv", "unshare_modules"]

PREFIX = "tv:"


def tv_names() -> list[str]:
    """Every torchvision classification model name (without the ``tv:`` prefix)."""
    import torchvision

    return torchvision.models.list_models(module=torchvision.models)


def build_tv(name: str, in_channels: int, num_classes: int, image_size: int) -> nn.Module:
    """Build torchvision's ``name`` (one of :func:`tv_names`) with random weights, as described above."""
    import torchvision

    model = torchvision.models.get_model(name, weights=None, num_classes=num_classes)
    if in_channels != 3:
        _replace_first_conv(model, in_channels)
    for module in model.modules():
        if getattr(module, "inplace", False):
            module.inplace = False
    try:
        return unshare_modules(model)
    except Exception as err:  # fx raises many types for untraceable control flow
        raise PrunetaxError(
            f"`model` {PREFIX}{name} cannot be traced with torch.fx ({type(err).__name__}: {err}); "
            "prunetax needs a traceable graph. Pick another torchvision model."
        ) from None


def _replace_first_conv(model: nn.Module, in_channels: int) -> None:
    """Swap the first Conv2d for one with ``in_channels`` inputs and the same geometry."""
    for name, conv in model.named_modules():
        if isinstance(conv, nn.Conv2d):
            new = nn.Conv2d(
                in_channels,
                conv.out_channels,
                conv.kernel_size,
                conv.stride,
                conv.padding,
                conv.dilation,
                1 if conv.groups == 1 else in_channels,
                conv.bias is not None,
            )
            parent_name, _, attr = name.rpartition(".")
            setattr(model.get_submodule(parent_name), attr, new)
            return
    raise PrunetaxError("this torchvision model has no Conv2d to adapt to `in_channels`.")


def unshare_modules(model: nn.Module) -> fx.GraphModule:
    """fx-trace ``model`` and give every repeated ``call_module`` its own module copy."""
    gm = fx.symbolic_trace(model)
    seen: set[str] = set()
    for node in gm.graph.nodes:
        if node.op != "call_module":
            continue
        target = str(node.target)
        if target in seen:
            module = gm.get_submodule(target)
            if any(True for _ in module.parameters()) or any(True for _ in module.buffers()):
                raise PrunetaxError(f"module {target!r} with weights is called twice; cannot unshare it.")
            k = 1
            while f"{target}_{k}" in seen or _exists(gm, f"{target}_{k}"):
                k += 1
            node.target = f"{target}_{k}"
            gm.add_submodule(node.target, copy.deepcopy(module))
            target = node.target
        seen.add(target)
    gm.recompile()
    return gm


def _exists(root: nn.Module, target: str) -> bool:
    try:
        root.get_submodule(target)
    except AttributeError:
        return False
    return True
