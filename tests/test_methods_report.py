"""The report section "Taxonomy vs the methods it cites" on a synthetic store that holds every
kind of method: the table's numbers against the store's own trial rows, the methods and their
papers, the tests and their caveat, the oracle evaluations, the figure."""

from __future__ import annotations

import re
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from analysis.frames import load_trials
from analysis.metrics import geometric_mean, trial_metrics
from analysis.report.builder import Builder
from analysis.report.figures import Renderer, use_agg
from analysis.report.methods_section import BEST, methods, significance
from analysis.report.tables import load
from tests.synthetic_store import make_store

CELLS = ["activation-taylor2_gn-abs_sum-weights_removed", "activation-value-l2-none", "weight-gradient-l1-l2"]
ALIASES = ["taylor_fo", "l1_filter", "fisher"]
MYOPIC = {"k": 3, "candidates_from": ["weight-value-l1-none"]}


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """The store, and a report of the section alone (the full report runs it in test_report.py)."""
    root = tmp_path_factory.mktemp("methods") / "store"
    common = dict(models=("tiny_cnn", "tiny_resnet"), seeds=3, steps=20, rank_tables=False)
    signals = [*CELLS, *ALIASES, "random", "oracle", "activation_voting"]
    make_store(root, signals=signals, random_draws=3, **common)
    make_store(root, signals=["random"], protocol="best_of_n", random_draws=3, seed=1, **common)
    make_store(root, signals=["taylor_fo", "l1_filter"], protocol="myopic", seed=2, **common)
    make_store(root, signals=["taylor_fo"], protocol="myopic", params=MYOPIC, seed=3, **common)
    make_store(root, signals=["fisher"], protocol="fisher_cost", params={"beta": 0.5}, seed=4, **common)
    for seed, params in ((5, None), (6, {"mean_replacement": True})):
        signals = ["l1_filter", "random"]
        make_store(root, signals=signals, protocol="retrain", params=params, seed=seed, **common)
    use_agg()
    data = load(root)
    m = trial_metrics(data["trials"], data["steps"])
    b = Builder(root, data, m, "sparsity_at_5", 5, Renderer(root.parent / "report"))
    methods(b)
    summary, index = b.write()
    return root, SimpleNamespace(summary_md=summary, index_html=index, figures=b.renderer.done)


def _section(report) -> str:
    text = report[1].summary_md.read_text(encoding="utf-8")
    return text[text.index("## Taxonomy vs the methods it cites") :]


def _table(section: str) -> pd.DataFrame:
    lines = [line for line in section.splitlines() if line.startswith("|")]
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines]
    return pd.DataFrame(cells[2:], columns=cells[0])


def test_every_kind_of_method_is_listed_with_its_paper(report):
    table = _table(_section(report))
    rows = set(zip(table["method"], table["protocol label"], strict=True))
    for name in (
        f"`{BEST}`",
        "`taylor_fo`",
        "`l1_filter`",
        "`fisher`",
        "`random`",
        "`oracle`",
        "`activation_voting`",
    ):
        assert (name, "`sensitivity`") in rows, name
    assert ("`random`", "`best_of_n`") in rows
    assert ("`taylor_fo`", "`myopic`") in rows and ("`l1_filter`", "`myopic`") in rows
    assert ("`taylor_fo`", "`myopic [k=3; candidates_from=['weight-value-l1-none']]`") in rows
    assert any(name == "`fisher`" and label.startswith("`fisher_cost") for name, label in rows)
    assert ("`l1_filter`", "`retrain`") in rows and ("`l1_filter`", "`retrain [mean replacement]`") in rows
    sources = " ".join(table["source"])
    for paper in (
        "Anwar et al. 2017",
        "Persand et al. 2020",
        "Theis et al. 2018",
        "Evci et al. 2018",
        "Li et al.",
    ):
        assert paper in sources, paper
    assert table.loc[table["method"] == "`activation_voting`", "source"].str.contains("voting").all()


def _geomean_cell(trials: pd.DataFrame, metric: str) -> str:
    """Geomean over seeds of the stored headline, a seed's draws first reduced to their median."""
    per_seed = trials.groupby(["base_seed", "seed"])[metric].median()
    return f"{geometric_mean(per_seed.to_numpy()):.1f}"


@pytest.mark.parametrize(
    ("signal", "protocol", "label"),
    [("random", "best_of_n", "best_of_n"), ("activation_voting", "sensitivity", "sensitivity")],
)
def test_numbers_come_from_the_stored_trials(report, signal, protocol, label):
    root = report[0]
    trials = load_trials(root)
    table = _table(_section(report)).set_index(["method", "protocol label"])
    for model in ("tiny_cnn", "tiny_resnet"):
        mine = trials[
            (trials["signal"] == signal) & (trials["protocol"] == protocol) & (trials["model"] == model)
        ]
        for metric, what in (("sparsity_at_5", "weights"), ("macs_sparsity_at_5", "MACs")):
            cell = table.loc[(f"`{signal}`", f"`{label}`"), f"{model}/digits: {what}"]
            assert cell.split(" ")[0] == _geomean_cell(mine, metric), (model, metric)
            assert re.fullmatch(r"[\d.]+ \[[\d.]+, [\d.]+\]", cell)


def test_the_best_cell_is_the_best_stored_taxonomy_cell(report):
    root = report[0]
    trials = load_trials(root)
    sens = trials[(trials["protocol_label"] == "sensitivity") & trials["sig_pointwise"].notna()]
    section = _section(report)
    table = _table(section).set_index(["method", "protocol label"])
    for model in ("tiny_cnn", "tiny_resnet"):
        part = sens[sens["model"] == model]
        geo = part.groupby("signal")["sparsity_at_5"].agg(geometric_mean)
        cell = table.loc[(f"`{BEST}`", "`sensitivity`"), f"{model}/digits: weights"]
        assert cell.split(" ")[0] == f"{geo.max():.1f}"
    assert "The best taxonomy cells:" in section


def test_tests_caveat_and_costs(report):
    section = _section(report)
    table = _table(section)
    # independent repeats pair within a network: 2 networks x 3 repeats = 6 blocks, enough to test
    assert "paired over (network, independent repeat) pairs" in section
    assert "Caveat: only" not in section
    assert table["p (Holm), weights"].replace("–", np.nan).notna().sum() > 5  # complete methods are tested
    costs = table.set_index(["method", "protocol label"])["oracle evals / trial"]
    assert costs[("`taylor_fo`", "`myopic`")] == "100 / 100"  # 5 per step x 20 steps, per network
    assert costs[("`random`", "`best_of_n`")] == "100 / 100"
    assert costs[("`l1_filter`", "`sensitivity`")] == "–"


def test_figure_is_drawn_and_placed(report):
    result = report[1]
    assert "methods" in result.figures and all(p.stat().st_size > 1000 for p in result.figures["methods"])
    assert "figures/methods.png" in result.index_html.read_text(encoding="utf-8")


def test_significance_finds_a_consistent_difference_over_enough_networks():
    rng = np.random.default_rng(0)
    rows = []
    for n in range(8):
        base = 40 + rng.normal(0, 3)
        for name, shift in ((BEST, 0.0), ("taylor_fo", -6.0), ("random", -20.0), ("twin", 0.0)):
            value = base + shift + (rng.normal(0, 0.5) if shift else 0.0)  # the twin equals the best
            rows.append(
                {"network": f"net{n}", "key": f"{name} · sensitivity", "w_geo": value, "m_geo": value}
            )
    notes: list[str] = []
    tests = significance(pd.DataFrame(rows), "sensitivity", notes)
    p = tests["w"]["p_holm"]
    assert p["taylor_fo · sensitivity"] < 0.05 and p["random · sensitivity"] < 0.05
    assert p["twin · sensitivity"] == 1.0 and not notes
