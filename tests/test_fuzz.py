"""Fuzz tests: the spec parser and every command-line parser raise nothing but PrunetaxError.

Hypothesis mutates a valid spec (text-level edits: values swapped for other TOML values,
keys added, renamed or dropped, lines duplicated, cut or garbled) and builds random command
lines for every subcommand from its own options and a pool of awkward values. Each input
must be accepted or rejected with :class:`PrunetaxError` (argparse's own usage errors exit
with code 2); any other exception is a crash site. Derandomized, so every run tries the
same inputs; bounded to well under a minute together.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import tomllib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from study.cli import build_parser
from study.sweep.plan import expand, signal_listing
from study.sweep.spec import parse_spec
from taxonomy.errors import PrunetaxError

FUZZ = settings(
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)

VALID = """\
[sweep]
name = "fuzz"
store = "store"
cache_dir = "cache"
models = ["tiny_cnn"]
datasets = ["digits"]
base_seeds = [0, 1]
seeds = "base"
signals = ["l1_filter", "random", { input = "activation", pointwise = "taylor", reduction = "l2" }]
signals_per_unit = 8
random_draws = 2
device = "cpu"

[resources]
cpus_per_trial = 1
gpus_per_trial = 0
max_concurrent = 2

[[runs]]
protocol = "sensitivity"
channels_per_step = 0.1
stop_acc = 50

[[runs]]
protocol = "oneshot"
signals = ["taylor_fo"]
targets = [10, 20]

[rank_quality]
signals = ["best_gradient", "random"]
eval_batches = 2
"""

KEYS = sorted(
    {
        "name", "store", "models", "datasets", "base_seeds", "seeds", "signals", "signals_per_unit",
        "random_draws", "cache_dir", "data_root", "device", "download", "cpus_per_trial",
        "gpus_per_trial", "max_concurrent", "protocol", "channels_per_step", "stop_acc", "targets",
        "retrain_steps", "retrain_lr", "eval_batches", "eval_batch_size", "tap", "aggregation",
        "test_interval", "target_sparsity", "stop_drop", "every", "input", "distinct", "sweep", "runs",
    }
)  # fmt: skip
VALUES = [
    "0", "-1", "1", "2", "1e300", "-0.0", "0.5", "nan", "inf", "-inf", "true", "false", '""', '" "',
    '"base"', '"cpu"', '"cuda"', '"tpu"', '"tiny_cnn"', '"lenet5"', '"digits"', '"imagefolder:x"',
    '"retrain"', '"oneshot"', '"pkg.mod:fn"', '"tv:resnet18"', '"random"', '"distinct"', '"all"',
    '"l1_filter"', '"weight-value-l1-none"', '"activation-taylor"', '"../x"', "[]", "[1, 1]", "[true]",
    '["x"]', "[[1]]", '[{ input = 3 }]', '{ input = "weight" }', "{}", '[{ distinct = "yes" }]',
    "1979-05-27", "12:00:00", '"\\u0000"', "[0, 1, 2]", '["distinct", "random"]', "99999999999999999999",
]  # fmt: skip

LINES = VALID.splitlines()


@st.composite
def mutated_specs(draw: st.DrawFn) -> str:
    """A valid spec with 1-4 text-level edits."""
    lines = list(LINES)
    for _ in range(draw(st.integers(1, 4))):
        k = draw(st.integers(0, len(lines) - 1))
        line = lines[k]
        kind = draw(
            st.sampled_from(["value"] * 4 + ["key", "key", "add", "add", "drop", "dup", "garble", "header"])
        )
        if kind == "value" and "=" in line:
            lines[k] = line.split("=", 1)[0] + "= " + draw(st.sampled_from(VALUES))
        elif kind == "key" and "=" in line:
            lines[k] = draw(st.sampled_from(KEYS)) + " =" + line.split("=", 1)[1]
        elif kind == "add":
            lines.insert(k, f"{draw(st.sampled_from(KEYS))} = {draw(st.sampled_from(VALUES))}")
        elif kind == "drop":
            del lines[k]
        elif kind == "dup":
            lines.insert(k, line)
        elif kind == "garble" and line:
            i = draw(st.integers(0, len(line) - 1))
            lines[k] = line[:i] + draw(st.text(max_size=3)) + line[i + 1 :]
        elif kind == "header":
            lines.insert(
                k, draw(st.sampled_from(["[sweep]", "[[runs]]", "[resources]", "[rank_quality]", "[x]"]))
            )
        lines = lines or [""]
    return "\n".join(lines) + "\n"


def _key(name: str) -> str:
    return name if re.fullmatch(r"[A-Za-z0-9_-]+", name) else json.dumps(name)


def _toml(value: object) -> str:
    """A TOML literal (the parts of TOML these tests generate)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return {"nan": "nan", "inf": "inf", "-inf": "-inf"}.get(repr(value), repr(value))
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(map(_toml, value)) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_key(k)} = {_toml(v)}" for k, v in value.items()) + " }"
    return str(value)


def _dump(doc: dict) -> str:
    lines = [f"{_key(k)} = {_toml(v)}" for k, v in doc.items() if not _is_table(v)]
    for k, v in doc.items():
        tables = [v] if isinstance(v, dict) else v if _is_table(v) else []
        for t in tables:
            lines.append(f"[[{_key(k)}]]" if isinstance(v, list) else f"[{_key(k)}]")
            lines += [f"{_key(key)} = {_toml(x)}" for key, x in t.items()]
    return "\n".join(lines) + "\n"


def _is_table(v: object) -> bool:
    return isinstance(v, dict) or (isinstance(v, list) and bool(v) and all(isinstance(x, dict) for x in v))


SCALARS = (
    st.booleans()
    | st.integers(-3, 3)
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from([json.loads(v) if v.startswith('"') else v for v in VALUES if v.startswith('"')])
    | st.text(max_size=8)
)
TOML_VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(KEYS), inner, max_size=3),
    max_leaves=6,
)


@st.composite
def mutated_documents(draw: st.DrawFn) -> str:
    """The valid spec as data, with 1-3 keys of some table set to any TOML value or removed."""
    doc = tomllib.loads(VALID)
    for _ in range(draw(st.integers(1, 3))):
        runs = doc.get("runs") if isinstance(doc.get("runs"), list) else []
        tables = [doc, doc.get("sweep"), doc.get("resources"), doc.get("rank_quality"), *runs]
        table = draw(st.sampled_from([t for t in tables if isinstance(t, dict)]))
        key = draw(st.sampled_from(sorted(table) + KEYS))
        if draw(st.booleans()) and key in table:
            del table[key]
        else:
            table[key] = draw(TOML_VALUES)
    return _dump(doc)


def test_the_unmutated_spec_is_valid():
    spec = parse_spec(VALID, "fuzz.toml")
    assert len(spec.runs) == 2 and expand(spec)


@settings(FUZZ, max_examples=500)
@given(text=mutated_specs() | mutated_documents())
def test_spec_parser_raises_only_prunetax_errors(text):
    try:
        spec = parse_spec(text, "fuzz.toml")
    except PrunetaxError:
        return
    expand(spec)  # a spec that parses also expands (and lists) without a crash
    signal_listing(spec)


# -- every command-line parser ------------------------------------------------------------


def _commands() -> dict[str, argparse.ArgumentParser]:
    """Every (sub)command's parser, by its command words ("store verify")."""
    out = {}

    def walk(parser: argparse.ArgumentParser, words: tuple[str, ...]) -> None:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs:
            out[" ".join(words)] = parser
        for sub in subs:
            for name, child in sub.choices.items():
                walk(child, (*words, name))

    walk(PARSER, ())
    return out


PARSER = build_parser()
COMMANDS = _commands()
ARG_VALUES = [
    "0", "-1", "1", "3", "0.5", "1e9", "nan", "inf", "", " ", ",", "a,b", "x", "tiny_cnn", "lenet5",
    "resnet2O", "digits", "mnist", "imagefolder:/nonexistent", "cpu", "cuda", "cuda:63", "tpu",
    "sensitivity", "retrain", "oneshot", "all", "distinct", "random", "l1_filter", "taylor_fo",
    "weight-value-l1-none", "activation-taylor-abs_sum", "activation,weight", "output", "pooled",
    "/nonexistent/spec.toml", "examples/minimal.toml", "results/x.parquet", "--help-not", "10,20",
    "20,abc",
]  # fmt: skip


def _options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if a.option_strings and not isinstance(a, argparse._HelpAction)]


def _value(draw: st.DrawFn, action: argparse.Action) -> str:
    """An awkward value: one of the option's choices, one of the pool, or any short text."""
    pools = [st.sampled_from(ARG_VALUES), st.text(max_size=6)]
    if action.choices:
        pools.append(st.sampled_from([str(c) for c in action.choices]))
    return draw(st.one_of(*pools))


@st.composite
def command_lines(draw: st.DrawFn) -> list[str]:
    """A subcommand, its required options and some others, with awkward values."""
    name = draw(st.sampled_from(sorted(COMMANDS)))
    parser = COMMANDS[name]
    argv = name.split()
    argv += [_value(draw, a) for a in parser._actions if not a.option_strings]
    options = _options(parser)
    chosen = [a for a in options if a.required]
    chosen += draw(st.lists(st.sampled_from(options), max_size=4)) if options else []
    for action in chosen:
        argv.append(action.option_strings[-1])
        if action.nargs != 0:
            argv.append(_value(draw, action))
    return argv


def test_every_command_is_fuzzed():
    assert {"run", "scores", "sweep", "train", "signals", "explain", "report", "demo", "models"} <= set(
        COMMANDS
    )
    assert any(name.startswith("store ") for name in COMMANDS)


@settings(FUZZ, max_examples=500)
@given(argv=command_lines())
def test_command_line_parsers_raise_only_prunetax_errors(argv, capsys):
    """Parse, then validate what was asked (a command's ``validate``: it reads and writes nothing)."""
    try:
        args = PARSER.parse_args(argv)
    except SystemExit as stop:
        assert stop.code == 2, (argv, stop.code)
        return
    finally:
        capsys.readouterr()
    validate = getattr(args, "validate", None)
    if validate is None:
        return
    with contextlib.suppress(PrunetaxError):
        validate(args)
    capsys.readouterr()


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_has_a_working_help(name, capsys):
    with pytest.raises(SystemExit) as stop:
        PARSER.parse_args([*name.split(), "--help"])
    assert stop.value.code == 0 and "usage: prunetax " + name in capsys.readouterr().out
