"""The documented specs: examples/*.toml dry-run, docs/spec.md documents every key the parser
accepts (its key tables are generated and current), paths resolve against the spec file."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from study.cli import main
from study.sweep.spec import load_spec, parse_spec
from study.sweep.spec_doc import BEGIN, END, documented_keys, reference
from taxonomy.errors import PrunetaxError

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.toml"))
DOC = ROOT / "docs" / "spec.md"


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")} if root.exists() else set()


def test_the_examples_ship():
    names = {p.stem for p in EXAMPLES}
    assert {"minimal", "paper", "retrain", "rank_quality"} <= names


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_each_example_dry_runs_and_writes_nothing(path, capsys):
    spec = load_spec(path)
    watched = {p: _tree(p) for p in (spec.store, spec.cache_dir, ROOT / "examples")}
    assert main(["sweep", str(path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"sweep {spec.name!r} -> store {spec.store}" in out and "trials" in out
    assert {p: _tree(p) for p in watched} == watched


def test_examples_keep_their_results_under_results():
    for path in EXAMPLES:
        if path.stem == "dynamic":  # written by another issue; see its own test
            continue
        spec = load_spec(path)
        assert spec.store.is_relative_to(ROOT / "results"), (path, spec.store)
        assert spec.cache_dir == ROOT / "results" / "models", (path, spec.cache_dir)


def test_dry_run_list_shows_the_signals_per_run_and_network(capsys):
    assert main(["sweep", str(ROOT / "examples" / "rank_quality.toml"), "--dry-run", "--list"]) == 0
    out = capsys.readouterr().out
    assert "[[runs]] #1: sensitivity on digits" in out
    assert "  tiny_cnn (a network without coupled units): " in out
    assert "    activation-taylor-abs_sum-l2  (taylor_fo)" in out and "    random" in out
    assert "[rank_quality]: unit rankings vs the oracle" in out
    # distinct depends on the coupling: the residual network lists its own classes for rank quality
    block = out.split("[rank_quality]")[1]
    assert re.search(r"tiny_resnet \(a network with coupled units.*\): \d+ signals", block)


def test_spec_paths_resolve_against_the_spec_file(tmp_path, monkeypatch):
    folder = tmp_path / "study"
    folder.mkdir()
    text = (
        '[sweep]\nstore = "store"\ncache_dir = "../models"\ndata_root = "data"\nmodels = "tiny_cnn"\n'
        'signals = "l1_filter"\n[[runs]]\n'
    )
    (folder / "s.toml").write_text(text)
    monkeypatch.chdir(tmp_path)
    spec = load_spec("study/s.toml")
    assert spec.store == folder / "store" and spec.cache_dir == tmp_path / "models"
    assert spec.data_root == str(folder / "data")
    assert parse_spec(text).store == Path("store")  # text alone: relative to the current folder


def _generated(text: str) -> str:
    return BEGIN + text.split(BEGIN, 1)[1].split(END, 1)[0] + END


def test_the_key_reference_in_docs_is_current():
    assert _generated(DOC.read_text()) == reference(), (
        "docs/spec.md's key tables are out of date; regenerate them with "
        "`.venv/bin/python -m study.sweep.spec_doc docs/spec.md`"
    )


def _accepted(section_text: str, probe: str = "zz_not_a_key") -> list[str]:
    """The keys the parser accepts where ``probe`` is put (from its unknown-key message)."""
    with pytest.raises(PrunetaxError) as err:
        parse_spec(section_text.replace("PROBE", f"{probe} = 1"))
    found = re.search(r"Valid (?:key|section)s: ([^.]+)\.|valid: ([^.]+)\.", str(err.value))
    assert found, str(err.value)
    return [k.strip() for k in (found.group(1) or found.group(2)).split(",")]


BASE = '[sweep]\nmodels = "tiny_cnn"\nsignals = "random"\n[[runs]]\n'


def test_every_key_the_parser_accepts_is_documented():
    doc = _generated(DOC.read_text())
    parts = re.split(r"^### (.+)$", doc, flags=re.M)[1:]
    tables = dict(zip(parts[::2], parts[1::2], strict=True))
    probes = {
        "`[sweep]`": BASE.replace("[sweep]\n", "[sweep]\nPROBE\n"),
        "`[resources]`": BASE + "[resources]\nPROBE\n",
        "`[[runs]]`": BASE + "PROBE\n",
        "`[rank_quality]`": BASE + "[rank_quality]\nPROBE\n",
        "Signal filter tables (items of `signals`)": BASE.replace('"random"', "[{ PROBE }]"),
    }
    for table, text in probes.items():
        accepted = _accepted(text)
        assert len(accepted) >= 3, (table, accepted)
        for key in accepted:
            assert f"| `{key}` |" in tables[table], (table, key)
    sections = _accepted("PROBE\n" + BASE)
    assert sorted(sections) == ["rank_quality", "resources", "runs", "sweep"]
    every = set().union(*documented_keys().values())
    assert all(f"`{key}`" in doc for key in every)


@pytest.mark.parametrize(("path", "after"), [("README.md", "## Sweeps"), ("docs/spec.md", "## The file")])
def test_the_documented_sweep_example_is_a_valid_spec(path, after):
    text = (ROOT / path).read_text().split(after, 1)[1]
    block = text.split("```toml\n", 1)[1].split("```", 1)[0]
    spec = parse_spec(block, path)
    assert [r.protocol.name for r in spec.runs] == ["sensitivity", "retrain"] and spec.rank_quality


def test_sweep_help_points_at_the_spec_documentation(capsys):
    with pytest.raises(SystemExit):
        main(["sweep", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "docs/spec.md" in out and "study/sweep/spec.py" not in out and "--list" in out
