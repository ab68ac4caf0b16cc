"""Scores of many signals on a network, per channel or per unit (``prunetax scores``, the API).

The output lets anyone cross-check prunetax's numbers with independent code: every
channel's (or unit's) score for every requested signal, with the seed and the exact eval
examples used (and, optionally, the eval tensors themselves).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from study.base_model import Base
from study.groups import ChannelGroups, build_groups
from study.keys import stable_key
from study.saliency import PAPER_SALIENCY, SaliencyData
from study.unit_scores import Workspace, unit_scores
from taxonomy.bank import score
from taxonomy.spec import SignalSpec, parse
from taxonomy.statistics import Needs

__all__ = ["channel_scores", "score_rows", "LEVELS"]

LEVELS = ("channel", "unit")
Batches = Sequence[tuple[Tensor, Tensor]]


def score_rows(
    model: nn.Module,
    groups: ChannelGroups,
    batches: Batches,
    signals: Sequence[SignalSpec | str],
    *,
    seed: int = 0,
    tap: str = "output",
    level: str = "channel",
    aggregation: str = "pooled",
) -> list[dict]:
    """One row per (signal, channel) - or per (signal, unit) with ``level="unit"`` - with
    ``signal``, ``layer``, ``channel``, ``unit`` and ``score`` (lower = pruned first).

    At ``channel`` level taxonomy signals are scored per conv channel and ``oracle``/``random``
    per unit, each member channel carrying its unit's score; at ``unit`` level every signal
    scores the units as the protocols rank them (``aggregation``), named by their root conv
    channel. The model's weights are left as they were.
    """
    from taxonomy.errors import invalid

    if level not in LEVELS:
        raise invalid("level", level, LEVELS)
    specs = [parse(s) for s in signals]
    ws = Workspace(model, groups, tap)
    try:
        if level == "unit":
            rngs = [torch.Generator().manual_seed(seed) for _ in specs]
            units, errors = unit_scores(ws, specs, batches, aggregation, rngs)
            _raise_first(errors)
            return _unit_rows(groups, specs, units)
        return _channel_rows(ws, groups, batches, specs, seed)
    finally:
        ws.restore()


def _raise_first(errors: dict[int, Exception]) -> None:
    if errors:
        raise next(iter(errors.values()))


def _channel_rows(
    ws: Workspace, groups: ChannelGroups, batches: Batches, specs: list, seed: int
) -> list[dict]:
    names = [(layer.name, c) for layer in groups.layers for c in range(layer.channels)]
    members = groups.members.tolist()
    rows = []
    taxonomy = [s for s in specs if not s.is_reference]
    if taxonomy:
        stats = ws.collector.collect(batches, Needs.of(taxonomy))
        for s, values in zip(taxonomy, score(taxonomy, stats).double().cpu(), strict=True):
            rows += _rows(s.id, names, members, values.tolist())
    references = [s for s in specs if s.is_reference]
    if references:
        rngs = [torch.Generator().manual_seed(seed) for _ in references]
        units, errors = unit_scores(ws, references, batches, rngs=rngs)
        _raise_first(errors)
        for s, values in zip(references, units, strict=True):
            rows += _rows(s.id, names, members, values[groups.members].tolist())
    return rows


def _unit_rows(groups: ChannelGroups, specs: list, units: Tensor) -> list[dict]:
    roots = [groups.group_roots[int(g)] for g in groups.unit_group]
    within = torch.cat([torch.arange(n) for n in groups.group_sizes]).tolist()
    names = list(zip(roots, within, strict=True))
    every = list(range(groups.n_units))
    return [
        row
        for s, values in zip(specs, units, strict=True)
        for row in _rows(s.id, names, every, values.tolist())
    ]


def _rows(signal: str, names: list[tuple[str, int]], units: list[int], values: list[float]) -> list[dict]:
    return [
        {"signal": signal, "layer": layer, "channel": c, "unit": u, "score": v}
        for (layer, c), u, v in zip(names, units, values, strict=True)
    ]


def channel_scores(
    base: Base, signals: Sequence[SignalSpec | str], *, seed: int = 0, saliency: SaliencyData = PAPER_SALIENCY
) -> tuple[list[dict], dict]:
    """Rows of the store's ``scores`` table for a trained base model, and the eval inputs used."""
    splits, tap = base.splits, saliency.tap
    groups = build_groups(base.model, tuple(splits.train.x.shape[1:]))
    batches, examples = saliency.draw(splits.eval.x, splits.eval.y, splits.indices["eval"], seed)
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
    rows = [{**common, **row} for row in score_rows(base.model, groups, batches, signals, seed=seed, tap=tap)]
    x, y = torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])
    inputs = {"x": x.cpu(), "y": y.cpu(), "eval_indices": examples, "seed": seed, "tap": tap}
    return rows, {**inputs, "dataset": ckpt.dataset, "model": ckpt.arch}
