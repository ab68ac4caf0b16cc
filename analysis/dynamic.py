"""Training-time (``cucb``) and per-input (``gated``) selection against static pruning, on the
MAC axis: which methods are compared, their accuracy curves against the MACs executed per
image, accuracy at matched MACs with intervals over seeds, training cost, and the spread of
per-image MACs under gating. Torch-free; :mod:`analysis.report.dynamic_section` lays it out.

A curve is a trial's logged points ``(x, accuracy)`` with ``x = 100 - macs_sparsity`` (the
MACs executed per image, % of the dense network's; under per-input gates the mean over test
images), linearly interpolated between them and undefined outside them: no anchor at the
reference, because a CUCB network's step 0 is its own dense accuracy, not the base model's.
Per seed (``base_seed``, ``seed``), a drawn signal (``random``) takes the median over its
draws; across seeds the mean and a 95 % t-interval (mean ± t(0.975, n-1) s / sqrt(n), clipped
to the [0, 100] an accuracy lies in).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

__all__ = [
    "DYNAMIC_PROTOCOLS",
    "LEVELS",
    "methods",
    "executed_curves",
    "logged_points",
    "curve_bands",
    "matched_macs",
    "training_costs",
    "gate_spread",
]

DYNAMIC_PROTOCOLS = ("cucb", "gated")
LEVELS = (75.0, 50.0, 25.0, 10.0)
"""MACs executed per image (% of dense) at which methods are compared."""
_SEED = ["base_seed", "seed"]
_NAMES = {"cucb": "CUCB", "gated": "gating"}
PERCENTILES = (5, 25, 50, 75, 95)
"""Percentiles of per-image executed MACs a gated row records (``steps.macs_p<p>``)."""


def _params(text: object) -> dict:
    try:
        value = json.loads(str(text)) if text else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _config_names(part: pd.DataFrame) -> pd.Series:
    """A name per trial of one dynamic protocol: the protocol, plus the parameters that differ
    between its configurations (``keep=0.3``), when there are several."""
    params = part["protocol_json"].map(_params)
    keys = sorted({k for p in params for k in p})
    varying = [k for k in keys if len({json.dumps(p.get(k), sort_keys=True) for p in params}) > 1]
    name = _NAMES.get(str(part["protocol"].iloc[0]), str(part["protocol"].iloc[0]))
    if not varying:
        return pd.Series(name, index=part.index)
    return params.map(lambda p: f"{name} [{', '.join(f'{k}={p.get(k)}' for k in varying)}]")


def methods(trials: pd.DataFrame, static_order: Mapping[str, Sequence[str]], top: int = 3) -> pd.DataFrame:
    """The trials each compared method draws on, for one model/dataset.

    Dynamic configurations (``cucb``, and its fine-tuned accuracy, ``gated``); for the first static
    protocol label in ``static_order`` (label -> signals best first) its ``top`` best signals and
    its references, for every other static label its best signal.

    Returns
    -------
    DataFrame
        ``method``, ``kind`` (``dynamic``, ``static``, ``reference``), ``run_key``, ``base_seed``,
        ``seed``, ``draw``, ``column`` (the accuracy column: ``test_acc`` or ``finetune_acc``).
    """
    keep = ["run_key", *_SEED, "draw"]
    parts = []
    for protocol in DYNAMIC_PROTOCOLS:
        dyn = trials[trials["protocol"] == protocol]
        if dyn.empty:
            continue
        names = _config_names(dyn)
        parts.append(dyn[keep].assign(method=names.to_numpy(), kind="dynamic", column="test_acc"))
        if protocol == "cucb":
            tuned = names + " + fine-tune"
            parts.append(dyn[keep].assign(method=tuned.to_numpy(), kind="dynamic", column="finetune_acc"))
    for i, (label, order) in enumerate(static_order.items()):
        static = trials[trials["protocol_label"] == label]
        ran = set(static["signal"])
        best = [s for s in order if s in ran and s not in ("random", "oracle")][: top if i == 0 else 1]
        refs = [s for s in ("random", "oracle") if s in ran] if i == 0 else []
        for signal in [*best, *refs]:
            chosen = static[static["signal"] == signal]
            kind = "reference" if signal in refs else "static"
            name = f"{label}: {_short(signal)}"
            parts.append(chosen[keep].assign(method=name, kind=kind, column="test_acc"))
    if not parts:
        return pd.DataFrame(columns=["method", "kind", *keep, "column"])
    return pd.concat(parts, ignore_index=True)


def _short(signal: str) -> str:
    from analysis.plots import short_label

    return short_label(signal)


def _interp(x: np.ndarray, y: np.ndarray, grid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Linear interpolation through the points (equal x averaged), NaN outside their range, and
    the span of each grid value: the width of the segment it is read from (0 on a point)."""
    ok = np.isfinite(x) & np.isfinite(y)
    if not ok.any():
        return np.full(grid.shape, np.nan), np.full(grid.shape, np.nan)
    frame = pd.DataFrame({"x": x[ok], "y": y[ok]}).groupby("x", sort=True)["y"].mean()
    xs, ys = frame.index.to_numpy(dtype=float), frame.to_numpy(dtype=float)
    out = np.interp(grid, xs, ys)
    right = np.clip(np.searchsorted(xs, grid), 0, len(xs) - 1)
    left = np.clip(np.searchsorted(xs, grid, side="right") - 1, 0, len(xs) - 1)
    span = xs[right] - xs[left]
    outside = (grid < xs[0] - 1e-9) | (grid > xs[-1] + 1e-9)
    out[outside], span[outside] = np.nan, np.nan
    return out, span


def _points(s: pd.DataFrame, column: str) -> tuple[np.ndarray, np.ndarray]:
    """A trial's logged (MACs executed %, accuracy) points; a fine-tuned curve's step 0 (the
    uncut network, nothing to fine-tune) is its ``test_acc``."""
    acc = s[column].astype(float) if column in s else pd.Series(np.nan, index=s.index)
    if column != "test_acc":
        acc = acc.where(s["step"] != 0, s["test_acc"].astype(float))
    return 100.0 - s["macs_sparsity"].to_numpy(dtype=float), acc.to_numpy(dtype=float)


def logged_points(steps: pd.DataFrame, chosen: pd.DataFrame) -> pd.DataFrame:
    """Every logged (``x``, ``acc``) point of the ``chosen`` methods' trials, one row each."""
    by_key = dict(tuple(steps.groupby("run_key", sort=False)))
    rows = []
    for row in chosen.itertuples(index=False):
        if row.run_key in by_key:
            x, acc = _points(by_key[row.run_key], row.column)
            rows.append(pd.DataFrame({"method": row.method, "x": x, "acc": acc}))
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=["method", "x", "acc"])


def executed_curves(
    steps: pd.DataFrame, chosen: pd.DataFrame, grid: Sequence[float] | np.ndarray | None = None
) -> pd.DataFrame:
    """Each method's accuracy per seed on a grid of executed MACs (% of dense).

    ``steps`` holds ``run_key``, ``step``, ``macs_sparsity``, ``test_acc`` and ``finetune_acc``
    (fine-tuned accuracy at step 0, the uncut network, is its ``test_acc``). Draws of one seed
    are combined by the median. Returns ``method``, ``kind``, ``base_seed``, ``seed``, ``x``,
    ``acc`` (NaN outside a curve's points) and ``span`` (the width, in points of MACs, of the
    segment between logged points the value is interpolated on; 0 on a logged point).
    """
    grid = np.linspace(0.0, 100.0, 101) if grid is None else np.asarray(grid, dtype=float)
    by_key = dict(tuple(steps.groupby("run_key", sort=False)))
    rows = []
    for row in chosen.itertuples(index=False):
        s = by_key.get(row.run_key)
        if s is None:
            continue
        x, acc = _points(s, row.column)
        y, span = _interp(x, acc, grid)
        rows.append(
            pd.DataFrame(
                {
                    "method": row.method,
                    "kind": row.kind,
                    "base_seed": row.base_seed,
                    "seed": row.seed,
                    "x": grid,
                    "acc": y,
                    "span": span,
                }
            )
        )
    if not rows:
        return pd.DataFrame(columns=["method", "kind", *_SEED, "x", "acc", "span"])
    out = pd.concat(rows, ignore_index=True)
    g = out.groupby(["method", "kind", *_SEED, "x"], sort=False, as_index=False)
    return g.agg(acc=("acc", "median"), span=("span", "max"))


def _t_interval(values: np.ndarray) -> tuple[float, float, float, int]:
    from scipy import stats

    v = values[np.isfinite(values)]
    n = len(v)
    if n == 0:
        return np.nan, np.nan, np.nan, 0
    mean = float(v.mean())
    if n == 1:
        return mean, np.nan, np.nan, 1
    half = float(stats.t.ppf(0.975, n - 1) * v.std(ddof=1) / np.sqrt(n))
    return mean, max(0.0, mean - half), min(100.0, mean + half), n  # accuracy lies in [0, 100]


def curve_bands(curves: pd.DataFrame) -> pd.DataFrame:
    """Per method and grid point: the mean over seeds, their min-max band and ``n``, where every
    seed of the method has a value (the line stops where a seed's curve ends)."""
    seeds = curves.drop_duplicates(["method", *_SEED]).groupby("method", sort=False).size().rename("_seeds")
    g = curves.dropna(subset=["acc"]).groupby(["method", "kind", "x"], sort=False)["acc"]
    b = g.agg(mean="mean", low="min", high="max", n="count").reset_index()
    b = b.merge(seeds.reset_index(), on="method")
    return b[b["n"] == b["_seeds"]].drop(columns="_seeds").reset_index(drop=True)


def matched_macs(curves: pd.DataFrame, levels: Sequence[float] = LEVELS) -> pd.DataFrame:
    """Accuracy of every method at each level of executed MACs (% of dense): mean over seeds,
    95 % t-interval, ``n`` seeds with a value, min, max and ``span``, the widest segment between
    logged points a seed's value is interpolated on (a wide one is a guess between two settings). A
    method whose curves do not reach a level has no value there (``n`` counts the seeds that do)."""
    rows = []
    for (method, kind), part in curves.groupby(["method", "kind"], sort=False):
        for level in levels:
            here = part[np.isclose(part["x"].to_numpy(dtype=float), level)]
            at = here["acc"].to_numpy(dtype=float)
            mean, lo, hi, n = _t_interval(at)
            finite = at[np.isfinite(at)]
            rows.append(
                {
                    "method": method,
                    "kind": kind,
                    "macs": float(level),
                    "mean": mean,
                    "ci_low": lo,
                    "ci_high": hi,
                    "n": n,
                    "min": float(finite.min()) if n else np.nan,
                    "max": float(finite.max()) if n else np.nan,
                    "span": float(here["span"].max()) if n else np.nan,
                }
            )
    return pd.DataFrame(rows)


def training_costs(trials: pd.DataFrame, chosen: pd.DataFrame) -> pd.DataFrame:
    """Per dynamic method: where training started, its SGD steps and the training MACs saved
    against dense training with the same recipe (mean, min, max over seeds)."""
    dyn = chosen[(chosen["kind"] == "dynamic") & (chosen["column"] == "test_acc")]
    data = dyn.merge(trials, on="run_key", suffixes=("", "_t"))
    if data.empty or "train_macs_saved" not in data:
        return pd.DataFrame(
            columns=["method", "started_from", "train_steps", "saved", "saved_min", "saved_max", "n"]
        )
    g = data.groupby("method", sort=False)
    return g.agg(
        started_from=("started_from", "first"),
        train_steps=("train_steps", "mean"),
        saved=("train_macs_saved", "mean"),
        saved_min=("train_macs_saved", "min"),
        saved_max=("train_macs_saved", "max"),
        n=("run_key", "count"),
    ).reset_index()


def gate_spread(trials: pd.DataFrame, steps: pd.DataFrame, chosen: pd.DataFrame) -> pd.DataFrame:
    """Per gated method and cost weight: the mean over seeds of the per-image executed-MAC
    percentiles (% of dense), of the mean and of test accuracy.

    Returns ``method``, ``cost``, ``acc``, ``mean`` and the percentiles ``p5`` ... ``p95``."""
    gated = chosen[chosen["method"].isin(chosen.loc[chosen["kind"] == "dynamic", "method"])]
    gated = gated.merge(trials[["run_key", "protocol", "protocol_json", "initial_macs"]], on="run_key")
    gated = gated[gated["protocol"] == "gated"]
    rows = []
    for r in gated.itertuples(index=False):
        costs = sorted(_params(r.protocol_json).get("costs", []))
        part = steps[(steps["run_key"] == r.run_key) & (steps["step"] > 0)]
        for s in part.to_dict("records"):
            q = {f"p{p}": s.get(f"macs_p{p}", np.nan) for p in PERCENTILES}
            if not all(np.isfinite(v) for v in q.values()) or s["step"] > len(costs):
                continue
            row = {"method": r.method, "cost": costs[int(s["step"]) - 1], "acc": float(s["test_acc"])}
            row["mean"] = 100.0 - float(s["macs_sparsity"])
            row.update({k: 100.0 * float(v) / float(r.initial_macs) for k, v in q.items()})
            rows.append(row)
    if not rows:
        return pd.DataFrame(columns=["method", "cost", "acc", "mean"])
    return pd.DataFrame(rows).groupby(["method", "cost"], sort=True).mean().reset_index()
