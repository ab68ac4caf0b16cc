"""analysis.report, analysis.plots and ``prunetax report`` on synthetic stores: every
figure written (PNG + SVG), the documents, the top table against the API computed
directly, protocol variants ranked apart, random as a distribution over its draws, the
aggregation, test-noise and findings sections, degraded stores (no rank tables, one task,
one seed), clear errors. The cross-checks of ranks live in test_report_consistency.py."""

from __future__ import annotations

import re
import subprocess
import sys
from html import unescape
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.frames import load_rank_tables, load_steps, load_trials
from analysis.metrics import collapse_draws, overall_ranking, ranking_blocks, summarise, trial_metrics
from analysis.plots import FORMATS, short_label
from analysis.report import build_report
from study.cli import main
from study.store import Store, StoreWarning
from taxonomy.errors import PrunetaxError
from tests.synthetic_store import REPORT_SIGNALS, make_store, rich_report

ROOT = Path(__file__).resolve().parents[1]
SIGNALS = REPORT_SIGNALS
HEAD = ("tiny_cnn-digits-sensitivity", "tiny_resnet-digits-sensitivity")


@pytest.fixture(scope="module")
def rich():
    """The demo-shaped store (sensitivity, a `sum` variant, retrain; 5 draws of random)."""
    return rich_report()


@pytest.fixture(scope="module")
def store(rich) -> Store:
    return rich[0]


@pytest.fixture(scope="module")
def report(rich):
    return rich[1]


@pytest.fixture(scope="module")
def degraded(tmp_path_factory):
    """One task, one seed, no rank tables: what a first quick run looks like."""
    root = tmp_path_factory.mktemp("degraded")
    make_store(
        root, models=("tiny_cnn",), signals=SIGNALS[:5] + ["random"], seeds=1, steps=20, rank_tables=False
    )
    return root, build_report(root, root / "report", top=5)


def test_every_figure_is_written_as_png_and_svg(report):
    labels = ("sensitivity", "retrain", "sensitivity--aggregation-sum")
    # independent repeats are blocks: the sum variant's one task has 3, enough for a CD diagram
    expected = {f"cd_diagram__{label}" for label in labels}
    expected |= {f"curves_weights__{label}" for label in labels} | {"curves_macs__sensitivity"}
    expected |= {"heatmap__pooled__sensitivity", "heatmap__pooled__retrain"}
    expected |= {"heatmap__tiny_resnet-digits-sensitivity--aggregation-sum", "effects__overall"}
    expected |= {f"{kind}__{task}" for kind in ("heatmap", "effects") for task in HEAD}
    expected |= {f"{kind}__tiny_{m}-digits" for kind in ("oracle", "similarity") for m in ("cnn", "resnet")}
    expected |= {"methods"}  # taxonomy vs the methods it cites (analysis/report/methods_section.py)
    assert set(report.figures) == expected, report.notes
    for name, paths in report.figures.items():
        assert [p.suffix for p in paths] == [f".{f}" for f in FORMATS]
        for path in paths:
            assert path.is_file() and path.stat().st_size > 1000, path
        assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        assert b"<svg" in paths[1].read_bytes()[:2000], name
    for label in labels:  # the rank data of every label, whether or not a CD diagram is drawn
        assert (report.out_dir / "figures" / f"mean_ranks__{label}.csv").is_file()


def test_documents_reference_every_figure_by_relative_path(report):
    html = report.index_html.read_text(encoding="utf-8")
    md = report.summary_md.read_text(encoding="utf-8")
    for name in report.figures:
        assert f"src='figures/{name}.png'" in html
        assert f"figures/{name}.svg" in html
        assert f"](figures/{name}.png)" in md
    assert "id='top-table'" in html
    assert not re.search(r"(src|href)=['\"]?(https?:|//)", html), "the page must load nothing remotely"
    assert "<script" not in html.lower()
    for heading in (
        "How signals are ranked",
        "What was run",
        "Data integrity",
        "Overall ranking: `sensitivity` (top 10)",
        "Test-set noise",
        "Top 10 per task",
        "Friedman test",
        "Wilcoxon signed-rank + Holm: top signals vs the best",
        "Wilcoxon signed-rank + Holm: top signals vs `random`",
        "The paper's findings, checked on this store",
        "Component effects",
        "Default aggregation against `sum`",
        "Rank stability across seeds (Kendall's W)",
        "Rank quality against the oracle",
        "Literature signals and references",
    ):
        assert heading in md, heading
        assert heading.replace("`", "") in unescape(re.sub(r"</?code>", "", html)), heading
    assert md.count("How to read") == 0 and html.count("How to read:") == len(report.figures)


def _sensitivity_metrics(store):
    m = trial_metrics(load_trials(store), load_steps(store))
    return collapse_draws(m[m["protocol_label"] == "sensitivity"])


def test_top_table_matches_the_summary_computed_directly(store, report):
    """The headline table is the paper's protocol ranked by the stated rule: the repeats are
    independent (seed = base seed), so a block is one repeat of a task (random: its median
    over its 5 draws), and signals are ordered by their mean rank over the blocks."""
    m = _sensitivity_metrics(store)
    assert ranking_blocks(m) == ("task", "seed")
    block = ("task", "seed")
    ranking = overall_ranking(summarise(m, "sparsity_at_5", by=block), block=block)
    pooled = summarise(m, "sparsity_at_5", by=()).set_index("signal")
    top = report.top
    assert report.protocol == "sensitivity" and report.labels[0] == "sensitivity"
    assert len(top) == 10
    assert list(top["signal"]) == list(ranking["signal"].head(10))
    assert list(top["rank"]) == list(range(1, 11))
    np.testing.assert_allclose(top["mean_rank"], ranking["mean_rank"].head(10))
    for col in ("geomean", "mean", "std", "ci_low", "ci_high", "dist"):
        np.testing.assert_allclose(
            top[col], pooled.loc[top["signal"], col].to_numpy(dtype=float), err_msg=col
        )
    assert (top["n_seeds"] == 3).all() and (top["n_tasks"] == 2).all(), "seeds, not tasks x seeds"
    shared = m.assign(base_seed=0)  # seeds on one base model are not independent: tasks are blocks
    assert ranking_blocks(shared) == ("task",)
    assert set(top.loc[top["signal"] == SIGNALS[0], "alias"]) == {"best_gradient"}
    md = report.summary_md.read_text(encoding="utf-8")
    first = top.iloc[0]
    assert f"| 1 | `{first['signal']}` |" in md and f"{first['geomean']:.1f}" in md


def test_random_is_a_distribution_over_its_draws(store, report):
    """Ranks use the per-seed median over draws; tables show the median and 10-90 % band."""
    raw = trial_metrics(load_trials(store), load_steps(store))
    sens = raw[(raw["protocol_label"] == "sensitivity") & (raw["signal"] == "random")]
    assert len(sens) == 2 * 3 * 5 and set(sens["draw"]) == set(range(5))
    per_seed = sens.groupby(["task", "seed"])["sparsity_at_5"].median()
    m = _sensitivity_metrics(store)
    mine = m[m["signal"] == "random"].set_index(["task", "seed"])["sparsity_at_5"]
    np.testing.assert_allclose(mine.loc[per_seed.index], per_seed)
    values = sens["sparsity_at_5"]
    cell = f"{values.median():.1f} [{values.quantile(0.1):.1f}, {values.quantile(0.9):.1f}] (30 draws)"
    md = report.summary_md.read_text(encoding="utf-8")
    assert cell in md, cell  # the references table of `sensitivity`
    curves = report.out_dir / "figures" / "curves_weights__sensitivity.svg"
    assert "random (median, 10–90 % of draws)" in curves.read_text(encoding="utf-8")


def test_protocol_variants_are_ranked_apart(store, report):
    """Trials under the `sum` aggregation and under retrain are other experiments: each label
    has its own table and rank data, the paper's protocol leads, the variant's ranks use its
    own trials only."""
    assert report.labels == ["sensitivity", "retrain", "sensitivity [aggregation=sum]"]
    md = report.summary_md.read_text(encoding="utf-8")
    positions = [md.index(f"## Overall ranking: `{label}` (top 10)") for label in report.labels]
    assert positions == sorted(positions)
    m = trial_metrics(load_trials(store), load_steps(store))
    variant = m[m["protocol_label"] == "sensitivity [aggregation=sum]"]
    assert set(variant["model"]) == {"tiny_resnet"} and variant["signal"].nunique() == 6
    data = pd.read_csv(report.out_dir / "figures" / "mean_ranks__sensitivity--aggregation-sum.csv")
    block = ("task", "seed")  # independent repeats: one block per repeat of the variant's task
    by_block = summarise(collapse_draws(variant), "sparsity_at_5", by=block)
    expected = by_block.groupby("signal")["rank"].mean()
    np.testing.assert_allclose(data.set_index("signal")["mean_rank"], expected.loc[data["signal"]])
    friedman = re.findall(r"Friedman test over (\d+) blocks", md)
    assert friedman == ["6", "4", "3"]  # tasks x repeats of each label: 2 x 3, 2 x 2, 1 x 3
    html = report.index_html.read_text(encoding="utf-8")
    assert html.count("id='top-table'") + html.count('id="top-table"') == 1


def test_aggregation_noise_and_findings_are_reported(report):
    md = report.summary_md.read_text(encoding="utf-8")
    assert "`pooled`: a coupled unit is scored as one channel whose element set is the union" in md
    movers = md[md.index("## Default aggregation against `sum`") :].split("\n## ")[0]
    assert "### tiny_resnet/digits, `sensitivity`" in movers
    for alias in ("best_gradient", "best_weight", "taylor_fo", "l1_filter"):
        assert f"| {alias} |" in movers, alias
    noise = report.noise.set_index("model")
    assert noise.loc["tiny_cnn", "n_test"] == 360
    assert noise.loc["tiny_cnn", "se"] == pytest.approx(100 * np.sqrt(0.99 * 0.01 / 360))
    assert "| tiny_cnn/digits | 99.00 | 360 | 0.52 |" in md
    assert "differences smaller than it are not differences" in md
    assert [f.verdict in ("supported", "not supported", "inconclusive") for f in report.findings] == [
        True
    ] * 4
    section = md[md.index("## The paper's findings") :].split("\n## ")[0]
    for f in report.findings:
        assert f.claim in section and f.summary in section
    assert "Skipped or damaged files: none." in md and "Ok trials without steps: none." in md


def test_degraded_store_still_reports_with_notes(degraded):
    root, result = degraded
    notes = " ".join(result.notes)
    assert "no rank tables" in notes and "one block only" in notes and "one seed" in notes
    assert {"curves_weights__sensitivity", "curves_macs__sensitivity"} <= set(result.figures)
    assert "heatmap__tiny_cnn-digits-sensitivity" in set(result.figures)
    assert not {n for n in result.figures if n.startswith(("cd_", "oracle", "similarity"))}
    assert not {n for n in result.figures if "pooled" in n or n.endswith("__overall")}, "one task: no pooling"
    assert "no seed bands" in notes
    for paths in result.figures.values():
        assert all(p.is_file() for p in paths)
    assert result.index_html.is_file() and len(result.top) == 5
    html = result.index_html.read_text(encoding="utf-8")
    assert "no rank tables" in html and "one block only" in html
    noise = result.noise.set_index("model")
    assert noise.loc["tiny_cnn", "n_test"] == 360


def test_rank_quality_along_the_oracle_trajectory_is_reported(tmp_path):
    root = tmp_path / "store"
    make_store(
        root, models=("tiny_cnn",), signals=[*SIGNALS[:3], "random"], seeds=2, steps=10, oracle_steps=4
    )
    scores, oracle = load_rank_tables(root)
    units = [2 * (24 - k) for k in range(4)]  # 2 seeds x the 24 units less the k the oracle pruned
    assert oracle.groupby("step").size().tolist() == units, "the store must keep every step"
    assert scores.groupby("step").size().tolist() == [4 * n for n in units]
    result = build_report(root, tmp_path / "report", top=3)
    assert "oracle_steps" in result.figures
    md = result.summary_md.read_text(encoding="utf-8")
    section = md[md.index("### Along the oracle's own trajectory") :]
    assert (
        "| signal | ρ at step 0 |" in section and "`activation-taylor2_gn-abs_sum-weights_removed`" in section
    )


def test_damaged_files_and_trials_without_steps_are_listed(tmp_path):
    root = tmp_path / "store"
    make_store(root, models=("tiny_cnn",), signals=SIGNALS[:4], seeds=1, steps=8, rank_tables=False)
    damaged = sorted((root / "steps").glob("*.parquet"))[0]
    damaged.write_bytes(b"not parquet at all")
    with pytest.warns(StoreWarning, match="skipped"):  # the reader says so on stderr; the report too
        result = build_report(root, tmp_path / "report", top=3)
    md = result.summary_md.read_text(encoding="utf-8")
    html = unescape(result.index_html.read_text(encoding="utf-8"))
    section = md[md.index("## Data integrity") :].split("\n## ")[0]
    assert f"| `steps/{damaged.name}` |" in section and "Skipped or damaged files: 1." in section
    assert f"| `{damaged.stem}` |" in section and "Ok trials without steps: 1." in section
    assert f"steps/{damaged.name}" in html and "Ok trials without steps: 1." in html
    assert any("not healthy" in n for n in result.notes)


def test_trials_of_an_older_engine_version_are_left_out_with_a_note(tmp_path):
    """A rerun under a new engine version gives new run_keys next to the old ones: the report
    reads the newest version only, so no signal is counted twice."""
    from analysis.frames import load_trials

    root = tmp_path / "store"
    store = make_store(root, models=("tiny_cnn",), signals=SIGNALS[:4], seeds=2, steps=8, rank_tables=False)
    trials = load_trials(root)
    old = trials.iloc[:3]
    for key in old["run_key"]:  # the same trials again, as an older engine computed them
        row = store.load("trials", filters=[("run_key", "==", key)]).assign(
            run_key=f"{key}-old", trial_version=1
        )
        store.write(
            "steps",
            f"{key}-old",
            store.load("steps", filters=[("run_key", "==", key)]).assign(run_key=f"{key}-old"),
        )
        store.write("trials", f"{key}-old", row)
    assert len(load_trials(root)) == len(trials) and load_trials(root).attrs["older_versions"] == 3
    assert len(load_trials(root, newest_version=False)) == len(trials) + 3
    result = build_report(root, tmp_path / "report", top=3)
    assert any("3 trials computed by an older engine version" in n for n in result.notes)


@pytest.mark.parametrize("make", ["missing", "empty", "only_failed"])
def test_empty_or_missing_store_is_a_clear_error(tmp_path, make):
    root = tmp_path / "store"
    if make != "missing":
        root.mkdir()
    if make == "only_failed":
        Store(root).write_trial({"run_key": "k", "status": "failed", "error": "boom", "signal": "random"}, [])
    with pytest.raises(PrunetaxError, match="does not exist|holds no trials|none with status 'ok'"):
        build_report(root, tmp_path / "out")
    assert not (tmp_path / "out" / "index.html").exists()


def test_bad_arguments_are_clear_errors(store, tmp_path):
    with pytest.raises(PrunetaxError, match="`metric` must be one of .*Did you mean 'sparsity_at_5'"):
        build_report(store, tmp_path, metric="sparsity_at_50")
    with pytest.raises(PrunetaxError, match="`top` must be >= 1"):
        build_report(store, tmp_path, top=0)


def test_cli_report_runs_in_process(tmp_path, capsys):
    root = tmp_path / "store"
    make_store(
        root, models=("tiny_cnn",), signals=SIGNALS[:3] + ["random"], seeds=1, steps=10, rank_tables=False
    )
    assert main(["report", str(root), "--out", str(tmp_path / "r"), "--top", "3"]) == 0
    out = capsys.readouterr().out
    assert "Top 3 signals of the `sensitivity` protocol" in out and str(tmp_path / "r" / "index.html") in out
    assert "test-set SE at the reference accuracy (points): tiny_cnn/digits 0.52" in out
    assert SIGNALS[0] in out or SIGNALS[1] in out
    assert main(["report", str(tmp_path / "nope"), "--out", str(tmp_path / "x")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_short_labels_use_aliases_and_abbreviate():
    assert short_label("activation-taylor2_gn-abs_sum-weights_removed") == "best_gradient"
    assert short_label("activation-taylor2_gn-abs_sum-l1") == "act·taylor2_gn·abs_sum·l1"
    assert short_label("weight-value-sum-l0_active") == "wt·value·sum·l0a"
    assert short_label("random") == "random" and short_label("weird") == "weird"


def test_every_panel_has_tick_labels_and_one_family_gets_several_colours():
    """Four tasks on a 3-column grid (an empty slot under the third panel), five signals of
    one family: every panel labels its ticks; no two lines share a colour."""
    from analysis.plots import accuracy_curves, component_effect_bars

    signals = [f"activation-taylor-{r}-none" for r in ("sum", "l1", "l2", "abs_sum", "sqr_sum")]
    grid = np.arange(0, 60, 10.0)
    bands = pd.DataFrame(
        [
            dict(task=f"t{t}", signal=s, sparsity=x, mean=90 - x * (i + 1) / 5, low=80.0, high=95.0, n=2)
            for t in range(4)
            for i, s in enumerate(signals)
            for x in grid
        ]
    )
    fig = accuracy_curves(bands, order=signals)
    fig.canvas.draw()
    for ax in (a for a in fig.axes if a.get_visible()):
        assert [t.get_text() for t in ax.get_xticklabels() if t.get_visible() and t.get_text()], (
            ax.get_title()
        )
        assert [t.get_text() for t in ax.get_yticklabels() if t.get_visible() and t.get_text()], (
            ax.get_title()
        )
    colours = {line.get_color() for line in fig.axes[0].get_lines()}
    assert len(colours) == len(signals)
    effects = pd.DataFrame(
        dict(
            component=["input", "input", "scaling", "scaling"], option=["weight", "activation", "none", "l1"]
        )
    ).assign(effect=[1.0, -1.0, 0.5, -0.5], ci_low=-2.0, ci_high=2.0)
    fig = component_effect_bars(effects)
    fig.canvas.draw()
    for ax in fig.axes:
        assert [t.get_text() for t in ax.get_xticklabels() if t.get_visible() and t.get_text()]


def test_report_and_plots_never_import_torch():
    code = (
        "import sys; import analysis.report, analysis.plots, analysis.palette; "
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
