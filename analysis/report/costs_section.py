"""Report sections on costs and idle channels (issue 13, items 1-2): FLOP-aware pruning against
MAC sparsity, the dead and constant channels of each network before pruning, and what mean
replacement changes. Each appears only when the store holds its data; every number comes
from the store (``trials``, ``steps``, ``activity``)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

from analysis import design, metrics
from analysis.plots import short_label
from analysis.report.builder import Builder
from analysis.report.formatting import fmt, fmt_p
from analysis.report.tables import bands
from study.store import load
from taxonomy.aliases import METHODS

__all__ = ["sections", "flop_aware", "dead_units", "mean_replacement", "cost_rows", "activity_counts"]

COST_PROTOCOL = "fisher_cost"
MACS_SCALING = "macs_removed"
_MIN_WILCOXON = 6  # pairs below which a two-sided signed-rank p cannot fall under 0.03
HOW_MACS = (
    "One panel per network; each line is a method's test accuracy averaged over seeds against the share "
    "of the network's multiply-adds removed (band: the seeds' minimum to maximum). A method is a signal "
    "under a protocol label: `fisher_cost [...]` prunes argmin signal − beta x MACs removed / initial MACs "
    "(Theis et al. 2018); the same signal under `sensitivity` is beta = 0; cells scaled by "
    "`macs_removed` (`·mr`) divide a signal by the MACs its unit removes. Further right before the drop = "
    "more computation saved."
)


def sections(b: Builder) -> None:
    """The three sections, in reading order (one entry in :data:`analysis.report.sections.SECTIONS`)."""
    flop_aware(b)
    mean_replacement(b)
    dead_units(b)


# ----------------------------------------------------------------------------- FLOP-aware pruning


def _edited(text: object, **changes: object) -> str:
    """A trial's ``protocol_json`` with some parameters changed (None: removed); unreadable text
    is kept as it is."""
    try:
        params = json.loads(str(text))
    except ValueError:
        return str(text)
    if not isinstance(params, dict):
        return str(text)
    for key, value in changes.items():
        if value is None:
            params.pop(key, None)
        else:
            params[key] = value
    return json.dumps(params, sort_keys=True)


def comparison_labels(trials: pd.DataFrame, leading: str) -> set[str]:
    """The labels the FLOP-aware methods are compared under: the ``sensitivity`` label each
    ``fisher_cost`` trial would have with ``beta`` = 0 (same step size and saliency data), or
    ``leading`` when the store has no ``fisher_cost`` trial."""
    cost = trials[trials["protocol"].astype(str) == COST_PROTOCOL]
    if cost.empty:
        return {leading}
    as_sensitivity = cost.assign(
        protocol="sensitivity",
        protocol_json=cost["protocol_json"].map(lambda t: _edited(t, name="sensitivity", beta=None)),
    )
    return set(design.protocol_labels(as_sensitivity))


def _best_cells(m: pd.DataFrame, column: str) -> pd.DataFrame:
    """Per network, the rows of the cell with the highest geomean of ``column`` (scaled by
    ``macs_removed``, and by ``weights_removed`` for contrast)."""
    out = []
    for scaling in (MACS_SCALING, "weights_removed"):
        part = m[m["sig_scaling"].astype(str) == scaling]
        if part.empty:
            continue
        geo = part.groupby(["network", "signal"], observed=True)[column].agg(metrics.geometric_mean)
        for network, per in geo.dropna().groupby(level=0):
            out.append(part[(part["network"] == network) & (part["signal"] == per.idxmax()[1])])
    return pd.concat(out) if out else m.iloc[:0]


def cost_rows(m: pd.DataFrame, trials: pd.DataFrame, leading: str, metric: str) -> pd.DataFrame:
    """The per-seed rows of the FLOP-aware methods: every ``fisher_cost`` trial, the same signals
    under the comparison labels (:func:`comparison_labels`: beta = 0), and there, per network,
    the best ``macs_removed`` and ``weights_removed`` cells by MAC headline. Adds ``network`` and
    ``method`` (signal · label); empty when none of them was run."""
    m = m.assign(network=m["model"].astype(str) + "/" + m["dataset"].astype(str))
    cost = m["protocol"].astype(str) == COST_PROTOCOL
    under = m[m["protocol_label"].isin(comparison_labels(trials, leading))]
    same = under[under["signal"].isin(set(m.loc[cost, "signal"]))]
    best = _best_cells(under, f"macs_{metric}")
    if not cost.any() and not (best["sig_scaling"].astype(str) == MACS_SCALING).any():
        return m.iloc[:0].assign(method=pd.Series(dtype=str))
    rows = pd.concat([m[cost], same, best]).drop_duplicates("run_key")
    return rows.assign(method=rows["signal"].astype(str) + " · " + rows["protocol_label"].astype(str))


def _series(method: str) -> str:
    """A curve's key: the signal id stays parseable (its colour family), the label's hyphens
    become non-breaking ones so that the id keeps its four parts."""
    signal, _, label = method.partition(" · ")
    return f"{signal} · {label.replace('-', '‑')}"


def _named(method: str) -> str:
    """A method as the documents name it: the signal's alias or short label, then its label."""
    signal, _, label = method.partition(" · ")
    return f"{short_label(signal)} · {label}"


def _headline_table(rows: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Per network and method: the weights and the MACs headline (geomean over seeds, 95 % CI),
    best MAC headline first."""
    out = []
    for column in (metric, f"macs_{metric}"):
        s = metrics.summarise(rows.assign(signal=rows["method"]), column, by=("network",))
        s["cell"] = [
            f"{fmt(g)} [{fmt(lo)}, {fmt(hi)}]" if np.isfinite(lo) else fmt(g)
            for g, lo, hi in zip(s["geomean"], s["ci_low"], s["ci_high"], strict=True)
        ]
        s = s.rename(columns={"signal": "method"}).set_index(["network", "method"])
        out.append(s[["cell", "n_seeds", "geomean"]].add_prefix(f"{column}:"))
    table = pd.concat(out, axis=1).reset_index()
    table = table.sort_values(["network", f"macs_{metric}:geomean"], ascending=[True, False])
    return pd.DataFrame(
        {
            "network": table["network"],
            "method (signal · protocol label)": [f"`{_named(x)}`" for x in table["method"]],
            "weights headline (%)": table[f"{metric}:cell"],
            "MACs headline (%)": table[f"macs_{metric}:cell"],
            "seeds": table[f"{metric}:n_seeds"].map(fmt),
        }
    )


def _legend(methods: list[str], trials: pd.DataFrame, rows: pd.DataFrame) -> dict[str, str]:
    """Short legend names: the signal's alias or short label, its protocol and, for
    ``fisher_cost``, beta (the compared labels share every other variant: the table names them)."""
    out = {}
    for method in methods:
        key = rows.loc[rows["method"] == method, "run_key"].iloc[0]
        protocol = str(trials.at[key, "protocol"])
        try:
            beta = json.loads(str(trials.at[key, "protocol_json"])).get("beta")
        except (ValueError, AttributeError):
            beta = None
        extra = f" β={beta:g}" if protocol == COST_PROTOCOL and isinstance(beta, int | float) else ""
        out[_series(method)] = f"{short_label(method.partition(' · ')[0])} · {protocol}{extra}"
    return out


def flop_aware(b: Builder) -> None:
    """Theis's cost-aware Fisher and the ``macs_removed`` cells against MAC sparsity."""
    metric = b.metric if b.metric.startswith("sparsity_at_") else "sparsity_at_5"
    trials = b.data["trials"]
    rows = cost_rows(b.m, trials, b.comparisons[0].protocol, metric)
    if rows.empty:
        return
    b.doc.heading(2, "FLOP-aware pruning: accuracy against MAC sparsity")
    theis, scaled = METHODS["fisher_cost"], METHODS["flops_scaled"]
    under = ", ".join(f"`{x}`" for x in sorted(comparison_labels(trials, b.comparisons[0].protocol)))
    b.doc.para(
        f"{theis.citation}: {theis.how}; dMACs is recomputed at every step (the multiply-adds per image "
        f"of the unit's filters, its consumers' slices and its coupled filters) and divided by the unpruned "
        f"network's MACs, so one beta prices the same share of computation on every network. "
        f"{scaled.citation}: {scaled.how}. Shown: every `{COST_PROTOCOL}` trial, the same signals under "
        f"{under} (beta = 0) and, per network, the best cells there scaled by `{MACS_SCALING}` and by "
        f"`weights_removed` by MAC headline. Headlines: {metric} read on the weight axis and on the MAC "
        "axis (geomean over seeds [95 % bootstrap interval])."
    )
    b.doc.table(_headline_table(rows, metric))
    picked = trials[trials["run_key"].isin(rows["run_key"])]
    method = rows.drop_duplicates("run_key").set_index("run_key")["method"]
    network = picked["model"].astype(str) + "/" + picked["dataset"].astype(str)
    curve_trials = picked.assign(signal=picked["run_key"].map(method).map(_series), task=network)
    steps = b.data["steps"][b.data["steps"]["run_key"].isin(picked["run_key"])]
    methods = list(dict.fromkeys(rows.sort_values("method")["method"]))
    order, labels = [_series(x) for x in methods], _legend(methods, trials.set_index("run_key"), rows)
    b.draw(
        "macs_curves__flop_aware",
        "accuracy_curves",
        dict(
            bands=bands(steps, curve_trials, "macs_sparsity"),
            x="macs_sparsity",
            order=order,
            data=f"{network.nunique()} network(s) · store `{b.root.name}`",
            subset=f"{len(order)} methods",
            labels=labels,
        ),
        f"Test accuracy vs MAC sparsity: FLOP-aware pruning ({len(order)} methods)",
        HOW_MACS,
    )


# ----------------------------------------------------------------------------- mean replacement


def _pairs(m: pd.DataFrame, trials: pd.DataFrame) -> pd.DataFrame:
    """``m`` with ``network``, ``_base`` (the label with mean replacement off) and ``_on``
    (whether the trial replaced means): a trial replaced means iff switching the option off
    changes its label (:func:`analysis.design.protocol_labels`, on the full trials rows)."""
    off = trials["protocol_json"].map(lambda t: _edited(t, mean_replacement=None))
    base = design.protocol_labels(trials.assign(protocol_json=off))
    by_key = pd.DataFrame({"_base": base.to_numpy(), "_on": (base != trials["protocol_label"]).to_numpy()})
    by_key.index = trials["run_key"].to_numpy()
    data = m.join(by_key, on="run_key")
    return data.assign(network=data["model"].astype(str) + "/" + data["dataset"].astype(str))


def mean_replacement(b: Builder) -> None:
    """Headline with and without mean replacement, per network, base label and signal."""
    data = _pairs(b.m, b.data["trials"])
    keys = ["network", "_base", "signal"]
    geo = data.groupby([*keys, "_on"], observed=True)[b.metric].agg(metrics.geometric_mean).unstack("_on")
    if True not in geo.columns or False not in geo.columns:
        return
    both = geo.dropna(subset=[True, False]).reset_index()
    if both.empty:
        return
    on_label = data[data["_on"].eq(True)].groupby("_base")["protocol_label"].first()
    method = METHODS["mean_replacement"]
    b.doc.heading(2, "Mean replacement on and off")
    b.doc.para(
        f"{method.citation}: {method.how}. Each row is a signal run under a protocol label with and without "
        f"the option on the same network; values are the geomean over seeds of {b.metric}; Δ = on − off "
        "(positive: mean replacement lets more of the network go before the drop)."
    )
    for (network, label), part in both.groupby(["network", "_base"], sort=True):
        part = part.assign(delta=part[True] - part[False]).sort_values("delta", ascending=False)
        b.doc.heading(3, f"{network}: `{label}` against `{on_label[label]}`")
        b.doc.table(
            pd.DataFrame(
                {
                    "signal": [f"`{short_label(s)}`" for s in part["signal"]],
                    "off": part[False].map(fmt),
                    "on": part[True].map(fmt),
                    "Δ": part["delta"].map(lambda v: f"{v:+.1f}"),
                }
            )
        )
        b.doc.para(_wilcoxon_text(part["delta"].to_numpy(dtype=float)))


def _wilcoxon_text(delta: np.ndarray) -> str:
    """Median Δ, how many signals gain, and the signed-rank test of Δ = 0 over the signals."""
    text = f"Median Δ {np.median(delta):+.1f} points; {int((delta > 0).sum())} of {len(delta)} signals gain."
    if len(delta) < _MIN_WILCOXON or not np.any(delta):
        return (
            text + f" Fewer than {_MIN_WILCOXON} signals (or no difference): no test, read it as descriptive."
        )
    result = scipy_stats.wilcoxon(delta)
    return text + f" Wilcoxon signed-rank over the signals: p = {fmt_p(float(result.pvalue))}."


# ----------------------------------------------------------------------------- dead and constant units


def activity_counts(activity: pd.DataFrame) -> pd.DataFrame:
    """Per network and layer: channels, dead and constant counts (mean over the rank jobs of the
    network, and their range), the median share of inputs on which a channel is 0."""
    a = activity.assign(network=activity["model"].astype(str) + "/" + activity["dataset"].astype(str))
    per_run = a.groupby(["network", "layer", "run_key"], sort=False, observed=True).agg(
        channels=("channel", "size"),
        dead=("dead", "sum"),
        constant=("constant", "sum"),
        zero=("zero_fraction", "median"),
        nonlinearity=("nonlinearity", "first"),
    )
    grouped = per_run.groupby(level=["network", "layer"], sort=False)
    out = grouped.agg(
        channels=("channels", "max"),
        runs=("channels", "size"),
        dead=("dead", "mean"),
        dead_min=("dead", "min"),
        dead_max=("dead", "max"),
        constant=("constant", "mean"),
        constant_min=("constant", "min"),
        constant_max=("constant", "max"),
        zero=("zero", "median"),
        nonlinearity=("nonlinearity", "first"),
    )
    return out.reset_index()


def _count(mean: float, low: float = 0.0, high: float = 0.0) -> str:
    """A mean count over rank jobs (one decimal when fractional), with its range when it varies."""
    text = f"{round(float(mean), 1):g}"
    return text if low == high else f"{text} ({int(low)}–{int(high)})"


def dead_units(b: Builder) -> None:
    """Per network and layer, the dead and constant channels of the unpruned network."""
    activity = load(b.root, "activity")
    if activity.empty:
        return
    counts = activity_counts(activity)
    dead_at = ", ".join(f"{v:g}" for v in sorted(activity["dead_threshold"].unique()))
    tolerance = ", ".join(f"{v:g}" for v in sorted(activity["constant_tolerance"].unique()))
    b.doc.heading(2, "Dead and constant channels before pruning")
    b.doc.para(
        f"{METHODS['dead_units'].citation}. Per conv channel of each unpruned base model, on its rank job's "
        f"eval examples, after BN and the nonlinearity: *dead* = its whole map is 0 on at least {dead_at} of "
        f"the inputs; *constant* = its activation variance across inputs (per element, averaged over the "
        f"map: the `variance` signal) is at most {tolerance} × the mean over its layer's channels (a dead "
        "channel is usually constant too). Counts are the mean over the network's rank jobs (seeds), their "
        "range in brackets when they differ; zero share = median over the layer's channels of the share of "
        "inputs on which the channel is 0. Layers without a nonlinearity after the conv (nonlinearity –) "
        "are read at their BN or conv output."
    )
    for network, part in counts.groupby("network", sort=True):
        b.doc.heading(3, str(network))
        table = pd.DataFrame(
            {
                "layer": [f"`{x}`" for x in part["layer"]],
                "nonlinearity": part["nonlinearity"].map(lambda v: v or "–"),
                "channels": part["channels"].map(fmt),
                "dead": [_count(*v) for v in part[["dead", "dead_min", "dead_max"]].to_numpy()],
                "constant": [
                    _count(*v) for v in part[["constant", "constant_min", "constant_max"]].to_numpy()
                ],
                "zero share (median)": part["zero"].map(lambda v: fmt(v, 2)),
            }
        )
        b.doc.table(table)
        runs = int(part["runs"].max())
        b.doc.para(
            f"{network}: {_count(part['dead'].sum())} dead and {_count(part['constant'].sum())} constant of "
            f"{int(part['channels'].sum())} channels (mean over {runs} rank job{'s' * (runs != 1)})."
        )
