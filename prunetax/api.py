"""The Python API: score, prune and export any ``nn.Module`` with the study's own engine.

A thin facade over ``taxonomy`` and ``study``: :func:`score` is ``prunetax scores`` for a
model in memory, :func:`prune` runs a registered protocol and returns the very rows the
store would hold, and :func:`export_pruned` cuts the pruned channels out for real.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import pandas as pd
import torch
from torch import Tensor, nn

from study.evaluation import evaluate
from study.groups import ChannelGroups, build_groups
from study.masks import MaskedModel
from study.protocols import Protocol, make_protocol
from study.scoring import score_rows
from study.trajectory import Setup
from study.trial import headline
from taxonomy.equivalence import Context
from taxonomy.errors import PrunetaxError
from taxonomy.spec import SignalSpec, parse

__all__ = ["score", "prune", "export_pruned", "PruneResult", "Exported", "as_batches"]

Data = Tensor | tuple[Tensor, Tensor] | Iterable[tuple[Tensor, Tensor]]


def as_batches(data: Data, limit: int | None = None) -> list[tuple[Tensor, Tensor]]:
    """``(x, y)`` batches from a DataLoader, any iterable of pairs, or one ``(x, y)`` pair.

    ``limit`` keeps the first batches only (a DataLoader can be long).
    """
    if isinstance(data, tuple) and len(data) == 2 and isinstance(data[0], Tensor):
        batches = [data]
    else:
        batches = []
        for item in data:
            if not (isinstance(item, list | tuple) and len(item) >= 2 and isinstance(item[0], Tensor)):
                raise PrunetaxError(
                    "data must be (inputs, labels) tensors, or a DataLoader / iterable of such pairs; "
                    f"got an item of type {type(item).__name__}."
                )
            batches.append((item[0], torch.as_tensor(item[1]).long()))
            if limit is not None and len(batches) == limit:
                break
    if not batches or not all(x.dim() == 4 and len(x) == len(y) for x, y in batches):
        raise PrunetaxError("data must hold at least one batch of images [N, C, H, W] with N labels.")
    return batches


def _specs(signals: str | SignalSpec | Sequence[str | SignalSpec], context) -> list[SignalSpec]:  # noqa: ANN001
    """Ids, aliases, specs and groups (``distinct`` in the network's context), in order."""
    from study.sweep.signals import GROUPS

    items = [signals] if isinstance(signals, str | SignalSpec) else list(signals)
    out: list[SignalSpec] = []
    for item in items:
        group = item.strip().lower() if isinstance(item, str) else None
        out += list(GROUPS[group](context)) if group in GROUPS else [parse(item)]
    if not out:
        raise PrunetaxError("no signals: pass ids, aliases, random/oracle or a group such as `aliases`.")
    return out


def _groups(model: nn.Module, batches: list[tuple[Tensor, Tensor]]) -> ChannelGroups:
    model.eval()
    return build_groups(model, tuple(batches[0][0].shape[1:]))


def score(
    model: nn.Module,
    data: Data,
    signals: str | SignalSpec | Sequence[str | SignalSpec] = "aliases",
    *,
    tap: str = "output",
    level: str = "channel",
    aggregation: str = "pooled",
    seed: int = 0,
) -> pd.DataFrame:
    """Scores of ``signals`` for every conv channel (or every coupled unit) of ``model``.

    Parameters
    ----------
    model
        Any torch.fx-traceable CNN (put it in eval mode; BN uses its running statistics).
    data
        The saliency batches: ``(x, y)``, a DataLoader or any iterable of pairs (the paper
        uses 2 x 128 held-out images).
    signals
        Ids, aliases (``taylor_fo``), ``random``/``oracle``, groups (``aliases``,
        ``distinct``, ``all``) or :class:`~taxonomy.spec.SignalSpec` objects.
    tap, level, aggregation
        Where activations are read (``output`` | ``conv``); ``channel`` or ``unit`` rows;
        how a coupled unit is scored at unit level (``pooled`` by default).

    Returns
    -------
    DataFrame
        One row per signal and channel (unit): ``signal``, ``layer``, ``channel``, ``unit``,
        ``score``; lower scores are pruned first.
    """
    batches = as_batches(data)
    groups = _groups(model, batches)
    specs = _specs(signals, Context(groups.coupled, aggregation))
    rows = score_rows(model, groups, batches, specs, seed=seed, tap=tap, level=level, aggregation=aggregation)
    return pd.DataFrame(rows, columns=["signal", "layer", "channel", "unit", "score"])


@dataclass
class Exported:
    """A physically smaller model and what it costs (``parameters`` counts every tensor
    element, biases included; ``weights`` the conv and linear weights; ``macs`` fvcore's
    multiply-adds per image)."""

    model: nn.Module
    parameters: int
    weights: int
    macs: int


def export_pruned(
    model: nn.Module, active: Tensor | None = None, input_shape: tuple[int, ...] | None = None
) -> Exported:
    """``model`` with the units marked False in ``active`` removed for real (the original is
    untouched); it computes exactly what the masked model computes. A :class:`PruneResult`
    (what :func:`prune` returns) exports its final network: ``export_pruned(result)``."""
    from study.flops import fvcore_macs
    from study.physical import physically_pruned

    if isinstance(model, PruneResult):
        return model.export()
    if active is None or input_shape is None:
        raise PrunetaxError(
            "export_pruned(model, active, input_shape) needs the units to keep (a bool vector, e.g. "
            "`result.active_at(step)`) and the input shape; or pass what prune() returned: "
            "export_pruned(result), or result.export(step)."
        )

    groups = build_groups(model, tuple(input_shape))
    active = torch.as_tensor(active, dtype=torch.bool)
    if active.shape != (groups.n_units,):
        raise PrunetaxError(
            f"`active` must be a bool vector of the {groups.n_units} units; got {tuple(active.shape)}."
        )
    masked = MaskedModel(copy.deepcopy(model), groups)
    masked.active = active.clone()
    masked.apply()
    small = physically_pruned(masked).eval()
    weights = sum(m.weight.numel() for m in small.modules() if isinstance(m, nn.Conv2d | nn.Linear))
    params = sum(p.numel() for p in small.parameters())
    return Exported(small, params, weights, fvcore_macs(small, tuple(input_shape)))


@dataclass
class PruneResult:
    """One trajectory: its ``steps`` (the rows the store holds), ``headline`` metrics, and
    the network at any step (:meth:`active_at`, :meth:`masked`, :meth:`export`)."""

    signal: str
    steps: pd.DataFrame
    headline: dict[str, object]
    reference_acc: float
    stop_reason: str
    model: nn.Module = field(repr=False)
    groups: ChannelGroups = field(repr=False)

    def _step(self, step: int | None, sparsity: float | None) -> int:
        if sparsity is not None:
            ok = self.steps[self.steps["sparsity"] <= sparsity + 1e-9]
            return int(ok["step"].max())
        return int(self.steps["step"].max()) if step is None else int(step)

    def active_at(self, step: int | None = None, *, sparsity: float | None = None) -> Tensor:
        """Active units after ``step`` (default: the last), or at the largest sparsity <= ``sparsity``."""
        last = self._step(step, sparsity)
        names = {n: u for u, n in enumerate(self.groups.unit_names())}
        active = torch.ones(self.groups.n_units, dtype=torch.bool)
        for pruned in self.steps.loc[self.steps["step"] <= last, "pruned"]:
            for name in filter(None, str(pruned).split(";")):
                active[names[name]] = False
        return active

    def masked(self, step: int | None = None, *, sparsity: float | None = None) -> nn.Module:
        """A copy of the model with the pruned units zeroed (same shapes)."""
        masked = MaskedModel(copy.deepcopy(self.model), self.groups)
        masked.active = self.active_at(step, sparsity=sparsity)
        masked.apply()
        return masked.model.eval()

    def export(self, step: int | None = None, *, sparsity: float | None = None) -> Exported:
        """The physically smaller model at that step, with its parameter and MAC counts."""
        return export_pruned(self.model, self.active_at(step, sparsity=sparsity), self.groups.input_shape)


def prune(
    model: nn.Module,
    data: Data,
    signal: str | SignalSpec | Sequence[str | SignalSpec] = "best_gradient",
    protocol: str | Protocol = "sensitivity",
    *,
    test: Data | None = None,
    train: Data | None = None,
    seed: int = 0,
    **params: object,
) -> PruneResult | list[PruneResult]:
    """Prune ``model`` with one signal (or several, in lockstep) under a registered protocol.

    ``data`` are the saliency batches, ``test`` the data that measures accuracy (default:
    ``data`` itself - an optimistic choice; pass held-out data for a study), ``train`` the
    retraining data of ``retrain``/``characterise``. ``params`` are the protocol's
    parameters (``target_sparsity=50``, ``stop_drop=10``, ``channels_per_step=2``, ...; see
    ``prunetax run --help``). The model is left as it was. Returns one :class:`PruneResult`
    per signal (a single one for a single signal); their ``steps`` are the store's rows.
    """
    proto = protocol if isinstance(protocol, Protocol) else make_protocol(protocol, **params)
    if isinstance(protocol, Protocol) and params:
        proto = protocol.replace(**params)
    batches = as_batches(data)
    test_x, test_y = _stacked(as_batches(test) if test is not None else batches)
    train_xy = _stacked(as_batches(train)) if train is not None else (test_x[:0], test_y[:0])
    model.eval()
    groups = _groups(model, batches)
    reference = 100.0 * evaluate(model, test_x, test_y)[0]
    setup = Setup(model, groups, batches, (test_x, test_y), train_xy, reference, seed)
    specs = _specs(signal, Context(groups.coupled, proto.aggregation))
    results = proto.run(setup, specs)
    out = [_result(r, reference, model, groups) for r in results]
    single = isinstance(signal, str | SignalSpec) and len(out) == 1
    return out[0] if single else out


def _stacked(batches: list[tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor]:
    return torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])


def _result(r, reference: float, model: nn.Module, groups: ChannelGroups) -> PruneResult:  # noqa: ANN001
    if r.error is not None:
        raise PrunetaxError(f"signal {r.signal.id} failed: {r.error}")
    steps = pd.DataFrame(r.rows)
    head = headline(r.rows, reference)
    return PruneResult(r.signal.id, steps, head, reference, r.stop_reason, model, groups)
