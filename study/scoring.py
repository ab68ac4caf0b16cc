"""Scores of many signals on an unpruned network, channel by channel (``prunetax scores``).

The output lets anyone cross-check prunetax's numbers with independent code: every
channel's score for every requested signal, with the seed and the exact eval examples
used (and, optionally, the eval tensors themselves).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from study.base_model import Base
from study.groups import build_groups
from study.keys import stable_key
from study.saliency import PAPER_SALIENCY, SaliencyData
from study.unit_scores import Workspace, unit_scores
from taxonomy.bank import score
from taxonomy.spec import SignalSpec, parse
from taxonomy.statistics import Needs

__all__ = ["channel_scores"]


def channel_scores(
    base: Base, signals: Sequence[SignalSpec | str], *, seed: int = 0, saliency: SaliencyData = PAPER_SALIENCY
) -> tuple[list[dict], dict]:
    """Rows of the ``scores`` table and the eval inputs used.

    Taxonomy signals are scored per conv channel; ``oracle`` and ``random`` score units,
    and each member channel of a unit carries its unit's score.
    """
    signals = [parse(s) for s in signals]
    splits, tap = base.splits, saliency.tap
    groups = build_groups(base.model, tuple(splits.train.x.shape[1:]))
    batches, examples = saliency.draw(splits.eval.x, splits.eval.y, splits.indices["eval"], seed)
    x, y = torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])
    ws = Workspace(base.model, groups, tap)
    ckpt = base.checkpoint
    common = {
        "run_key": stable_key(
            {"checkpoint": ckpt.config_hash, "seed": seed, "tap": tap, "examples": examples}
        ),
        "model": ckpt.arch,
        "dataset": ckpt.dataset,
        "base_seed": ckpt.seed,
        "seed": seed,
        "tap": tap,
        "level": "channel",
    }
    layer_names = [(layer.name, c) for layer in groups.layers for c in range(layer.channels)]
    members = groups.members.tolist()
    taxonomy = [s for s in signals if not s.is_reference]
    rows = []
    if taxonomy:
        stats = ws.collector.collect(batches, Needs.of(taxonomy))
        matrix = score(taxonomy, stats).double().cpu()
        for s, values in zip(taxonomy, matrix, strict=True):
            rows += _rows(common, s.id, layer_names, members, values.tolist())
    references = [s for s in signals if s.is_reference]
    if references:
        rngs = [torch.Generator().manual_seed(seed) for _ in references]
        units, errors = unit_scores(ws, references, batches, rngs=rngs)
        if errors:
            raise next(iter(errors.values()))
        for s, values in zip(references, units, strict=True):
            rows += _rows(common, s.id, layer_names, members, values[groups.members].tolist())
    inputs = {"x": x.cpu(), "y": y.cpu(), "eval_indices": examples, "seed": seed, "tap": tap}
    return rows, {**inputs, "dataset": ckpt.dataset, "model": ckpt.arch}


def _rows(
    common: dict, signal: str, names: list[tuple[str, int]], members: list[int], values: list[float]
) -> list[dict]:
    return [
        {**common, "signal": signal, "layer": layer, "channel": c, "unit": u, "score": v}
        for (layer, c), u, v in zip(names, members, values, strict=True)
    ]
