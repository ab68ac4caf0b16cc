"""The Levenberg-Marquardt (OBD) diagonal second-derivative pass (SPEC §2.2).

h_LM drops off-diagonal terms and second derivatives of nonlinearities, so each op
back-propagates ``h_in = (J o J)^T h_out``: the backward with every Jacobian entry
squared. That map is linear in ``h``, so it is computed with autograd on a *shadow*
network whose every op is the Jacobian-squared version of the real one, evaluated at
the real forward values: conv/linear with squared weights and no bias, BN (eval) times
(gamma/sigma)^2, nonlinearities times f'(x)^2 (ReLU: 1[x>0]), max-pool routed to the
argmax, average pools with the exact square chain (1/k^4 per element, not Caffe's
1/k^2), residual adds and concats as in the backward. At the logits
``h = p (1 - p)`` per example (softmax cross-entropy). Zero "eps" tensors added at the
tap nodes expose ``h`` there as their gradient. Ops outside this list raise an error
naming the op rather than guessing.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, fx, nn

from study.graph import ACTIVATION_FUNCTIONS, ACTIVATIONS, Tapped, _Record, _Tap
from taxonomy.errors import PrunetaxError

__all__ = ["lm_second_derivatives"]

_Pair = tuple[object, object]  # (real value, shadow value or None)


def _derivative_sq(fn: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    """f'(x)^2 of an element-wise function, by autograd (``fn`` may work in place)."""
    with torch.enable_grad():
        xr = x.detach().requires_grad_(True)
        (d,) = torch.autograd.grad(fn(xr.clone()).sum(), xr)
    return d.square()


def _in_place(gm: fx.GraphModule, node: fx.Node, kwargs: dict) -> bool:
    """True for an op that writes its input (``ReLU(inplace=True)``, ``F.relu(x, inplace=True)``)."""
    if node.op == "call_module":
        return bool(getattr(gm.get_submodule(node.target), "inplace", False))
    return bool(kwargs.get("inplace", False))


def _adaptive_counts(in_size: int, out_size: int) -> Tensor:
    o = torch.arange(out_size)
    start = torch.div(o * in_size, out_size, rounding_mode="floor")
    end = torch.div((o + 1) * in_size + out_size - 1, out_size, rounding_mode="floor")
    return (end - start).double()


def _adaptive_avg_shadow(x: Tensor, s: Tensor, output_size: object) -> Tensor:
    out = F.adaptive_avg_pool2d(s, output_size)
    ho, wo = out.shape[-2:]
    n = _adaptive_counts(x.shape[-2], ho)[:, None] * _adaptive_counts(x.shape[-1], wo)[None, :]
    return out / n.to(out.dtype)


_AVG_POOL_ARGS = ("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad", "divisor_override")


def _avg_pool_shadow(x: Tensor, s: Tensor, *args: object, **kwargs: object) -> Tensor:
    kw = {**dict(zip(_AVG_POOL_ARGS, args, strict=False)), **kwargs}
    pooled = F.avg_pool2d(s, **kw)
    ones = torch.ones_like(x[:1, :1])
    avg_ones = F.avg_pool2d(ones, **kw)
    n_real = F.avg_pool2d(ones, **{**kw, "divisor_override": 1})
    return pooled * avg_ones / n_real  # = sum s / d^2 with d the pool's divisor


def _max_pool_shadow(x: Tensor, s: Tensor, *args: object, **kwargs: object) -> Tensor:
    kwargs = {k: v for k, v in kwargs.items() if k != "return_indices"}
    out, idx = F.max_pool2d(x, *args, return_indices=True, **kwargs)
    return s.flatten(2).gather(2, idx.flatten(2)).view_as(out)


def _module_shadow(mod: nn.Module, x: Tensor, s: Tensor) -> Tensor:
    if isinstance(mod, nn.Conv2d):
        if mod.padding_mode != "zeros":
            raise PrunetaxError(f"LM pass: conv padding_mode {mod.padding_mode!r} is not supported.")
        return F.conv2d(s, mod.weight.square(), None, mod.stride, mod.padding, mod.dilation, mod.groups)
    if isinstance(mod, nn.Linear):
        return F.linear(s, mod.weight.square())
    if isinstance(mod, nn.BatchNorm2d | nn.BatchNorm1d):
        if mod.training or mod.running_var is None:
            raise PrunetaxError("LM pass: BatchNorm must be in eval mode with running statistics.")
        scale = mod.running_var.add(mod.eps).rsqrt()
        if mod.weight is not None:
            scale = scale * mod.weight
        shape = (1, -1) + (1,) * (s.dim() - 2)
        return s * scale.square().view(shape)
    if isinstance(mod, ACTIVATIONS):
        return s * _derivative_sq(mod, x)
    if isinstance(mod, nn.MaxPool2d):
        return _max_pool_shadow(
            x, s, mod.kernel_size, mod.stride, mod.padding, mod.dilation, ceil_mode=mod.ceil_mode
        )
    if isinstance(mod, nn.AvgPool2d):
        return _avg_pool_shadow(
            x,
            s,
            mod.kernel_size,
            mod.stride,
            mod.padding,
            mod.ceil_mode,
            mod.count_include_pad,
            mod.divisor_override,
        )
    if isinstance(mod, nn.AdaptiveAvgPool2d):
        return _adaptive_avg_shadow(x, s, mod.output_size)
    if isinstance(mod, nn.Dropout | nn.Identity | _Record):
        return s
    if isinstance(mod, nn.Flatten):
        return mod(s)
    raise PrunetaxError(
        f"LM pass: module type {type(mod).__name__} is not supported; supported: conv, "
        "linear, BN, element-wise activations, max/avg pools, dropout, flatten."
    )


_MOVE_METHODS = {
    "view",
    "reshape",
    "flatten",
    "squeeze",
    "unsqueeze",
    "permute",
    "contiguous",
    "transpose",
    "expand",
    "__getitem__",
}
_MOVE_FUNCTIONS = {
    torch.flatten,
    torch.reshape,
    torch.squeeze,
    torch.unsqueeze,
    operator.getitem,
    torch.permute,
    torch.transpose,
}


def _is_tensor(v: object) -> bool:
    return isinstance(v, Tensor)


def _shadow_args(args: tuple, pairs: dict[fx.Node, _Pair], which: int) -> tuple:
    return fx.node.map_arg(args, lambda n: pairs[n][which])


def _function_shadow(node: fx.Node, real_args: tuple, sh_args: tuple, kwargs: dict) -> object:
    target = node.target
    name = target if isinstance(target, str) else getattr(target, "__name__", str(target))
    tensors = [(r, s) for r, s in zip(real_args, sh_args, strict=True) if _is_tensor(r)]
    if (node.op == "call_method" and target in _MOVE_METHODS) or target in _MOVE_FUNCTIONS:
        fn = getattr(sh_args[0], target) if node.op == "call_method" else target
        rest = real_args[1:]
        return fn(*rest, **kwargs) if node.op == "call_method" else fn(sh_args[0], *rest, **kwargs)
    if target in (operator.add, operator.iadd, torch.add, operator.sub, operator.isub, torch.sub):
        shadows = [s for _, s in tensors if s is not None]
        return sum(shadows[1:], shadows[0]) if shadows else None
    if target in (operator.mul, torch.mul, operator.truediv) and len(tensors) == 1:
        const = real_args[1] if _is_tensor(real_args[0]) else real_args[0]
        if target is operator.truediv:
            const = 1.0 / const
        return tensors[0][1] * (const**2)
    if target is torch.cat:
        return torch.cat(list(sh_args[0]), *real_args[1:], **kwargs)
    if target in ACTIVATION_FUNCTIONS:
        return sh_args[0] * _derivative_sq(lambda t: target(t, *real_args[1:], **kwargs), real_args[0])
    if target is F.adaptive_avg_pool2d:
        return _adaptive_avg_shadow(real_args[0], sh_args[0], real_args[1])
    if target is F.avg_pool2d:
        return _avg_pool_shadow(real_args[0], sh_args[0], *real_args[1:], **kwargs)
    if target is F.max_pool2d:
        return _max_pool_shadow(real_args[0], sh_args[0], *real_args[1:], **kwargs)
    if target in ("mean", torch.mean):
        x = real_args[0]
        dims = real_args[1] if len(real_args) > 1 else kwargs.get("dim")
        dims = [dims] if isinstance(dims, int) else list(dims)
        n = math.prod(x.shape[d] for d in dims)
        return sh_args[0].mean(*real_args[1:], **kwargs) / n
    if target is F.dropout:
        return sh_args[0]
    raise PrunetaxError(f"LM pass: operation {name!r} (node {node.name}) is not supported.")


def lm_second_derivatives(tapped: Tapped, x: Tensor) -> dict[str, Tensor]:
    """Per-example LM diagonal ``h`` at every tap node of ``tapped`` for inputs ``x``.

    Returns a dict fx-node-name -> tensor shaped like the tapped value.
    """
    gm = tapped.module
    pairs: dict[fx.Node, _Pair] = {}
    eps: dict[str, Tensor] = {}
    last_use: dict[fx.Node, fx.Node] = {}
    for node in gm.graph.nodes:
        for arg in node.all_input_nodes:
            last_use[arg] = node
    tap_of = {id(tap): name for name, tap in tapped.taps.items()}
    logits = None
    for node in gm.graph.nodes:
        if node.op == "placeholder":
            pairs[node] = (x, torch.zeros_like(x))
        elif node.op == "get_attr":
            pairs[node] = (getattr(gm, node.target), None)
        elif node.op == "output":
            logits = pairs[node.args[0]]
        else:
            real_args = _shadow_args(node.args, pairs, 0)
            sh_args = _shadow_args(node.args, pairs, 1)
            kwargs = fx.node.map_arg(node.kwargs, lambda n: pairs[n][0])
            if _in_place(gm, node, kwargs):  # it would overwrite a value others still read
                real_args = (real_args[0].clone(), *real_args[1:])
            with torch.no_grad():
                if node.op == "call_module":
                    mod = gm.get_submodule(node.target)
                    real = real_args[0] if isinstance(mod, _Tap | _Record) else mod(*real_args, **kwargs)
                elif node.op == "call_method":
                    real = getattr(real_args[0], node.target)(*real_args[1:], **kwargs)
                else:
                    real = node.target(*real_args, **kwargs)
            if not _is_tensor(real):
                shadow = None
            elif node.op == "call_module" and isinstance(mod, _Tap):
                e = torch.zeros_like(real, requires_grad=True)
                eps[tap_of[id(mod)]] = e
                shadow = sh_args[0] + e
            elif node.op == "call_module":
                shadow = _module_shadow(mod, real_args[0], sh_args[0])
            else:
                shadow = _function_shadow(node, real_args, sh_args, kwargs)
            pairs[node] = (real, shadow)
        for arg in node.all_input_nodes:
            if last_use.get(arg) is node:
                pairs.pop(arg, None)
    real_logits, shadow_logits = logits
    p = real_logits.detach().softmax(dim=1)
    objective = (shadow_logits * (p * (1 - p))).sum()
    names = list(eps)
    grads = torch.autograd.grad(objective, [eps[n] for n in names], allow_unused=True)
    return {n: (g if g is not None else torch.zeros_like(eps[n])) for n, g in zip(names, grads, strict=True)}
