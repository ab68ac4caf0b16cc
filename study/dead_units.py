"""Dead and constant channels of a network before pruning (Evci et al. 2018).

Evci et al. observe that trained networks carry channels that do nothing: *dead* channels,
whose output after the nonlinearity is 0 on (almost) every input, and *constant* ones, whose
output barely varies with the input. Both can go at no cost - a constant channel's output
is its mean, which mean replacement (:mod:`study.mean_replacement`) folds into the
consumers. Here, per conv channel of the unpruned network, on the eval examples:

* ``zero_fraction``: the share of eval inputs on which the channel's whole map at the
  ``output`` tap (after BN and the nonlinearity) is exactly 0;
  ``dead`` = ``zero_fraction >= DEAD_FRACTION`` (0.99);
* ``variance``: the activation variance across the eval inputs, per element of the map,
  averaged over the map (``mean_e Var_n x[n, c, e]``, population variance): the score of
  ``activation-centered-l2-l0`` (alias ``variance``) at the ``output`` tap, up to rounding;
  ``constant`` = ``variance <= CONSTANT_TOLERANCE * layer_variance``, the layer's variance
  being the mean of its channels' (a wholly dead layer is constant throughout).

A channel whose tap has no nonlinearity (NIN's class maps, the Caffe LeNet-5) has no
post-nonlinearity output: its row says so (``nonlinearity`` empty) and it is rarely dead.
Rank-quality jobs write these rows to the store's ``activity`` table (one per channel).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from study.groups import ChannelGroups
from study.masks import MaskedModel

__all__ = ["DEAD_FRACTION", "CONSTANT_TOLERANCE", "TAP", "channel_activity", "activity_rows", "job_activity"]

DEAD_FRACTION = 0.99
"""A channel is dead when its map is all zero on at least this share of the eval inputs."""

CONSTANT_TOLERANCE = 1e-3
"""A channel is constant when its activation variance is at most this times its layer's."""

TAP = "output"
"""Where activity is read: after BN and the nonlinearity, what the next layer consumes."""

Batches = Sequence[tuple[Tensor, Tensor]]


def channel_activity(values: Tensor) -> dict[str, Tensor]:
    """``zero_fraction``, ``variance`` ``[C]`` and the flags of one layer's values ``[N, C, E]``."""
    x = values.double()
    zero_fraction = (x.abs().amax(-1) == 0).double().mean(0)
    variance = x.var(0, unbiased=False).mean(-1) if x.shape[0] > 1 else x.new_zeros(x.shape[1])
    layer_variance = variance.mean()
    return {
        "zero_fraction": zero_fraction,
        "variance": variance,
        "layer_variance": layer_variance.expand_as(variance),
        "dead": zero_fraction >= DEAD_FRACTION,
        "constant": variance <= CONSTANT_TOLERANCE * layer_variance,
    }


def activity_rows(masked: MaskedModel, batches: Batches) -> list[dict]:
    """One row per conv channel of ``masked`` (its current state): the columns of
    :func:`channel_activity`, the channel's ``layer``/``channel``/``unit``, the nonlinearity
    its tap follows, the example count and the thresholds used."""
    from study.collect import Collector
    from taxonomy.components import Input
    from taxonomy.statistics import Needs

    collector = Collector(masked, TAP)
    stats = collector.collect(batches, Needs.from_names({Input.ACTIVATION: {"value"}}))
    groups: ChannelGroups = masked.groups
    rows = []
    for layer, found in zip(groups.layers, stats, strict=True):
        values = found.activation.value
        columns = {k: v.tolist() for k, v in channel_activity(values).items()}
        nonlinearity = _nonlinearity(collector.tapped.module, layer.site.activation)
        for c in range(layer.channels):
            rows.append(
                {
                    "tap": TAP,
                    "layer": layer.name,
                    "channel": c,
                    "unit": int(layer.unit[c]),
                    "nonlinearity": nonlinearity,
                    "n_examples": int(values.shape[0]),
                    **{k: v[c] for k, v in columns.items()},
                    "dead_threshold": DEAD_FRACTION,
                    "constant_tolerance": CONSTANT_TOLERANCE,
                    "step": 0,
                }
            )
    return rows


def _nonlinearity(graph: nn.Module, node: str | None) -> str:
    """The kind of the nonlinearity at a tap (``ReLU``, ``relu``, ...; empty for none)."""
    if node is None:
        return ""
    found = next(n for n in graph.graph.nodes if n.name == node)
    if found.op == "call_module":
        return type(graph.get_submodule(found.target)).__name__
    return getattr(found.target, "__name__", str(found.target))


def job_activity(job, env) -> list[dict]:  # noqa: ANN001 - a study.rankings.RankJob, an Environment
    """The ``activity`` rows of a rank-quality job: its base model, unpruned, on its eval batches."""
    from study.base_model import load_base
    from study.groups import build_groups

    base = load_base(job.model, job.dataset, job.base_seed, env)
    splits = base.splits
    batches, _ = job.saliency.draw(splits.eval.x, splits.eval.y, splits.indices["eval"], job.seed)
    masked = MaskedModel(base.model, build_groups(base.model, tuple(splits.train.x.shape[1:])))
    common = {
        "run_key": job.run_key,
        "model": job.model,
        "dataset": job.dataset,
        "base_seed": job.base_seed,
        "seed": job.seed,
    }
    with torch.no_grad():
        return [{**common, **row} for row in activity_rows(masked, batches)]
