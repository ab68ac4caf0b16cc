"""The notebooks in analysis/notebooks run top to bottom, without an error, against a
synthetic store (``PRUNETAX_STORE``), in a python3 kernel of this interpreter; and they
are committed with their outputs cleared."""

from __future__ import annotations

from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat", reason="nbformat is in the `dev` extra: pip install -e '.[dev]'")
nbclient = pytest.importorskip("nbclient", reason="nbclient is in the `dev` extra: pip install -e '.[dev]'")
pytest.importorskip("ipykernel", reason="ipykernel is in the `dev` extra: pip install -e '.[dev]'")

from tests.synthetic_store import make_store  # noqa: E402

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "analysis" / "notebooks").glob("*.ipynb"))
SIGNALS = [
    "activation-taylor2_gn-abs_sum-weights_removed",
    "weight-value-l2-weights_removed",
    "activation-taylor-abs_sum-l2",
    "weight-value-l1-none",
    "activation-taylor-l2-weights_removed",
    "activation-taylor-l1-weights_removed",
    "activation-value-l2-none",
    "random",
    "oracle",
]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return make_store(tmp_path_factory.mktemp("nb_store"), signals=SIGNALS, seeds=2, steps=15).root


def test_both_notebooks_are_there_with_outputs_cleared():
    assert [p.name for p in NOTEBOOKS] == ["01_reproduce_report.ipynb", "02_component_effects.ipynb"]
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, f"{path.name}: clear the outputs"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_against_a_store(path, store, tmp_path, monkeypatch):
    monkeypatch.setenv("PRUNETAX_STORE", str(store))
    monkeypatch.setenv("PRUNETAX_REPORT_OUT", str(tmp_path / "report"))
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        nb,
        kernel_name="python3",
        timeout=120,
        allow_errors=False,
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()  # raises CellExecutionError (with the cell and traceback) on any error
    images = [
        o for c in nb.cells if c.cell_type == "code" for o in c.outputs if "image/png" in o.get("data", {})
    ]
    assert images, f"{path.name} displayed no figure"
    if path.stem.startswith("01"):
        assert (tmp_path / "report" / "index.html").is_file()
