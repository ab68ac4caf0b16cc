"""A corpus of bad inputs to every command: each is rejected before anything runs.

Every case must end with exit code 2, no traceback, a message on stderr that names the
culprit and where it was given (the option, or the spec's table, key and line), and not
one byte written: the whole work folder (store, cache, outputs, the current folder) is
compared before and after. Execution entry points are replaced by tripwires, so a case
that slipped through validation fails at once instead of training or running anything.
"""

from __future__ import annotations

import hashlib
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from study.cli import main
from study.protocols import PROTOCOLS

SPEC = """\
[sweep]
name = "t"
store = "store"
cache_dir = "cache"
models = ["tiny_cnn"]
signals = ["l1_filter", "random"]

[resources]
cpus_per_trial = 1

[[runs]]
protocol = "sensitivity"
channels_per_step = 0.1
"""
# line numbers in SPEC: 2 name, 3 store, 4 cache_dir, 5 models, 6 signals, 8 [resources],
# 9 cpus_per_trial, 11 [[runs]], 12 protocol, 13 channels_per_step; appended lines start at 14


@dataclass(frozen=True)
class Case:
    """``argv`` (``{ws}`` is the work folder), the texts stderr must hold, and what to set up."""

    name: str
    argv: tuple[str, ...]
    needles: tuple[str, ...]
    spec: str | None = None  # written to {ws}/spec.toml (bytes if it starts with b:)
    setup: str = ""  # names of set-up steps, comma-separated


def case(name: str, argv: str, *needles: str, spec: str | None = None, setup: str = "") -> Case:
    return Case(name, tuple(argv.split()), needles, spec, setup)


def spec_case(name: str, text: str, *needles: str, setup: str = "", extra: str = "") -> Case:
    return case(name, f"sweep {{ws}}/spec.toml {extra}".strip(), *needles, spec=text, setup=setup)


def edit(old: str, new: str) -> str:
    assert old in SPEC, old
    return SPEC.replace(old, new)


def add(lines: str) -> str:
    return SPEC + textwrap.dedent(lines)


RUN = "run --store {ws}/store --cache-dir {ws}/cache"
SCORES = "scores --checkpoint {ws}/ckpt.pt --out {ws}/out/s.parquet --cache-dir {ws}/cache"

SPEC_TYPES = [
    spec_case(
        "cpus as text",
        edit("cpus_per_trial = 1", 'cpus_per_trial = "1"'),
        "[resources].cpus_per_trial (line 9)",
        "'1'",
    ),
    spec_case("store a number", edit('store = "store"', "store = 5"), "[sweep].store (line 3)", "got 5"),
    spec_case(
        "cache_dir a number",
        edit('cache_dir = "cache"', "cache_dir = 1"),
        "[sweep].cache_dir (line 4)",
        "a path",
    ),
    spec_case(
        "signals a number",
        edit('signals = ["l1_filter", "random"]', "signals = 0"),
        "[sweep].signals (line 6)",
        "got 0",
    ),
    spec_case(
        "filter input a number",
        edit('["l1_filter", "random"]', "[{ input = 3 }]"),
        "[sweep].signals (line 6)",
        "`input`",
    ),
    spec_case(
        "filter unknown key",
        edit('["l1_filter", "random"]', '[{ inptu = "weight" }]'),
        "[sweep].signals (line 6)",
        "inptu",
    ),
    spec_case(
        "filter selects nothing",
        edit(
            '["l1_filter", "random"]',
            '[{ input = "activation", scaling = "l0_active", distinct = true }]',
        ),
        "[sweep].signals (line 6)",
        "selects no signal",
    ),
    spec_case(
        "targets as text",
        add('[[runs]]\nprotocol = "oneshot"\ntargets = "abc"\n'),
        "[[runs]] #2.targets (line 16)",
        "'abc'",
    ),
    spec_case(
        "targets as one string",
        add('[[runs]]\nprotocol = "oneshot"\ntargets = "10"\n'),
        "[[runs]] #2.targets (line 16)",
        "'10'",
    ),
    spec_case(
        "sweep is a number",
        "sweep = 5\n" + SPEC[SPEC.index("[resources]") :],
        "[sweep] (line 1)",
        "must be a table",
    ),
    spec_case(
        "runs is a list of numbers",
        "runs = [1]\n" + SPEC[: SPEC.index("[[runs]]")],
        "[[runs]] #1 (line 1)",
        "must be a table",
    ),
    spec_case(
        "download as text",
        edit('name = "t"', 'name = "t"\ndownload = "no"'),
        "[sweep].download (line 3)",
        "'no'",
    ),
    spec_case(
        "true as a seed",
        edit('name = "t"', 'name = "t"\nbase_seeds = [0, true]'),
        "[sweep].base_seeds (line 3)",
        "True",
    ),
    spec_case(
        "negative seed", edit('name = "t"', 'name = "t"\nseeds = [-1]'), "[sweep].seeds (line 3)", "-1"
    ),
    spec_case(
        "seed twice",
        edit('name = "t"', 'name = "t"\nbase_seeds = [1, 1]'),
        "[sweep].base_seeds (line 3)",
        "more than once",
    ),
    spec_case("stop_acc true", add("stop_acc = true\n"), "[[runs]] #1.stop_acc (line 14)", "True"),
    spec_case("stop_acc above 100", add("stop_acc = 140\n"), "[[runs]] #1.stop_acc (line 14)", "<= 100"),
    spec_case(
        "nan cpus",
        edit("cpus_per_trial = 1", "cpus_per_trial = nan"),
        "[resources].cpus_per_trial (line 9)",
        "nan",
    ),
    spec_case(
        "inf gpus",
        edit("cpus_per_trial = 1", "gpus_per_trial = inf"),
        "[resources].gpus_per_trial (line 9)",
        "inf",
    ),
    spec_case(
        "negative gpus",
        edit("cpus_per_trial = 1", "gpus_per_trial = -1"),
        "[resources].gpus_per_trial (line 9)",
        ">= 0",
    ),
    spec_case(
        "max_concurrent -2",
        edit("cpus_per_trial = 1", "max_concurrent = -2"),
        "[resources].max_concurrent (line 9)",
        "-2",
    ),
    spec_case(
        "retrain_lr 0",
        add('[[runs]]\nprotocol = "retrain"\nretrain_lr = 0\n'),
        "[[runs]] #2.retrain_lr (line 16)",
        "> 0",
    ),
    spec_case(
        "retrain_lr negative",
        add('[[runs]]\nprotocol = "retrain"\nretrain_lr = -0.1\n'),
        "[[runs]] #2.retrain_lr (line 16)",
        "-0.1",
    ),
    spec_case(
        "retrain_steps as text",
        add('[[runs]]\nprotocol = "retrain"\nretrain_steps = "20"\n'),
        "[[runs]] #2.retrain_steps (line 16)",
        "'20'",
    ),
    spec_case(
        "channels_per_step 2.5",
        add("[[runs]]\nchannels_per_step = 2.5\n"),
        "[[runs]] #2.channels_per_step (line 15)",
        "whole count",
    ),
    spec_case(
        "device tpu", edit('name = "t"', 'name = "t"\ndevice = "tpu"'), "[sweep].device (line 3)", "'tpu'"
    ),
    spec_case(
        "cuda without gpus",
        edit('name = "t"', 'name = "t"\ndevice = "cuda"'),
        "[sweep].device (line 3)",
        "gpus_per_trial",
    ),
    spec_case(
        "gpus without cuda",
        edit("cpus_per_trial = 1", "gpus_per_trial = 0.5"),
        "[sweep].device",
        "gpus_per_trial is 0.5",
    ),
    spec_case("name with a slash", edit('name = "t"', 'name = "../x"'), "[sweep].name (line 2)", "'../x'"),
    spec_case(
        "random_draws 0",
        edit('name = "t"', 'name = "t"\nrandom_draws = 0'),
        "[sweep].random_draws (line 3)",
        ">= 1",
    ),
    spec_case(
        "signals_per_unit float",
        edit('name = "t"', 'name = "t"\nsignals_per_unit = 1.5'),
        "[sweep].signals_per_unit (line 3)",
        "1.5",
    ),
]

SPEC_MEANING = [
    spec_case("not UTF-8", "b:" + SPEC.replace('name = "t"', 'name = "t\xe9"'), "spec.toml", "UTF-8", "0xe9"),
    spec_case("not TOML", SPEC + "[resources\n", "spec.toml", "not valid TOML"),
    spec_case("unknown section", add("[bogus]\n"), "[bogus] (line 14)", "unknown section"),
    spec_case(
        "unknown sweep key",
        edit('name = "t"', 'name = "t"\nmodel = "tiny_cnn"'),
        "[sweep].model (line 3)",
        "'models'",
    ),
    spec_case(
        "unknown run key", add("retrain_step = 3\n"), "[[runs]] #1.retrain_step (line 14)", "'retrain_steps'"
    ),
    spec_case(
        "typo in [sweep].signals",
        edit('"l1_filter", "random"', '"l1_filtr", "random"'),
        "[sweep].signals (line 6)",
        "'l1_filter'",
    ),
    spec_case(
        "alias and its id",
        edit('"l1_filter", "random"', '"l1_filter", "weight-value-l1-none"'),
        "[sweep].signals (line 6)",
        "twice",
    ),
    spec_case(
        "partial id",
        edit('"l1_filter", "random"', '"activation-taylor-abs_sum"'),
        "[sweep].signals (line 6)",
        "lacks its scaling",
    ),
    spec_case(
        "retrain_steps of another protocol",
        add("retrain_steps = 20\n"),
        "[[runs]] #1.retrain_steps (line 14)",
        "retrain, characterise",
    ),
    spec_case(
        "no protocol but retrain_steps",
        add("[[runs]]\nretrain_steps = 20\n"),
        "[[runs]] #2.retrain_steps (line 15)",
        "no `protocol` key",
    ),
    spec_case("targets in a greedy run", add("targets = [10]\n"), "[[runs]] #1.targets (line 14)", "oneshot"),
    spec_case(
        "unknown protocol",
        edit('protocol = "sensitivity"', 'protocol = "sensitivty"'),
        "[[runs]] #1.protocol (line 12)",
        "'sensitivity'",
    ),
    spec_case(
        "unknown model",
        edit('models = ["tiny_cnn"]', 'models = ["resnet2O"]'),
        "[sweep].models (line 5)",
        "resnet20",
    ),
    spec_case(
        "unknown dataset",
        edit('models = ["tiny_cnn"]', 'models = ["tiny_cnn"]\ndatasets = ["cifar11"]'),
        "[sweep].datasets (line 6)",
        "cifar10",
    ),
    spec_case(
        "run widens models", add('models = ["tiny_resnet"]\n'), "[[runs]] #1.models (line 14)", "only narrow"
    ),
    spec_case("no models", edit('models = ["tiny_cnn"]\n', ""), "[sweep].models", "is required"),
    spec_case("no runs", SPEC[: SPEC.index("[[runs]]")], "[[runs]]", "is required"),
    spec_case(
        "no signals anywhere",
        edit('signals = ["l1_filter", "random"]\n', ""),
        "[[runs]] #1",
        "`signals` is required",
    ),
    spec_case(
        "rank_quality unknown key",
        add("[rank_quality]\neval_batch = 3\n"),
        "[rank_quality].eval_batch (line 15)",
        "'eval_batches'",
    ),
    spec_case(
        "rank_quality bad value",
        add("[rank_quality]\neval_batches = 0\n"),
        "[rank_quality].eval_batches (line 15)",
        ">= 1",
    ),
    case("spec is a folder", "sweep {ws}/out", "no sweep spec", "a folder"),
    case("spec missing", "sweep {ws}/nothing.toml", "no sweep spec", "nothing.toml"),
]

SPEC_ENVIRONMENT = [
    spec_case(
        "store is a file", edit('store = "store"', 'store = "afile"'), "[sweep].store (line 3)", "is a file"
    ),
    spec_case(
        "cache_dir is a file",
        edit('cache_dir = "cache"', 'cache_dir = "afile"'),
        "[sweep].cache_dir (line 4)",
        "is a file",
    ),
    spec_case(
        "store under a file",
        edit('store = "store"', 'store = "afile/store"'),
        "[sweep].store (line 3)",
        "cannot be created",
    ),
    spec_case(
        "lenet5 on 8x8 digits",
        edit('models = ["tiny_cnn"]', 'models = ["lenet5"]'),
        "[sweep].models (line 5)",
        "lenet5",
        "1x8x8",
    ),
    spec_case(
        "missing dataset files",
        edit('models = ["tiny_cnn"]', 'models = ["tiny_cnn"]\ndatasets = ["mnist"]\ndata_root = "data"'),
        "[sweep].datasets (line 6)",
        "'mnist' not found",
    ),
    spec_case(
        "empty imagefolder",
        edit('models = ["tiny_cnn"]', 'models = ["tiny_cnn"]\ndatasets = ["imagefolder:{ws}/emptyfolder"]'),
        "[sweep].datasets (line 6)",
        "no images",
    ),
    spec_case(
        "eval split too small", add("eval_batch_size = 300\n"), "[[runs]] #1.eval_batch_size (line 14)", "400"
    ),
    spec_case(
        "rank_quality eval split",
        add("[rank_quality]\neval_batch_size = 1000\n"),
        "[rank_quality].eval_batch_size (line 15)",
        "400",
    ),
    spec_case(
        "too many units per step",
        add("[[runs]]\nchannels_per_step = 100000\n"),
        "[[runs]] #2.channels_per_step (line 15)",
        "100000",
    ),
    spec_case(
        "no such cuda device",
        edit('name = "t"', 'name = "t"\ndevice = "cuda:63"').replace(
            "cpus_per_trial = 1", "gpus_per_trial = 1"
        ),
        "[sweep].device (line 3)",
        "'cuda:63'",
    ),
    spec_case(
        "cached base model is empty",
        SPEC,
        "[sweep].cache_dir",
        "not a readable checkpoint",
        setup="empty_cached",
    ),
    spec_case(
        "cached base model lacks a layer",
        SPEC,
        "[sweep].cache_dir",
        "missing features",
        setup="partial_cached",
    ),
    spec_case(
        "dry run checks the environment",
        edit('store = "store"', 'store = "afile"'),
        "[sweep].store (line 3)",
        "is a file",
        extra="--dry-run",
    ),
]

SWEEP_ARGS = [
    case("num-cpus -1", "sweep {ws}/spec.toml --num-cpus -1", "--num-cpus", "'-1'", spec=SPEC),
    case("num-cpus 0", "sweep {ws}/spec.toml --num-cpus 0", "--num-cpus", ">= 1", spec=SPEC),
    case("num-cpus not a number", "sweep {ws}/spec.toml --num-cpus two", "--num-cpus", "'two'", spec=SPEC),
    case("list without dry run", "sweep {ws}/spec.toml --list", "--list", "--dry-run", spec=SPEC),
    case(
        "num-cpus with an address",
        "sweep {ws}/spec.toml --num-cpus 2 --address auto",
        "--num-cpus",
        "--address",
        spec=SPEC,
    ),
]

RUN_ARGS = [
    case("run seed -1", RUN + " --signal l1_filter --seed -1", "--seed", "'-1'"),
    case("run base seed text", RUN + " --signal l1_filter --base-seed x", "--base-seed", "'x'"),
    case("run random draws 0", RUN + " --signal random --random-draws 0", "--random-draws", ">= 1"),
    case("run threads 0", RUN + " --signal l1_filter --threads 0", "--threads", ">= 1"),
    case("run device tpu", RUN + " --signal l1_filter --device tpu", "--device", "'tpu'"),
    case("run empty signal", RUN + " --signal ,", "--signal", "comma-separated"),
    case("run no signal", RUN, "--signal", "required"),
    case("run unknown signal", RUN + " --signal foo", "--signal", "signal 'foo'"),
    case("run partial id", RUN + " --signal activation-taylor-abs_sum", "--signal", "lacks its scaling"),
    case(
        "run alias and its id", RUN + " --signal l1_filter --signal weight-value-l1-none", "--signal", "twice"
    ),
    case(
        "run alias and its id in one list",
        RUN + " --signal l1_filter,weight-value-l1-none",
        "--signal",
        "twice",
    ),
    case(
        "run option of another protocol",
        RUN + " --signal l1_filter --protocol sensitivity --retrain-steps 5",
        "--retrain-steps",
        "retrain, characterise",
    ),
    case("run targets on greedy", RUN + " --signal l1_filter --targets 10,20", "--targets", "oneshot"),
    case(
        "run channels 2.5", RUN + " --signal l1_filter --channels-per-step 2.5", "--channels-per-step", "2.5"
    ),
    case(
        "run targets not numbers",
        RUN + " --signal l1_filter --protocol oneshot --targets a,b",
        "--targets",
        "'a,b'",
    ),
    case("run stop-acc 140", RUN + " --signal l1_filter --stop-acc 140", "--stop-acc", "<= 100"),
    case("run stop-acc nan", RUN + " --signal l1_filter --stop-acc nan", "--stop-acc", "nan"),
    case(
        "run retrain-lr 0",
        RUN + " --signal l1_filter --protocol retrain --retrain-lr 0",
        "--retrain-lr",
        "> 0",
    ),
    case("run bad tap", RUN + " --signal l1_filter --tap input", "--tap", "'input'"),
    case(
        "run unknown protocol",
        RUN + " --signal l1_filter --protocol sensitivty",
        "--protocol",
        "'sensitivity'",
    ),
    case("run unknown model", RUN + " --signal l1_filter --model resnet2O", "--model", "resnet20"),
    case("run unknown dataset", RUN + " --signal l1_filter --dataset cifar11", "--dataset", "cifar10"),
]

RUN_ENVIRONMENT = [
    case(
        "run too many units per step",
        RUN + " --signal l1_filter --channels-per-step 100000",
        "--channels-per-step",
        "100000",
    ),
    case(
        "run eval split too small",
        RUN + " --signal l1_filter --eval-batch-size 100000",
        "--eval-batch-size",
        "400",
    ),
    case("run lenet5 on digits", RUN + " --signal l1_filter --model lenet5", "--model", "lenet5", "1x8x8"),
    case("run no such cuda", RUN + " --signal l1_filter --device cuda:63", "--device", "'cuda:63'"),
    case(
        "run missing data files",
        RUN + " --signal l1_filter --dataset mnist --data-root {ws}/data",
        "--dataset",
        "'mnist' not found",
    ),
    case(
        "run imagefolder missing",
        RUN + " --signal l1_filter --dataset imagefolder:{ws}/nowhere",
        "--dataset",
        "not found",
    ),
    case(
        "run imagefolder empty",
        RUN + " --signal l1_filter --dataset imagefolder:{ws}/emptyfolder",
        "--dataset",
        "no images",
    ),
    case(
        "run store is a file",
        "run --signal l1_filter --store {ws}/afile --cache-dir {ws}/cache",
        "--store",
        "is a file",
    ),
    case(
        "run cache is a file",
        "run --signal l1_filter --store {ws}/store --cache-dir {ws}/afile",
        "--cache-dir",
        "is a file",
    ),
    case(
        "run cached base model empty",
        RUN + " --signal l1_filter",
        "--cache-dir",
        "not a readable checkpoint",
        setup="empty_cached",
    ),
    case(
        "run cached base model of another shape",
        RUN + " --signal l1_filter",
        "--cache-dir",
        "has shape",
        setup="reshaped_cached",
    ),
]

TRAIN_ARGS = [
    case("train seed -1", "train --seed -1 --cache-dir {ws}/cache", "--seed", "'-1'"),
    case("train epochs -1", "train --epochs -1 --cache-dir {ws}/cache", "--epochs", "'-1'"),
    case("train lr 0", "train --lr 0 --cache-dir {ws}/cache", "--lr", "> 0"),
    case("train lr inf", "train --lr inf --cache-dir {ws}/cache", "--lr", "'inf'"),
    case("train momentum 1", "train --momentum 1 --cache-dir {ws}/cache", "--momentum", "[0, 1)"),
    case("train batch 0", "train --batch-size 0 --cache-dir {ws}/cache", "--batch-size", ">= 1"),
    case("train device tpu", "train --device tpu --cache-dir {ws}/cache", "--device", "'tpu'"),
    case("train unknown model", "train --model tiny_cn --cache-dir {ws}/cache", "--model", "'tiny_cnn'"),
    case("train lenet5 on digits", "train --model lenet5 --cache-dir {ws}/cache", "--model", "lenet5"),
    case("train cache is a file", "train --cache-dir {ws}/afile", "--cache-dir", "is a file"),
]

SCORES_ARGS = [
    case(
        "scores out is a folder",
        SCORES.replace("{ws}/out/s.parquet", "{ws}/out"),
        "--out",
        "is a folder",
        setup="good_ckpt",
    ),
    case(
        "scores dump is a folder",
        SCORES + " --dump-inputs {ws}/out",
        "--dump-inputs",
        "is a folder",
        setup="good_ckpt",
    ),
    case(
        "scores dump is the out",
        SCORES + " --dump-inputs {ws}/out/s.parquet",
        "--dump-inputs",
        "--out",
        setup="good_ckpt",
    ),
    case(
        "scores all mixed",
        SCORES + " --signal all --signal oracle",
        "--signal",
        "stand alone",
        setup="good_ckpt",
    ),
    case(
        "scores alias and its id",
        SCORES + " --signal l1_filter --signal weight-value-l1-none",
        "--signal",
        "twice",
        setup="good_ckpt",
    ),
    case("scores empty checkpoint", SCORES, "ckpt.pt", "not a readable checkpoint", setup="empty_ckpt"),
    case("scores checkpoint lacks a layer", SCORES, "ckpt.pt", "missing features", setup="partial_ckpt"),
    case("scores checkpoint of another shape", SCORES, "ckpt.pt", "has shape", setup="reshaped_ckpt"),
    case("scores not a checkpoint", SCORES, "ckpt.pt", "not a prunetax checkpoint", setup="foreign_ckpt"),
    case("scores no checkpoint", SCORES, "ckpt.pt", "no checkpoint"),
    case(
        "scores dataset contradicts",
        SCORES + " --dataset digits16",
        "trained on 'digits'",
        "digits16",
        setup="good_ckpt",
    ),
    case(
        "scores eval split too small", SCORES + " --eval-batch-size 100000", "eval", "400", setup="good_ckpt"
    ),
    case("scores seed -1", SCORES + " --seed -1", "--seed", "'-1'", setup="good_ckpt"),
    case("scores device tpu", SCORES + " --device tpu", "--device", "'tpu'", setup="good_ckpt"),
]

BROWSE_ARGS = [
    case("signals empty input", "signals --input ", "--input", "''"),
    case("signals trailing comma", "signals --input activation,", "--input", "comma-separated"),
    case("signals unknown scaling", "signals --scaling weight_removed", "scaling", "'weights_removed'"),
    case("signals bad aggregation", "signals --aggregation median", "--aggregation", "'median'"),
    case("signals model and coupled", "signals --model tiny_cnn --coupled", "--coupled", "--model"),
    case(
        "explain partial id",
        "explain activation-taylor-abs_sum",
        "activation-taylor-abs_sum",
        "lacks its scaling",
    ),
    case("explain typo", "explain activaton-taylr-sum-none", "'activaton'", "'activation'"),
    case("explain empty", "explain ", "ID_OR_ALIAS", "empty"),
    case("report out is a file", "report {ws}/store --out {ws}/afile", "--out", "is a file"),
    case("report top 0", "report {ws}/store --out {ws}/out --top 0", "--top", ">= 1"),
    case("demo out is a file", "demo --out {ws}/afile --cache-dir {ws}/cache", "[sweep].store", "is a file"),
    case(
        "demo no such device",
        "demo --out {ws}/demo --cache-dir {ws}/cache --device cuda:63",
        "[sweep].device",
        "'cuda:63'",
    ),
]

# a protocol that runs only the signal `random` (if one is registered)
ONLY_RANDOM = [
    spec_case(
        "protocol for random only",
        add('[[runs]]\nprotocol = "best_of_n"\nsignals = ["l1_filter"]\n'),
        "[[runs]] #2.signals (line 16)",
        "`random`",
    ),
    case(
        "run protocol for random only",
        RUN + " --signal l1_filter --protocol best_of_n",
        "--signal",
        "`random`",
    ),
]
ONLY_RANDOM = ONLY_RANDOM if "best_of_n" in PROTOCOLS else []

CASES = SPEC_TYPES + SPEC_MEANING + SPEC_ENVIRONMENT + SWEEP_ARGS + RUN_ARGS + RUN_ENVIRONMENT + ONLY_RANDOM
CASES += TRAIN_ARGS + SCORES_ARGS + BROWSE_ARGS


def test_the_corpus_is_large_and_names_are_unique():
    assert len(CASES) >= 80
    assert len({c.name for c in CASES}) == len(CASES)


# -- set-up ------------------------------------------------------------------------------


def _checkpoint(change: str):  # noqa: ANN202 - a study.checkpoint.Checkpoint
    """A tiny_cnn checkpoint for digits built without training (its weights are random)."""
    from dataclasses import asdict

    import torch

    from study import data, models
    from study.checkpoint import Checkpoint, SplitInfo
    from study.train import TrainConfig, config_hash, resolve

    splits = data.load("digits", None, 0)
    kwargs = {"in_channels": 1, "num_classes": 10, "image_size": 8}
    state = models.build("tiny_cnn", **kwargs).state_dict()
    if change == "partial":
        state.pop(next(k for k in state if k.startswith("features")))
    if change == "reshaped":
        name = next(k for k in state if k.endswith("weight"))
        state[name] = torch.zeros(3, 3)
    cfg = TrainConfig("tiny_cnn", "digits", 0)
    split = SplitInfo(0, splits.sizes(), splits.fingerprint(), list(splits.mean), list(splits.std))
    acc = {"train": 0.1, "eval": 0.1, "test": 0.1}
    return Checkpoint(
        "tiny_cnn", kwargs, "digits", 0, split, state, acc, acc, asdict(resolve(cfg)), config_hash(cfg)
    ), cfg


def _set_up(ws: Path, steps: str) -> None:
    from study.train import checkpoint_path

    (ws / "out").mkdir()
    (ws / "emptyfolder").mkdir()
    (ws / "afile").write_text("not a folder\n")
    for step in filter(None, steps.split(",")):
        kind, _, where = step.partition("_")
        if kind in ("good", "partial", "reshaped"):
            ckpt, cfg = _checkpoint(kind)
            ckpt.save(ws / "ckpt.pt" if where == "ckpt" else checkpoint_path(cfg, ws / "cache"))
        elif kind == "empty":
            from study.train import TrainConfig

            path = ws / "ckpt.pt" if where == "ckpt" else checkpoint_path(TrainConfig(), ws / "cache")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"")
        elif kind == "foreign":
            import torch

            torch.save({"weights": torch.zeros(2)}, ws / "ckpt.pt")


def _snapshot(root: Path) -> dict[str, str]:
    """Every file (with a hash of its bytes) and folder under ``root``."""
    out = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        out[rel] = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir"
    return out


@pytest.fixture
def tripwires(monkeypatch):
    """Execution entry points that fail loudly: a case must never get this far."""

    def reached(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("a bad input reached execution")

    import analysis.report
    import study.execute
    import study.scoring
    import study.sweep.runner
    import study.train

    for module, name in (
        (study.sweep.runner, "run_plan"),
        (study.execute, "execute"),
        (study.train, "load_or_train"),
        (study.scoring, "channel_scores"),
        (analysis.report, "build_report"),
    ):
        monkeypatch.setattr(module, name, reached)


@pytest.mark.parametrize("bad", CASES, ids=[c.name for c in CASES])
def test_bad_input_exits_2_names_the_culprit_and_writes_nothing(
    bad, tmp_path, monkeypatch, capsys, tripwires
):
    ws = tmp_path / "ws"
    ws.mkdir()
    monkeypatch.chdir(ws)  # defaults (results/store, results/models) land here too
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    _set_up(ws, bad.setup)
    if bad.spec is not None:
        text = bad.spec.replace("{ws}", str(ws))
        path = ws / "spec.toml"
        path.write_bytes(text[2:].encode("latin-1")) if text.startswith("b:") else path.write_text(text)
    before = _snapshot(tmp_path)
    argv = [a.replace("{ws}", str(ws)) for a in bad.argv] or [""]
    if bad.argv[-1:] in (("--input",), ("explain",)):
        argv.append("")  # an empty value
    try:
        code = main(argv)
    except SystemExit as stop:  # argparse's usage error
        code = stop.code
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    for needle in bad.needles:
        assert needle.replace("{ws}", str(ws)) in err, (needle, err)
    assert _snapshot(tmp_path) == before, "a bad input wrote to disk"
