"""What was run: protocol variants, the unit-score aggregation and the test set's noise.

Trials of one protocol can differ in parameters that change the experiment (how a
coupled unit is scored, where activations are tapped, how many units go per step, ...).
Ranking such trials together would mix experiments, so every trial gets a *protocol
label*: the protocol's name plus one suffix per variant parameter that differs from its
default, e.g. ``sensitivity``, ``sensitivity [aggregation=sum]`` or
``sensitivity [coarse (8 units per step)]``. :data:`VARIANTS` is the one list of those
parameters and their defaults. Stopping rules and the evaluation interval
(``stop_acc``, ``target_sparsity``, ``test_interval``) are not variants: they decide
where a curve ends or how often it is sampled, not which units are pruned.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache

import numpy as np
import pandas as pd

__all__ = [
    "Variant",
    "VARIANTS",
    "DEFAULT_AGGREGATION",
    "AGGREGATION_TEXT",
    "PAPER_PROTOCOL",
    "protocol_labels",
    "is_default_label",
    "label_order",
    "aggregations",
    "accuracy_noise",
]

PAPER_PROTOCOL = "sensitivity"
"""The paper's greedy protocol (one unit per step, no retraining): it leads every report."""

DEFAULT_AGGREGATION = "pooled"
AGGREGATION_TEXT = {
    "pooled": "a coupled unit is scored as one channel whose element set is the union of its "
    "members' elements",
    "sum": "a coupled unit's score is the sum of its member channels' scores",
    "mean": "a coupled unit's score is the mean of its member channels' scores",
    "max": "a coupled unit's score is the largest of its member channels' scores",
}
"""How each aggregation forms a coupled unit's score (the report states the one used)."""

_RETRAINING = frozenset({"retrain", "characterise"})


@dataclass(frozen=True)
class Variant:
    """A protocol parameter that changes the experiment, its default and where it applies."""

    key: str
    default: object
    protocols: frozenset[str] | None = None  # None: every protocol

    def applies(self, protocol: str) -> bool:
        return self.protocols is None or protocol in self.protocols


VARIANTS: tuple[Variant, ...] = (
    Variant("aggregation", DEFAULT_AGGREGATION),
    Variant("tap", "output"),
    Variant("mean_replacement", False),
    Variant("eval_batches", 2),
    Variant("eval_batch_size", 128),
    Variant("retrain_steps", None, _RETRAINING),
    Variant("retrain_lr", 1e-3, _RETRAINING),
    Variant("retrain_momentum", 0.9, _RETRAINING),
    Variant("retrain_weight_decay", None, _RETRAINING),
    Variant("retrain_batch_size", 64, _RETRAINING),
    Variant("n_masks", 100, frozenset({"best_of_n"})),
    Variant("k", 5, frozenset({"myopic"})),
    Variant("candidates_from", [], frozenset({"myopic"})),
    Variant("beta", 0.1, frozenset({"fisher_cost"})),  # study.protocols.fisher_cost.DEFAULT_BETA
)
"""Every variant parameter with its default; a missing key (an older store) is the default.
The step size is a variant too, read from ``units_per_step`` (see :func:`protocol_labels`)."""

_COLUMNS = ("protocol", "protocol_json", "aggregation", "tap", "units_per_step", "initial_units")


@cache
def _params(text: str) -> Mapping[str, object]:
    try:
        value = json.loads(text) if text else {}
    except (TypeError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _value(row: Mapping[str, object], params: Mapping[str, object], key: str) -> object:
    """A variant's value: the trials column when set, else protocol_json, else missing."""
    column = row.get(key)
    if column is not None and not (isinstance(column, float) and np.isnan(column)):
        return column
    if key == "aggregation" and "aggregation" not in params and "group_reduction" in params:
        return params["group_reduction"]  # the pre-pooled stores called it group_reduction
    return params.get(key)


def _same(value: object, default: object) -> bool:
    if value is None:
        return True
    if isinstance(default, float) and isinstance(value, (int, float)):
        return bool(np.isclose(float(value), default))
    return value == default


def _suffixes(row: Mapping[str, object], params: Mapping[str, object]) -> tuple[str, ...]:
    out = []
    for v in VARIANTS:
        value = _value(row, params, v.key)
        if not v.applies(str(row["protocol"])) or _same(value, v.default):
            continue
        out.append(v.key.replace("_", " ") if value is True else f"{v.key}={value}")
    return tuple(out)


def _units(row: Mapping[str, object], params: Mapping[str, object]) -> tuple[object, float]:
    """(step identity, units per step) of one trial: the column when set, else derived from
    ``channels_per_step`` (a count, or a fraction of the initial units) as the engine does."""
    units, cps = row.get("units_per_step"), params.get("channels_per_step")
    if units is not None and np.isfinite(float(units)):
        return (cps if cps is not None else float(units)), float(units)
    if cps is None:
        return 1.0, 1.0
    cps = float(cps)
    if cps >= 1:
        return cps, cps
    initial = row.get("initial_units")
    if initial is None or not np.isfinite(float(initial)):
        return cps, np.nan
    return cps, float(max(1, round(cps * float(initial))))


def _coarse(step_key: object, units: pd.Series) -> str:
    finite = units.dropna()
    if finite.empty:
        return f"coarse ({100 * float(step_key):g} % of units per step)"
    lo, hi = int(finite.min()), int(finite.max())
    if hi <= 1:
        return ""
    k = f"{lo}" if lo == hi else f"{lo}–{hi}"
    return f"coarse ({k} units per step)"


def protocol_labels(trials: pd.DataFrame) -> pd.Series:
    """The protocol label of every trial (index of ``trials``).

    The label is the protocol's name, then, in brackets, each :data:`VARIANTS` parameter
    that differs from its default and, for a greedy run that prunes more than one unit per
    step, ``coarse (k units per step)`` (``k`` a range when a fractional step gives
    different counts on different networks). Missing columns or keys count as defaults,
    so any frame with a ``protocol`` column works.
    """
    if "protocol" not in trials:
        return pd.Series("all", index=trials.index, dtype=object)
    present = [c for c in _COLUMNS if c in trials]
    values = trials[present].astype(object).where(trials[present].notna(), None)
    codes, unique = pd.factorize(pd.Series(list(values.itertuples(index=False, name=None)), dtype=object))
    keys, units = [], []
    for row in (dict(zip(present, u, strict=True)) for u in unique):  # each distinct combination once
        params = _params(str(row.get("protocol_json") or ""))
        step_key, k = _units(row, params)
        greedy = row["protocol"] != "oneshot"
        keys.append((str(row["protocol"]), _suffixes(row, params), step_key if greedy else 1.0))
        units.append(k if greedy else 1.0)
    per_key: dict[tuple, list[float]] = {}
    for key, k in zip(keys, units, strict=True):
        per_key.setdefault(key, []).append(k)
    labels = {}
    for key, counts in per_key.items():
        name, suffixes, step_key = key
        extra = _coarse(step_key, pd.Series(counts, dtype=float))
        parts = [*suffixes, extra] if extra else list(suffixes)
        labels[key] = f"{name} [{'; '.join(parts)}]" if parts else name
    return pd.Series(np.array([labels[k] for k in keys], dtype=object)[codes], index=trials.index)


def is_default_label(label: str) -> bool:
    """Whether a protocol label is its protocol's default variant (no bracketed suffix)."""
    return "[" not in str(label)


def label_order(frame: pd.DataFrame, label: str = "protocol_label") -> list[str]:
    """The labels of ``frame`` in report order: the paper's protocol (default variant) first,
    then the other default variants, then the rest; ties by signals, tasks (more first), name."""

    def key(item: tuple[str, pd.DataFrame]) -> tuple:
        name, part = item
        default = is_default_label(name)
        paper = default and str(name) == PAPER_PROTOCOL
        tasks = part["task"].nunique() if "task" in part else 0
        return (not paper, not default, -part["signal"].nunique(), -tasks, str(name))

    return [str(n) for n, _ in sorted(frame.groupby(label, sort=True, observed=True), key=key)]


def aggregations(trials: pd.DataFrame) -> pd.Series:
    """The unit-score aggregation of every trial (column, else protocol_json, else default)."""
    out = []
    cols = [c for c in ("aggregation", "protocol_json") if c in trials]
    for row in trials[cols].astype(object).where(trials[cols].notna(), None).to_dict("records"):
        value = _value(row, _params(str(row.get("protocol_json") or "")), "aggregation")
        out.append(str(value) if value is not None else DEFAULT_AGGREGATION)
    return pd.Series(out, index=trials.index, dtype=object)


def accuracy_noise(trials: pd.DataFrame) -> pd.DataFrame:
    """Binomial standard error of test accuracy at the reference, per network.

    ``SE = 100 sqrt(p (1 - p) / n_test)`` points, with ``p`` the mean reference accuracy
    over the network's base models and ``n_test`` the test-set size (the median when seeds
    differ; NaN when the store does not record it). Accuracy differences below SE are
    within the noise of one test set.

    Returns
    -------
    DataFrame
        ``model``, ``dataset``, ``reference_acc`` (mean, %), ``n_test`` and ``se`` (points).
    """
    data = trials.assign(n_test=pd.to_numeric(trials.get("n_test", np.nan), errors="coerce"))
    grouped = data.groupby(["model", "dataset"], sort=True, observed=True)
    out = grouped.agg(
        reference_acc=("reference_acc", "mean"),
        n_test=("n_test", "median"),
    ).reset_index()
    p = out["reference_acc"].to_numpy(dtype=float) / 100.0
    with np.errstate(invalid="ignore", divide="ignore"):
        out["se"] = 100.0 * np.sqrt(p * (1 - p) / out["n_test"].to_numpy(dtype=float))
    return out
