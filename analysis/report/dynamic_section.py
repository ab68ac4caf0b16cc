"""The report section on training-time (CUCB) and per-input (gated) channel selection: each
next to the best static signals and the references on the MAC axis, per model and dataset.

Numbers come from :mod:`analysis.dynamic`; this module lays them out and draws the two
figures (accuracy against MACs executed per image; the spread of per-image MACs under
gating). Stores without ``cucb`` or ``gated`` trials get no section.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from analysis import dynamic, frames
from analysis.plots import save
from analysis.plots._base import new_figure, set_title
from analysis.report.figures import slug

__all__ = ["dynamic_selection", "curves_figure", "spread_figure"]

INTRO = (
    "`cucb` trains a network (from scratch by default) executing only each layer's top-k channels per "
    "step, chosen by a combinatorial upper confidence bound on their Taylor contributions (Spasov & Liò "
    "2019), then prunes the least executed channels to each target and evaluates them as cut and after a "
    "short fine-tune. `gated` fine-tunes the base model with a gating head per layer that switches "
    "channels off per input, under a cost on the expected executed MACs (Fragoulis et al. 2019; "
    "Molchanov's IamNN); its MACs are the mean over test images of the MACs executed on each, heads "
    "included. They are put next to the best static signals of each static protocol label (by the "
    "ranking rule above) and the references, on the axis of MACs executed per image (% of the dense "
    "network's). Curves run through each trial's logged points only (a CUCB network's dense accuracy is "
    "its own, not the base model's); per seed, `random` is the median over its draws; across seeds the "
    "mean and a 95 % t-interval."
)
HOW_CURVES = (
    "Each line is a method's test accuracy, averaged over seeds, against the MACs it executes per image "
    "(% of the dense network's; further left = cheaper). Bands span the seeds' minimum to maximum; a line "
    "is drawn where every seed has a point. Thick lines are the training-time and per-input methods, thin "
    "ones the static signals, dashed grey the references; dotted verticals mark the matched-MAC levels "
    "of the table below."
)
HOW_SPREAD = (
    "Per cost weight λ of the gating (one row each, the largest λ on top): the distribution over test "
    "images of the MACs executed on each (% of dense): whiskers 5–95 %, box 25–75 %, bar the median, "
    "dot the mean; the percentiles are averaged over seeds. Accuracy (mean over seeds) on the right. A "
    "narrow box means the gates act almost the same on every input."
)
WIDE_SPAN = 20.0
"""A matched-MAC value read off a segment wider than this (points of MACs) is marked †."""
_DYNAMIC_COLOURS = ("#d62728", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2")
_STATIC_COLOURS = ("#1f77b4", "#17becf", "#2ca02c", "#bcbd22", "#7f7f7f")


def dynamic_selection(b) -> None:  # noqa: ANN001 - analysis.report.builder.Builder
    """Per model/dataset with ``cucb`` or ``gated`` trials: curves, matched-MAC table, training
    cost and the gates' per-image spread."""
    trials = b.data["trials"]
    if "protocol" not in trials or not trials["protocol"].isin(dynamic.DYNAMIC_PROTOCOLS).any():
        return
    b.doc.heading(2, "Training-time and per-input channel selection against static pruning")
    b.doc.para(INTRO)
    static = {
        c.protocol: list(c.ranking["signal"])
        for c in b.comparisons
        if not c.m["protocol"].astype(str).isin(dynamic.DYNAMIC_PROTOCOLS).any()
    }
    pairs = trials.loc[trials["protocol"].isin(dynamic.DYNAMIC_PROTOCOLS), ["model", "dataset"]]
    for model, dataset in pairs.drop_duplicates().itertuples(index=False):
        part = trials[(trials["model"] == model) & (trials["dataset"] == dataset)]
        _one_task(b, f"{model}/{dataset}", part, static)


def _one_task(b, key: str, trials: pd.DataFrame, static: dict[str, list[str]]) -> None:  # noqa: ANN001
    chosen = dynamic.methods(trials, {k: v for k, v in static.items() if k in set(trials["protocol_label"])})
    columns = ["macs_sparsity", "test_acc", "finetune_acc", *(f"macs_p{p}" for p in dynamic.PERCENTILES)]
    steps = frames.load_steps(b.root, run_keys=chosen["run_key"].unique(), columns=columns)
    curves = dynamic.executed_curves(steps, chosen)
    b.doc.heading(3, key)
    name = f"dynamic_curves__{slug(key)}"
    seeds = int(chosen.drop_duplicates(["method", "base_seed", "seed"]).groupby("method").size().max())
    data = f"{key} · {seeds} seed{'s' * (seeds > 1)} · store `{b.root.name}`"
    points = dynamic.logged_points(steps, chosen[chosen["kind"] == "dynamic"])
    _draw(
        b,
        name,
        lambda: curves_figure(dynamic.curve_bands(curves), data, points),
        "Test accuracy vs MACs executed per image",
        HOW_CURVES,
    )
    table = dynamic.matched_macs(curves)
    b.renderer.fig_dir.mkdir(parents=True, exist_ok=True)
    csv = f"dynamic_matched__{slug(key)}.csv"
    table.to_csv(b.renderer.fig_dir / csv, index=False, float_format="%.12g")
    b.doc.heading(4, "Accuracy at matched MACs")
    b.doc.para(
        "Test accuracy (%) at each level of MACs executed per image (% of dense): mean over seeds "
        "[95 % t-interval, clipped to 0–100] (seeds with a value); — where a method's curves do not "
        "reach the level; † where a seed's value is interpolated between logged points more than "
        f"{WIDE_SPAN:g} points of MACs apart "
        f"(a guess between two settings, not a measurement). Data: `figures/{csv}`."
    )
    b.doc.table(matched_display(table))
    b.doc.para(verdicts(table))
    costs = dynamic.training_costs(trials, chosen)
    if len(costs):
        b.doc.heading(4, "Training cost")
        b.doc.para(
            "Training MACs = 3 × batch size × the forward MACs per image of each step's executed channels "
            "(forward, input gradient, weight gradient); saved = against dense training with the same "
            "recipe. Gate training runs every channel (the straight-through estimator needs them), so it "
            "saves nothing while training."
        )
        b.doc.table(costs_display(costs))
    spread = dynamic.gate_spread(trials, steps, chosen)
    if len(spread):
        _draw(
            b,
            f"dynamic_gate_spread__{slug(key)}",
            lambda: spread_figure(spread, data),
            "MACs executed per test image under per-input gates",
            HOW_SPREAD,
        )


def _draw(b, name: str, make, title: str, how: str) -> None:  # noqa: ANN001
    """Draw and save a figure of this section through the report's renderer bookkeeping."""
    try:
        fig = make()
    except ValueError as err:
        b.renderer.failed[name] = str(err)
        return
    b.renderer.done[name] = save(fig, b.renderer.fig_dir, name)
    b.doc.figure(name, title, how)


def _cell(row: pd.Series) -> str:
    if not row["n"]:
        return "—"
    mark = "†" if row["span"] > WIDE_SPAN else ""
    if not np.isfinite(row["ci_low"]):
        return f"{row['mean']:.1f}{mark} ({int(row['n'])})"
    return f"{row['mean']:.1f}{mark} [{row['ci_low']:.1f}, {row['ci_high']:.1f}] ({int(row['n'])})"


def matched_display(table: pd.DataFrame) -> pd.DataFrame:
    """Methods × MAC levels, each cell ``mean [low, high] (n)``."""
    if table.empty:
        return pd.DataFrame({"method": []})
    cells = table.assign(cell=table.apply(_cell, axis=1))
    wide = cells.pivot_table(index="method", columns="macs", values="cell", aggfunc="first", sort=False)
    wide = wide[sorted(wide.columns, reverse=True)]
    wide.columns = [f"{c:g} % MACs" for c in wide.columns]
    return wide.reset_index()


def verdicts(table: pd.DataFrame) -> str:
    """At each level: which method is most accurate, by how much, and whether the intervals overlap
    (among the methods with a value on the most seeds there)."""
    parts = []
    for level, part in table.groupby("macs", sort=False):
        ranked = part[(part["n"] > 0) & (part["n"] == part["n"].max())].sort_values("mean", ascending=False)
        if ranked.empty:
            continue
        top = ranked.iloc[0]
        text = f"at {level:g} % MACs, {top['method']} ({top['mean']:.1f} %)"
        if len(ranked) > 1:
            second = ranked.iloc[1]
            gap = top["mean"] - second["mean"]
            verb = f"leads {second['method']} ({second['mean']:.1f} %) by {gap:.1f} points"
            text += f" {verb}" if gap >= 0.05 else f" ties with {second['method']}"
            if not (np.isfinite(top["ci_low"]) and np.isfinite(second["ci_high"])):
                text += " (one seed: no interval)"
            elif top["ci_low"] > second["ci_high"]:
                text += " (95 % intervals apart)"
            else:
                text += " (95 % intervals overlap)"
        parts.append(text)
    if not parts:
        return "No method reaches the matched-MAC levels."
    return "Highest accuracy at equal MACs: " + "; ".join(parts) + "."


def costs_display(costs: pd.DataFrame) -> pd.DataFrame:
    out = pd.DataFrame({"method": costs["method"], "started from": costs["started_from"]})
    out["training steps"] = costs["train_steps"].map(lambda v: f"{v:.0f}")
    out["training MACs saved (%)"] = [
        f"{s:.1f} (min {lo:.1f}, max {hi:.1f})"
        for s, lo, hi in zip(costs["saved"], costs["saved_min"], costs["saved_max"], strict=True)
    ]
    out["seeds"] = costs["n"].astype(int)
    return out


def _style(method: str, kind: str, colours: dict) -> dict:
    if kind == "reference":
        return {"color": "0.45", "linestyle": "--" if "random" in method else ":", "linewidth": 1.4}
    return {
        "color": next(colours[kind], "0.3"),
        "linewidth": 2.4 if kind == "dynamic" else 1.3,
        "linestyle": "-." if "fine-tune" in method else "-",
    }


def curves_figure(bands: pd.DataFrame, data: str = "", points: pd.DataFrame | None = None) -> Figure:
    """Accuracy against MACs executed per image (% of dense), one line per method with its seed
    band; left the full range, right the top of it; ``points`` (``method``, ``x``, ``acc``) marks
    the logged points of the training-time and per-input methods."""
    from analysis.palette import style

    if bands.empty:
        raise ValueError("dynamic curves: no method has a point on every seed")
    colours = {"dynamic": iter(_DYNAMIC_COLOURS), "static": iter(_STATIC_COLOURS)}
    styles = {m: _style(m, str(p["kind"].iloc[0]), colours) for m, p in bands.groupby("method", sort=False)}
    dyn = bands[bands["kind"] == "dynamic"]
    floor = float(dyn["low"].min()) if len(dyn) else float(bands["mean"].max()) - 10
    with style():
        fig = new_figure(12.0, 5.6)
        axes = fig.subplots(1, 2)
        for ax in axes:
            for method, part in bands.groupby("method", sort=False):
                part = part.sort_values("x")
                ax.plot(part["x"], part["mean"], label=method if ax is axes[0] else None, **styles[method])
                many = (part["n"] > 1).to_numpy()
                if many.any():
                    colour = styles[method]["color"]
                    ax.fill_between(
                        part["x"], part["low"], part["high"], where=many, color=colour, alpha=0.12, lw=0
                    )
            for method, part in (points if points is not None else pd.DataFrame()).groupby(
                "method", sort=False
            ):
                if method in styles:
                    ax.plot(
                        part["x"], part["acc"], "o", color=styles[method]["color"], markersize=3.5, alpha=0.8
                    )
            for level in dynamic.LEVELS:
                ax.axvline(level, color="0.75", linestyle=":", linewidth=0.8, zorder=0)
            ax.set_xlim(0, 101)
            ax.set_xlabel("MACs executed per image (% of the dense network's)")
        axes[0].set_ylabel("test accuracy (%)")
        axes[0].set_title("full range", fontsize=11)
        axes[1].set_ylim(max(0.0, floor - 2.0), 100.5)
        axes[1].set_title(
            "zoom on the training-time and per-input methods (dots: logged points)", fontsize=11
        )
        fig.legend(loc="outside lower center", ncols=4, frameon=False, title="method")
        set_title(fig, "Test accuracy vs MACs executed per image: dynamic and static selection", data)
    return fig


def spread_figure(spread: pd.DataFrame, data: str = "") -> Figure:
    """Box per cost weight from the averaged percentiles of per-image executed MACs."""
    from analysis.palette import style

    if spread.empty:
        raise ValueError("gate spread: no gated rows with per-image MAC percentiles")
    rows = list(spread.itertuples(index=False))
    with style():
        fig = new_figure(9.0, 1.2 + 0.55 * len(rows))
        ax = fig.subplots()
        labels = []
        for i, r in enumerate(rows):
            q = r._asdict()
            ax.plot([q["p5"], q["p95"]], [i, i], color="0.35", linewidth=1.2)
            ax.add_patch(_box(q["p25"], q["p75"], i))
            ax.plot([q["p50"]] * 2, [i - 0.3, i + 0.3], color="black", linewidth=2)
            ax.plot(q["mean"], i, "o", color="#d62728", markersize=5)
            ax.text(1.01, i, f"{q['acc']:.1f} %", transform=ax.get_yaxis_transform(), va="center", fontsize=9)
            labels.append(f"{q['method']}  λ={q['cost']:g}")
        ax.set_yticks(range(len(rows)), labels)
        ax.set_ylim(-0.7, len(rows) - 0.3)
        ax.set_xlim(0, 101)
        ax.set_xlabel("MACs executed on one test image (% of the dense network's)")
        set_title(fig, "Per-image executed MACs under per-input gates (right: test accuracy)", data)
    return fig


def _box(lo: float, hi: float, y: float):  # noqa: ANN202 - a matplotlib Rectangle
    from matplotlib.patches import Rectangle

    return Rectangle(
        (lo, y - 0.25), max(hi - lo, 0.2), 0.5, facecolor="#f4a582", edgecolor="0.3", linewidth=1
    )
