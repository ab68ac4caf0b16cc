"""Dependencies point one way (ARCHITECTURE.md): taxonomy -> torch only; study -> taxonomy;
analysis -> study.store / study.curves (torch-free) and never torch. The CLI in
``study.cli`` is the composition root and may import ``analysis`` lazily."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIRST_PARTY = {"taxonomy", "study", "analysis"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
    return out


def _package_imports(package: str) -> dict[Path, set[str]]:
    return {p: _imports(p) for p in (ROOT / package).rglob("*.py")}


def test_taxonomy_imports_only_torch_and_itself():
    for path, mods in _package_imports("taxonomy").items():
        first = {m.split(".")[0] for m in mods} & FIRST_PARTY
        assert first <= {"taxonomy"}, (path, first)


def test_study_never_imports_analysis_outside_the_cli():
    for path, mods in _package_imports("study").items():
        if "cli" in path.relative_to(ROOT).parts:
            continue
        assert not any(m.split(".")[0] == "analysis" for m in mods), path


def test_analysis_reads_only_the_torch_free_part_of_study():
    allowed = {"study.store", "study.store.io", "study.store.schema", "study.curves"}
    for path, mods in _package_imports("analysis").items():
        study = {m for m in mods if m.split(".")[0] == "study"}
        assert study <= allowed, (path, study - allowed)
        assert not any(m.split(".")[0] == "torch" for m in mods), path


def test_store_and_analysis_import_without_torch():
    code = (
        "import sys, importlib; [importlib.import_module(m) for m in "
        "('study.store', 'study.curves', 'analysis')]; "
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_cli_help_does_not_import_torch():
    code = "import sys; from study.cli import build_parser; build_parser(); assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
