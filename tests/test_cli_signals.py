"""``prunetax signals`` and ``prunetax explain``: in-process (fast) and via the console script."""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from study.cli import main
from taxonomy.aliases import ALIASES

KEYS = {
    "id",
    "input",
    "pointwise",
    "reduction",
    "scaling",
    "class",
    "class_size",
    "representative",
    "rules",
    "aliases",
    "formula",
    "latex",
    "conditional",
}
N_CELLS, N_CLASSES = 630, 437
COUNT_LINE = (
    f"the space has {N_CELLS} cells in {N_CLASSES} distinct classes for a network without coupled units."
)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def records(capsys: pytest.CaptureFixture[str], *argv: str) -> list[dict]:
    code, out, err = run(capsys, "signals", "--format", "json", *argv)
    assert code == 0, err
    data = json.loads(out)
    assert COUNT_LINE in err  # the count line goes to stderr for json, keeping stdout parseable
    return data


def test_json_lists_every_cell(capsys: pytest.CaptureFixture[str]) -> None:
    data = records(capsys)
    assert len(data) == N_CELLS == len({r["id"] for r in data})
    assert all(set(r) == KEYS for r in data)
    row = next(r for r in data if r["id"] == "weight-hessian_gn-sum-none")
    assert row["class"] == "weight-taylor-l2-none" and row["rules"] == "1" and not row["representative"]
    assert sum(r["representative"] for r in data) == N_CLASSES


def test_distinct_lists_one_cell_per_class(capsys: pytest.CaptureFixture[str]) -> None:
    data = records(capsys, "--distinct")
    assert len(data) == N_CLASSES
    assert all(r["representative"] and r["class"] == r["id"] for r in data)
    assert sum(r["class_size"] for r in data) == N_CELLS


@pytest.mark.parametrize(
    ("argv", "count"),
    [
        (["--input", "activation", "--reduction", "abs_sum"], 1 * 9 * 1 * 7),
        (["--scaling", "l2"], 2 * 9 * 5 * 1),
        (["--reduction", "sum,l1", "--pointwise", "taylor"], 2 * 1 * 2 * 7),
        (["--input", " Weight ", "--pointwise", "value,apoz", "--scaling", "none"], 1 * 2 * 5 * 1),
    ],
)
def test_filters(capsys: pytest.CaptureFixture[str], argv: list[str], count: int) -> None:
    data = records(capsys, *argv)
    assert len(data) == count
    wanted = {
        argv[k].lstrip("-"): {v.strip().lower() for v in argv[k + 1].split(",")}
        for k in range(0, len(argv), 2)
    }
    assert all(r[axis] in ids for r in data for axis, ids in wanted.items())


def test_filter_and_distinct_combine(capsys: pytest.CaptureFixture[str]) -> None:
    data = records(capsys, "--pointwise", "hessian_gn", "--distinct")
    # Rule 1 sends hessian_gn sum/l1/abs_sum to taylor-l2: only l2 and sqr_sum stay distinct,
    # under 7 weight scalings and 6 activation ones (rule 4b: l0_active = l0).
    assert {r["reduction"] for r in data} == {"l2", "sqr_sum"} and len(data) == 2 * 7 + 2 * 6


def test_aliases_lists_the_literature_signals(capsys: pytest.CaptureFixture[str]) -> None:
    data = records(capsys, "--aliases")
    assert len(data) == 12
    names = {name for r in data for name in r["aliases"].split(",")}
    assert names == set(ALIASES) and len(names) == 12
    assert {r["id"] for r in data} == {a.spec.id for a in ALIASES.values()}


def test_csv_parses(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "signals", "--format", "csv")
    assert code == 0 and COUNT_LINE in err
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == N_CELLS and set(rows[0]) == KEYS
    taylor_fo = next(r for r in rows if r["aliases"] == "taylor_fo")
    assert taylor_fo["id"] == "activation-taylor-abs_sum-l2" and taylor_fo["representative"] == "True"


def test_table_ends_with_the_count_line(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "signals")
    lines = out.rstrip("\n").splitlines()
    assert code == 0 and lines[0].split()[:2] == ["id", "class"]
    assert len(lines) == 1 + N_CELLS + 1
    assert lines[-1] == f"{N_CELLS} cells shown in {N_CLASSES} equivalence classes; {COUNT_LINE}"
    code, out, _ = run(capsys, "signals", "--input", "activation", "--reduction", "abs_sum")
    assert out.rstrip().splitlines()[-1].startswith("63 cells shown in ")


def test_explain_alias(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "explain", "taylor_fo")
    assert code == 0
    assert out.splitlines()[0] == "activation-taylor-abs_sum-l2"
    assert "Molchanov" in out and "rule 3" in out
    code, out, _ = run(capsys, "explain", "weight-hessian_gn-abs_sum-l1")
    assert code == 0 and "class      weight-taylor-l2-l1 (rules 1)" in out
    code, out, _ = run(capsys, "explain", "random")
    assert code == 0 and "reference signal" in out


def test_explain_typo_exits_2_with_suggestions(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "explain", "activaton-taylr-sum-none")
    assert code == 2 and out == ""
    assert "'activaton'" in err and "'taylr'" in err
    assert "'activation'" in err and "'taylor'" in err


@pytest.mark.parametrize(
    ("argv", "bad", "good"),
    [
        (["--input", "activaton"], "activaton", "activation"),
        (["--scaling", "weight_removed"], "weight_removed", "weights_removed"),
        (["--pointwise", "taylor,hesian_lm"], "hesian_lm", "hessian_lm"),
    ],
)
def test_unknown_filter_value_exits_2(
    capsys: pytest.CaptureFixture[str], argv: list[str], bad: str, good: str
) -> None:
    code, out, err = run(capsys, "signals", *argv)
    assert code == 2 and out == ""
    assert f"got '{bad}'" in err and f"Did you mean '{good}'" in err


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        ([], ["channel-pruning signals", "signals", "explain"]),
        (["signals"], ["List every cell", "--distinct", "--aliases", "--format"]),
        (["explain"], ["Explain a signal", "alias"]),
    ],
)
def test_help(capsys: pytest.CaptureFixture[str], argv: list[str], words: list[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main([*argv, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert all(w in out for w in words), out


def test_bad_usage_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["signals", "--format", "yaml"], [], ["nosuchcommand"]):
        with pytest.raises(SystemExit) as info:
            main(argv)
        assert info.value.code == 2
    capsys.readouterr()


# --------------------------------------------------------------------------------------
# The installed console script, end to end (entry point, exit codes, streams).


def _script() -> str:
    found = shutil.which("prunetax", path=str(Path(sys.executable).parent)) or shutil.which("prunetax")
    assert found, "the `prunetax` console script is not installed next to the interpreter"
    return found


def _console(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([_script(), *argv], capture_output=True, text=True, timeout=60, check=False)


def test_console_script_end_to_end() -> None:
    listing = _console("signals", "--format", "json")
    assert listing.returncode == 0, listing.stderr
    assert len(json.loads(listing.stdout)) == N_CELLS and COUNT_LINE in listing.stderr

    distinct = _console("signals", "--distinct", "--format", "json")
    assert distinct.returncode == 0 and len(json.loads(distinct.stdout)) == N_CLASSES

    typo = _console("explain", "activaton-taylr-sum-none")
    assert typo.returncode == 2 and typo.stdout == ""
    assert typo.stderr.startswith("prunetax explain: error:")
    assert all(w in typo.stderr for w in ("'activaton'", "'taylr'", "'activation'", "'taylor'"))

    helped = _console("--help")
    assert helped.returncode == 0 and "signals" in helped.stdout and "explain" in helped.stdout


# --------------------------------------------------------------------------------------
# Discoverability: partial ids, and what models and datasets there are.


@pytest.mark.parametrize(
    ("text", "lacks"),
    [
        ("activation-taylor-abs_sum", "it lacks its scaling."),
        ("activation-taylor", "it lacks its reduction and scaling."),
        ("taylor-abs_sum-l2", "it lacks its input."),
        ("weight-value-l1", "it lacks its scaling or its reduction."),
    ],
)
def test_explain_a_partial_id_says_which_part_is_missing(
    capsys: pytest.CaptureFixture[str], text: str, lacks: str
) -> None:
    code, out, err = run(capsys, "explain", text)
    assert code == 2 and out == ""
    assert f"signal {text!r} is a partial id: {lacks}" in err and "input-pointwise-reduction-scaling" in err


def test_models_lists_the_registry_with_input_sizes(capsys: pytest.CaptureFixture[str]) -> None:
    from study import models

    code, out, _ = run(capsys, "models")
    assert code == 0 and out.splitlines()[0].split()[:2] == ["model", "input"]
    for name in models.names():
        assert any(line.startswith(name + " ") for line in out.splitlines()), name
    assert "any C, >= 16x16" in next(line for line in out.splitlines() if line.startswith("lenet5 "))
    assert "tv:NAME" in out and "module.path:builder" in out and "tv:resnet18" not in out
    code, out, _ = run(capsys, "models", "--tv")
    assert code == 0 and "  tv:resnet18" in out


def test_datasets_lists_shapes_and_the_other_forms(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, _ = run(capsys, "datasets", "--data-root", str(tmp_path))
    assert code == 0
    rows = {line.split()[0]: line for line in out.splitlines() if line.strip()}
    assert "1x8x8" in rows["digits"] and "1037 / 400 / 360" in rows["digits"]
    assert "1x32x32" in rows["digits32"]
    assert f"files not found under {tmp_path}" in rows["mnist"]
    assert "imagefolder:PATH" in out and "module.path:loader" in out
