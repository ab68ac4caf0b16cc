"""The report section "Taxonomy vs the methods it cites" (issue 13, item 5).

Is any taxonomy cell better than the methods it was built from? Per network (model x
dataset), the section lists, for every protocol label of the store, its **best taxonomy
cell** (the cell with the highest geomean headline on that network), every **literature
alias** and every signal **outside the taxonomy** (``random``, ``oracle``,
``activation_voting``, ...). Methods that are protocols or protocol options appear through
their labels with nothing special-cased: best-of-N (``best_of_n`` with ``random``), the
myopic oracle (``myopic`` with its base signals), Theis's cost-aware Fisher
(``fisher_cost`` with ``fisher``) and mean replacement on/off (``... [mean replacement]``
next to the same label without it).

Each method gets its headline in weights and in MACs (the curve read on each axis), as the
geometric mean over seeds with a 95 % bootstrap interval (seeds of a drawn signal are the
median over its draws first), and the test the report uses elsewhere: Wilcoxon signed-rank
paired over blocks (networks, or each network's independent repeats, as in the ranking rule)
with Holm's correction, every method against the leading label's
best taxonomy cell, with the caveat on few blocks. The oracle evaluations a search spent
(``trials.oracle_evals``) are shown per trial. Every number comes from the store.
"""

from __future__ import annotations

import re
import textwrap

import numpy as np
import pandas as pd

from analysis import metrics, stats
from analysis.design import label_order
from analysis.plots import short_label
from analysis.report.builder import Builder
from analysis.report.formatting import fmt, fmt_p, metric_label
from taxonomy.aliases import ALIASES, METHODS
from taxonomy.components import Reference

__all__ = ["methods", "method_entries", "significance", "oracle_costs", "headlines", "BEST"]

BEST, ALIAS, OUTSIDE = "best taxonomy cell", "literature alias", "outside the taxonomy"
_REFERENCE_ORDER = ("random", "oracle")
_MIN_WILCOXON_BLOCKS = 6  # below, a two-sided signed-rank p cannot fall under 2 / 2^n >= 0.03

HOW = (
    "One panel per network, one row per method (the table's order). Filled circle: the weights "
    "headline; open diamond: the same curve read on MAC sparsity; whiskers: 95 % bootstrap interval of "
    "the geomean over seeds. The dotted line marks the leading label's best taxonomy cell on that network "
    "(weights). Colour: best taxonomy cell, literature alias, or a method outside the "
    "taxonomy (references, voting, and the signals the search protocols run). Further right = more "
    "of the network removed before accuracy falls by the headline drop."
)


def headlines(metric: str) -> tuple[str, str]:
    """The weights and MACs headline columns read for ``metric`` (``sparsity_at_5`` unless the
    report's metric is another weight-sparsity drop)."""
    weights = metric if metric.startswith("sparsity_at_") else "sparsity_at_5"
    return weights, f"macs_{weights}"


def _pick(m: pd.DataFrame, weights: str) -> pd.DataFrame:
    """(task, signal, name, kind) of every method row: per task, its best taxonomy cell, the
    literature aliases and the signals outside the taxonomy."""
    geo = m.groupby(["task", "signal"], observed=True)[weights].agg(metrics.geometric_mean)
    geo = geo.dropna().rename("_geo").reset_index()
    taxonomy = set(m.loc[m["sig_pointwise"].notna(), "signal"])
    alias = m.drop_duplicates("signal").set_index("signal")["alias"].fillna("").astype(str)
    cells = geo[geo["signal"].isin(taxonomy)]
    best = cells.loc[cells.groupby("task", observed=True)["_geo"].idxmax()]
    named = geo[geo["signal"].map(alias) != ""]
    outside = geo[~geo["signal"].isin(taxonomy)]
    parts = [
        best.assign(name=BEST, kind=BEST),
        named.assign(name=named["signal"].map(alias), kind=ALIAS),
        outside.assign(name=outside["signal"], kind=OUTSIDE),
    ]
    out = pd.concat(parts, ignore_index=True).drop(columns="_geo")
    ident = m.drop_duplicates("task").set_index("task")[["protocol_label", "protocol", "model", "dataset"]]
    out = out.join(ident, on="task")
    labels = label_order(m)
    out = out[~_redundant_best(out, set(alias[alias != ""].index), labels[0])]
    out["network"] = out["model"].astype(str) + "/" + out["dataset"].astype(str)
    out["key"] = out["name"] + " · " + out["protocol_label"].astype(str)
    return out.assign(_order=_order(out, labels)).sort_values(["_order", "network"], kind="stable")


def _redundant_best(rows: pd.DataFrame, aliased: set[str], lead: str) -> pd.Series:
    """Best-cell rows of a label other than ``lead`` whose best cell is an alias (so a row anyway)
    on every network; the leading label's stays: it is the tests' control."""
    best = rows["kind"] == BEST
    named = best & rows["signal"].isin(aliased)
    label = rows["protocol_label"]
    every = named.groupby(label).transform("sum") == best.groupby(label).transform("sum")
    return best & every & (label != lead)


def _order(rows: pd.DataFrame, labels: list[str]) -> list[tuple]:
    """Labels in report order; within one: best cell, aliases (catalogue order), references,
    then the other methods outside the taxonomy by name."""
    aliases = {name: i for i, name in enumerate(ALIASES)}
    kinds = {BEST: 0, ALIAS: 1, OUTSIDE: 2}

    def within(name: str, kind: str) -> tuple:
        if kind == ALIAS:
            return (aliases.get(name.split("/")[0], len(aliases)), name)
        if name in _REFERENCE_ORDER:
            return (_REFERENCE_ORDER.index(name), name)
        return (len(_REFERENCE_ORDER), name)

    rank = {label: i for i, label in enumerate(labels)}
    return [
        (rank.get(label, len(rank)), kinds[kind], *within(name, kind))
        for label, name, kind in zip(rows["protocol_label"], rows["name"], rows["kind"], strict=True)
    ]


def method_entries(m: pd.DataFrame, weights: str, macs: str) -> pd.DataFrame:
    """One row per (network, label, method): which signal, ``n_seeds``, and the geomean over
    seeds with its 95 % bootstrap interval of the weights (``w_*``) and MACs (``m_*``)
    headlines. ``m``: one row per seed (:func:`analysis.metrics.collapse_draws`)."""
    picked = _pick(m, weights)
    if picked.empty:
        return picked
    chosen = m.merge(picked[["task", "signal"]].drop_duplicates(), on=["task", "signal"])
    out = picked
    for metric, prefix in ((weights, "w"), (macs, "m")):
        s = metrics.summarise(chosen, metric, by=("task",))
        names = {"geomean": f"{prefix}_geo", "ci_low": f"{prefix}_low", "ci_high": f"{prefix}_high"}
        keep = ["task", "signal", *names] + (["n_seeds"] if prefix == "w" else [])
        out = out.merge(s[keep].rename(columns=names), on=["task", "signal"], how="left")
    return out.reset_index(drop=True)


def _blocks(entries: pd.DataFrame, per_seed: pd.DataFrame | None, prefix: str) -> pd.DataFrame:
    """Blocks x methods: per network (the geomeans), or per (network, independent repeat) when
    ``per_seed`` rows are given - repeat s of a network is the same base model, split and eval
    batches under every protocol, so methods pair within it."""
    if per_seed is None:
        return entries.pivot_table(index="network", columns="key", values=f"{prefix}_geo", aggfunc="first")
    rows = per_seed[["task", "signal", "seed", prefix]].merge(entries[["task", "signal", "key", "network"]])
    return rows.pivot_table(index=["network", "seed"], columns="key", values=prefix, aggfunc="first")


def significance(
    entries: pd.DataFrame, lead: str, notes: list[str], per_seed: pd.DataFrame | None = None
) -> dict[str, pd.DataFrame]:
    """Wilcoxon signed-rank + Holm over blocks, every method complete on all of them against
    ``lead``'s best taxonomy cell; per headline (``w``, ``m``) a frame indexed by key. Blocks are
    networks, or (network, repeat) when ``per_seed`` (one row per independent repeat, the two
    headlines in columns ``w`` and ``m``) is given."""
    control = f"{BEST} · {lead}"
    wide = {prefix: _blocks(entries, per_seed, prefix) for prefix in ("w", "m")}
    blocks = len(wide["w"])
    what = "networks" if per_seed is None else "(network, repeat) pairs"
    if blocks < 2:
        notes.append(f"{blocks} block: the Wilcoxon-Holm tests need at least two {what}, and are skipped.")
        return {}
    if control not in set(entries["key"]):
        notes.append(f"`{lead}` ran no taxonomy cell: no best cell to test the methods against.")
        return {}
    out = {}
    for prefix in ("w", "m"):
        complete = wide[prefix].dropna(axis=1)
        others = [c for c in complete.columns if c != control]
        if control not in complete or not others:
            continue
        table = stats.wilcoxon_holm(complete[[control, *others]], control=control)
        out[prefix] = table.set_index("b")
    missing = entries["key"].nunique() - len(out["w"]) - 1 if "w" in out else 0
    if missing > 0:
        notes.append(f"{missing} methods ran on only some blocks: no test for them (complete blocks only).")
    if blocks < _MIN_WILCOXON_BLOCKS:
        notes.append(
            f"only {blocks} {what} as blocks: a two-sided Wilcoxon signed-rank p-value cannot fall below "
            f"{2 / 2**blocks:.3g}, so no difference can be significant yet; read the intervals."
        )
    return out


def oracle_costs(trials: pd.DataFrame, entries: pd.DataFrame) -> pd.Series:
    """Median over trials (every draw) of the networks a trial measured on the eval batches to
    choose its units (``trials.oracle_evals``), per (task, signal); empty when none measured any."""
    if "oracle_evals" not in trials or not trials["oracle_evals"].notna().any():
        return pd.Series(dtype=float)
    mine = trials.merge(entries[["task", "signal"]].drop_duplicates(), on=["task", "signal"])
    return mine.groupby(["task", "signal"], observed=True)["oracle_evals"].median().dropna()


def _variants(label: str) -> list[str]:
    """The variant names of a protocol label (``retrain [mean replacement; k=3]`` -> mean_replacement, k)."""
    inside = label.partition("[")[2].rstrip("]")
    return [part.split("=")[0].strip().replace(" ", "_") for part in inside.split(";") if part.strip()]


def _source(row: pd.Series) -> str:
    """The papers behind a row: the signal's (alias or method) and the protocol's or variant's."""
    found = []
    if row["kind"] == ALIAS:
        found.append(ALIASES[str(row["name"]).split("/")[0]].citation)
    elif row["kind"] == OUTSIDE:
        signal = str(row["signal"])
        if signal in METHODS:
            found.append(METHODS[signal].citation)
        elif signal in {r.id for r in Reference}:
            found.append(Reference(signal).meaning)
    for name in (str(row["protocol"]), *_variants(str(row["protocol_label"]))):
        if name in METHODS:
            found.append(METHODS[name].citation)
    return "; ".join(dict.fromkeys(found))


def _cell(geo: float, low: float, high: float) -> str:
    if not np.isfinite(geo):
        return "–"
    spread = f" [{fmt(low)}, {fmt(high)}]" if np.isfinite(low) else ""
    return f"{fmt(geo)}{spread}"


def _display(entries: pd.DataFrame, tests: dict, costs: pd.Series) -> pd.DataFrame:
    """The table: one row per (label, method), per network the two headlines, then tests, cost."""
    rows = []
    for key, part in entries.groupby("key", sort=False):
        first = part.iloc[0]
        row = {"method": f"`{first['name']}`", "protocol label": f"`{first['protocol_label']}`"}
        for r in part.itertuples():
            row[f"{r.network}: weights"] = _cell(r.w_geo, r.w_low, r.w_high)
            row[f"{r.network}: MACs"] = _cell(r.m_geo, r.m_low, r.m_high)
        row["seeds"] = "–".join(dict.fromkeys(fmt(int(n)) for n in sorted(part["n_seeds"])))
        for prefix, what in (("w", "weights"), ("m", "MACs")):
            table = tests.get(prefix)
            hit = table is not None and key in table.index
            row[f"p (Holm), {what}"] = fmt_p(float(table.loc[key, "p_holm"])) if hit else "–"
        if len(costs):
            spent = [costs.get((t, s), np.nan) for t, s in zip(part["task"], part["signal"], strict=True)]
            shown = " / ".join(fmt(float(v), 0) for v in spent)
            row["oracle evals / trial"] = shown if np.isfinite(spent).any() else "–"
        row["source"] = _source(first)
        rows.append(row)
    return pd.DataFrame(rows).fillna("–")


_SIGNAL_ID = re.compile(r"\b[a-z]+-[a-z0-9_]+-[a-z0-9_]+-[a-z0-9_]+\b")


def _figure_frame(entries: pd.DataFrame, lead: str) -> pd.DataFrame:
    """The plot's rows: a method's label names its protocol label unless it is the leading one
    (signal ids in it shortened, long labels wrapped)."""

    def label(name: str, protocol_label: str) -> str:
        if protocol_label == lead:
            return name
        shown = _SIGNAL_ID.sub(lambda hit: short_label(hit.group(0)), protocol_label)
        return textwrap.fill(f"{name} ({shown})", 48, subsequent_indent="  ")

    rows = zip(entries["name"], entries["protocol_label"], strict=True)
    return entries.assign(method=[label(n, p) for n, p in rows])


def methods(b: Builder) -> None:
    """The section: the table of every method per network, the tests, the best cells, the figure."""
    b.doc.heading(2, "Taxonomy vs the methods it cites")
    weights, macs = headlines(b.metric)
    entries = method_entries(b.m, weights, macs)
    if entries.empty:
        b.doc.para("No method has a headline: skipped.")
        return
    lead, notes = b.comparisons[0].protocol, []
    independent = metrics.ranking_blocks(b.m) == ("task", "seed")
    per_seed = b.m.rename(columns={weights: "w", macs: "m"}) if independent else None
    tests = significance(entries, lead, notes, per_seed)
    blocks = "(network, independent repeat) pairs" if independent else "networks"
    costs = oracle_costs(b.data["trials"], entries)
    b.doc.para(
        f"Per network, for every protocol label: its best taxonomy cell (the highest geomean {weights} on "
        "that network: chosen on the same data, so an optimistic bar), every literature alias and every "
        "signal outside the taxonomy. Search and oracle protocols (`best_of_n`, `myopic`), Theis's "
        "cost-aware Fisher and mean replacement appear under their own labels. Cells: geomean over seeds "
        f"[95 % bootstrap interval] of {metric_label(weights)} and of {metric_label(macs)} (the same "
        "curve read on MAC sparsity); a drawn signal's seed is the median of its draws. p (Holm): Wilcoxon "
        f"signed-rank paired over {blocks} against `{BEST}` of `{lead}`, Holm-corrected over the methods. "
        "One-shot protocols read the headline on their target grid: a value equal to the largest target "
        "means accuracy never fell that far there. oracle evals / trial: networks measured on the eval "
        "batches to choose the units, per network."
    )
    b.doc.table(_display(entries, tests, costs))
    best = entries[entries["kind"] == BEST]
    if len(best):
        cells = (f"`{r.protocol_label}` on {r.network}: `{short_label(r.signal)}`" for r in best.itertuples())
        b.doc.para(f"The best taxonomy cells: {'; '.join(cells)}.")
    for note in notes:
        b.doc.para(f"Caveat: {note}")
    b.draw(
        "methods",
        "method_headlines",
        dict(
            frame=_figure_frame(entries, lead),
            weights=metric_label(weights),
            macs=metric_label(macs),
            data=b.where(),
        ),
        "Taxonomy vs the methods it cites: headline in weights and in MACs per network",
        HOW,
    )
