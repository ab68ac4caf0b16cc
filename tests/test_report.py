"""analysis.report, analysis.plots and ``prunetax report`` on synthetic stores: every
figure written (PNG + SVG), the documents, the top table against the API computed
directly, degraded stores (no rank tables, one task, one seed), clear errors."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from analysis.frames import load_steps, load_trials
from analysis.metrics import overall_ranking, summarise, trial_metrics
from analysis.plots import FORMATS, short_label
from analysis.report import build_report
from study.cli import main
from study.store import Store
from taxonomy.errors import PrunetaxError
from tests.synthetic_store import make_store

ROOT = Path(__file__).resolve().parents[1]
SIGNALS = [
    "activation-taylor2_gn-abs_sum-weights_removed",  # best_gradient
    "weight-value-l2-weights_removed",  # best_weight
    "activation-taylor-abs_sum-l2",  # taylor_fo
    "weight-value-l1-none",  # l1_filter
    "activation-taylor-l2-weights_removed",
    "activation-value-l2-none",
    "weight-gradient-l1-l2",
    "activation-apoz-sum-l0",  # apoz
    "weight-taylor-abs_sum-l2",
    "activation-value-abs_sum-weights_removed",
    "random",
    "oracle",
]
TASKS = ("tiny_cnn-digits-sensitivity", "tiny_resnet-digits-sensitivity")


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Store:
    return make_store(tmp_path_factory.mktemp("store"), signals=SIGNALS, seeds=3, steps=25)


@pytest.fixture(scope="module")
def report(store, tmp_path_factory):
    return build_report(store, tmp_path_factory.mktemp("report"), top=10)


@pytest.fixture(scope="module")
def degraded(tmp_path_factory):
    """One task, one seed, no rank tables: what a first quick run looks like."""
    root = tmp_path_factory.mktemp("degraded")
    make_store(
        root, models=("tiny_cnn",), signals=SIGNALS[:5] + ["random"], seeds=1, steps=20, rank_tables=False
    )
    return root, build_report(root, root / "report", top=5)


def test_every_figure_is_written_as_png_and_svg(report):
    expected = {"cd_diagram", "curves_weights", "curves_macs", "heatmap__overall", "effects__overall"}
    expected |= {f"{kind}__{task}" for kind in ("heatmap", "effects") for task in TASKS}
    expected |= {f"{kind}__tiny_{m}-digits" for kind in ("oracle", "similarity") for m in ("cnn", "resnet")}
    assert set(report.figures) == expected, report.notes
    for name, paths in report.figures.items():
        assert [p.suffix for p in paths] == [f".{f}" for f in FORMATS]
        for path in paths:
            assert path.is_file() and path.stat().st_size > 1000, path
        assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        assert b"<svg" in paths[1].read_bytes()[:2000], name


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
        "Overall ranking (top 10)",
        "Top 10 per task",
        "Friedman test",
        "Wilcoxon signed-rank + Holm: top signals vs the best",
        "Wilcoxon signed-rank + Holm: top signals vs `random`",
        "Component effects",
        "Rank stability across seeds (Kendall's W)",
        "Rank quality against the oracle",
        "Literature signals and references",
    ):
        assert heading in md, heading
    assert md.count("How to read") == 0 and html.count("How to read:") == len(report.figures)


def test_top_table_matches_the_summary_computed_directly(store, report):
    m = trial_metrics(load_trials(store), load_steps(store))
    ranking = overall_ranking(summarise(m, "sparsity_at_5", by=("task",)))
    pooled = summarise(m, "sparsity_at_5", by=()).set_index("signal")
    top = report.top
    assert len(top) == 10
    assert list(top["signal"]) == list(ranking["signal"].head(10))
    assert list(top["rank"]) == list(range(1, 11))
    np.testing.assert_allclose(top["mean_rank"], ranking["mean_rank"].head(10))
    for col in ("geomean", "mean", "std", "ci_low", "ci_high", "dist", "n_seeds"):
        np.testing.assert_allclose(
            top[col], pooled.loc[top["signal"], col].to_numpy(dtype=float), err_msg=col
        )
    assert set(top.loc[top["signal"] == SIGNALS[0], "alias"]) == {"best_gradient"}
    md = report.summary_md.read_text(encoding="utf-8")
    first = top.iloc[0]
    assert f"| 1 | `{first['signal']}` |" in md and f"{first['geomean']:.1f}" in md


def test_degraded_store_still_reports_with_notes(degraded):
    root, result = degraded
    notes = " ".join(result.notes)
    assert "no rank tables" in notes and "one task only" in notes and "one seed" in notes
    assert {"curves_weights", "curves_macs", "heatmap__tiny_cnn-digits-sensitivity"} <= set(result.figures)
    assert not {n for n in result.figures if n.startswith(("cd_", "oracle", "similarity"))}
    assert not {n for n in result.figures if n.endswith("__overall")}, "one task: no 'overall' duplicate"
    assert "no seed bands" in notes
    for paths in result.figures.values():
        assert all(p.is_file() for p in paths)
    assert result.index_html.is_file() and len(result.top) == 5
    html = result.index_html.read_text(encoding="utf-8")
    assert "no rank tables" in html and "one task only" in html


@pytest.fixture(scope="module")
def two_protocols(tmp_path_factory):
    """Like the demo: every signal under sensitivity, a few of them under retrain too."""
    root = tmp_path_factory.mktemp("two_protocols")
    make_store(root, signals=SIGNALS, seeds=2, steps=20)
    make_store(root, signals=[*SIGNALS[:4], "random"], seeds=2, steps=20, protocol="retrain", seed=1)
    return root, build_report(root, root / "report", top=5)


def test_protocols_are_ranked_apart(two_protocols):
    """A mean rank over tasks only compares signals that met the same competitors: the
    headline table ranks the protocol with the most signals over its own tasks; the retrain
    signals get a table, a Friedman test and a CD diagram of their own."""
    root, result = two_protocols
    m = trial_metrics(load_trials(root), load_steps(root))
    sens = m[m["protocol"] == "sensitivity"]
    by_task = summarise(sens, "sparsity_at_5", by=("task",))
    ranking = overall_ranking(by_task)
    pooled = summarise(sens, "sparsity_at_5", by=()).set_index("signal")
    assert result.protocol == "sensitivity" and result.protocols == 2
    assert list(result.top["signal"]) == list(ranking["signal"].head(5))
    np.testing.assert_allclose(result.top["mean_rank"], ranking["mean_rank"].head(5))
    np.testing.assert_allclose(result.top["geomean"], pooled.loc[result.top["signal"], "geomean"])
    assert {"cd_diagram__sensitivity", "cd_diagram__retrain"} <= set(result.figures)
    md = result.summary_md.read_text(encoding="utf-8")
    for heading in (
        "Overall ranking: `sensitivity` protocol (top 5)",
        "Overall ranking: `retrain` protocol (top 5)",
    ):
        assert f"## {heading}" in md
    assert md.index("`sensitivity` protocol (top 5)") < md.index("`retrain` protocol (top 5)")
    assert md.count("Friedman test over 2 task blocks") == 2
    assert not [n for n in result.notes if "missing from some task" in n], result.notes
    html = result.index_html.read_text(encoding="utf-8")
    assert html.count("id='top-table'") + html.count('id="top-table"') == 1


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
    assert "Top 3 signals overall" in out and str(tmp_path / "r" / "index.html") in out
    assert SIGNALS[0] in out or SIGNALS[1] in out
    assert main(["report", str(tmp_path / "nope"), "--out", str(tmp_path / "x")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_short_labels_use_aliases_and_abbreviate():
    assert short_label("activation-taylor2_gn-abs_sum-weights_removed") == "best_gradient"
    assert short_label("activation-taylor2_gn-abs_sum-l1") == "act·taylor2_gn·abs_sum·l1"
    assert short_label("weight-value-sum-l0_active") == "wt·value·sum·l0a"
    assert short_label("random") == "random" and short_label("weird") == "weird"


def test_report_and_plots_never_import_torch():
    code = (
        "import sys; import analysis.report, analysis.plots, analysis.palette; "
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
