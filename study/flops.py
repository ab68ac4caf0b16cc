"""MACs of a (physically pruned) model with fvcore, the project's pinned counter.

fvcore's "flops" are multiply-adds. prunetax stores MACs of convolutions and linear
layers only (BN, pooling, activations and adds are not counted, whatever fvcore's
version does with them), so this sums fvcore's per-operator counts for those ops.
The analytic counts of :class:`study.masks.MaskedModel` are tested equal to this.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

__all__ = ["fvcore_macs", "COUNTED_OPS"]

COUNTED_OPS = ("conv", "linear", "addmm", "matmul", "bmm", "einsum")


def fvcore_macs(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Conv + linear multiply-adds for one input of shape ``(C, H, W)``."""
    from fvcore.nn import FlopCountAnalysis

    param = next(model.parameters())
    x = torch.zeros(1, *input_shape, device=param.device, dtype=param.dtype)
    was_training = model.training
    model.eval()
    logging.getLogger("fvcore").setLevel(logging.ERROR)
    try:
        analysis = FlopCountAnalysis(model, x)
        analysis.unsupported_ops_warnings(False)
        analysis.uncalled_modules_warnings(False)
        by_op = analysis.by_operator()
    finally:
        model.train(was_training)
    return int(sum(v for k, v in by_op.items() if k in COUNTED_OPS))
