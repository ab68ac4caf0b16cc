"""Base-model training: determinism, learning, the checkpoint cache and the CLI."""

from __future__ import annotations

import time

import pytest
import torch

from study import train as tr
from study.checkpoint import FORMAT, Checkpoint
from study.cli import main
from study.cli.train import DEFAULT_CACHE_DIR
from study.evaluation import evaluate
from taxonomy.errors import PrunetaxError

FAST = tr.TrainConfig(model="tiny_cnn", dataset="digits", seed=0, epochs=2, batch_size=64)


@pytest.fixture(scope="module")
def ckpt() -> Checkpoint:
    return tr.train(FAST)


def test_training_is_deterministic_and_learns(ckpt):
    again = tr.train(FAST)
    assert ckpt.state_dict.keys() == again.state_dict.keys()
    assert all(torch.equal(ckpt.state_dict[k], again.state_dict[k]) for k in ckpt.state_dict)
    assert ckpt.accuracy == again.accuracy
    assert ckpt.accuracy["test"] > 0.8  # chance is 0.1
    other = tr.train(tr.TrainConfig(**{**FAST.__dict__, "seed": 1, "epochs": 0}))
    assert not torch.equal(other.state_dict["features.0.weight"], ckpt.state_dict["features.0.weight"])


def test_checkpoint_contents(ckpt):
    assert ckpt.arch == "tiny_cnn" and ckpt.dataset == "digits" and ckpt.seed == 0
    assert ckpt.arch_kwargs == {"in_channels": 1, "num_classes": 10, "image_size": 8}
    assert set(ckpt.accuracy) == set(ckpt.loss) == {"train", "eval", "test"}
    assert ckpt.config["epochs"] == 2 and ckpt.config["lr"] == 0.05  # default filled in
    assert ckpt.splits.sizes == {"train": 1037, "eval": 400, "test": 360}
    assert set(ckpt.versions) >= {"torch", "prunetax"} and ckpt.wall_time_s > 0
    assert [row["epoch"] for row in ckpt.history] == [1, 2]
    assert ckpt.config_hash == tr.config_hash(FAST)


def test_model_from_checkpoint_and_evaluate(ckpt):
    from study.data import load

    model = ckpt.build_model()
    assert not model.training
    test = load("digits").test
    acc, loss = evaluate(model, *test)
    assert acc == pytest.approx(ckpt.accuracy["test"]) and loss == pytest.approx(ckpt.loss["test"])
    model.train()
    assert evaluate(model, *test, batch_size=7)[0] == pytest.approx(acc)
    assert model.training  # mode restored


def test_config_hash_is_canonical():
    h = tr.config_hash(FAST)
    explicit = tr.TrainConfig(**{**FAST.__dict__, "lr": 0.05, "momentum": 0.9, "schedule": "cosine"})
    assert tr.config_hash(explicit) == h
    assert tr.config_hash(tr.TrainConfig(**{**FAST.__dict__, "data_root": "/elsewhere"})) == h
    assert tr.config_hash(tr.TrainConfig(**{**FAST.__dict__, "lr": 1})) == tr.config_hash(
        tr.TrainConfig(**{**FAST.__dict__, "lr": 1.0})
    )
    assert tr.config_hash(tr.TrainConfig(**{**FAST.__dict__, "lr": 0.01})) != h
    assert tr.config_hash(tr.TrainConfig(**{**FAST.__dict__, "seed": 1})) != h
    assert len(h) == 12


def test_bad_config_is_a_user_error():
    with pytest.raises(PrunetaxError, match="schedule"):
        tr.resolve(tr.TrainConfig(schedule="linear"))
    with pytest.raises(PrunetaxError, match="lr"):
        tr.resolve(tr.TrainConfig(lr=-1.0))
    with pytest.raises(PrunetaxError, match="Did you mean"):
        tr.resolve(tr.TrainConfig(model="tiny_cnm"))
    with pytest.raises(PrunetaxError, match="`device`"):
        tr.train(tr.TrainConfig(epochs=0), device="gpu")


def test_step_schedule_and_augmentation():
    cfg = tr.TrainConfig(epochs=4, batch_size=1024, lr=0.1, schedule="step", augment="crop_flip")
    lrs = [row["lr"] for row in tr.train(cfg).history]
    assert lrs == pytest.approx([0.1, 0.1, 0.01, 0.001])
    x = torch.randn(5, 3, 8, 8)
    a = tr.augment_batch(x, "crop_flip", torch.Generator().manual_seed(0))
    b = tr.augment_batch(x, "crop_flip", torch.Generator().manual_seed(0))
    assert a.shape == x.shape and torch.equal(a, b)
    assert tr.augment_batch(x, "none", torch.Generator()) is x


def test_cache_reuses_checkpoint(tmp_path):
    cfg = tr.TrainConfig(**{**FAST.__dict__, "epochs": 1})
    first, path = tr.load_or_train(cfg, tmp_path)
    assert path == tr.checkpoint_path(cfg, tmp_path)
    assert path.name == f"tiny_cnn-digits-s0-{tr.config_hash(cfg)}.pt"
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temp file left behind
    start = time.perf_counter()
    second, again = tr.load_or_train(cfg, tmp_path)
    assert again == path and time.perf_counter() - start < 2.0
    assert all(torch.equal(first.state_dict[k], second.state_dict[k]) for k in first.state_dict)
    assert second.accuracy == first.accuracy


def test_load_checkpoint_rejects_foreign_files(tmp_path):
    with pytest.raises(PrunetaxError, match="no checkpoint at"):
        Checkpoint.load(tmp_path / "missing.pt")
    foreign = tmp_path / "foreign.pt"
    torch.save({"model": torch.zeros(2)}, foreign)
    with pytest.raises(PrunetaxError, match="not a prunetax checkpoint"):
        Checkpoint.load(foreign)
    text = tmp_path / "notes.pt"
    text.write_text("hello")
    with pytest.raises(PrunetaxError, match="not a readable checkpoint"):
        Checkpoint.load(text)
    partial = tmp_path / "partial.pt"
    torch.save({"format": FORMAT, "format_version": 1}, partial)
    with pytest.raises(PrunetaxError, match="missing"):
        Checkpoint.load(partial)


def test_cli_train(tmp_path, capsys):
    args = ["train", "--epochs", "1", "--batch-size", "128", "--cache-dir", str(tmp_path), "--quiet"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "test accuracy" in out and "checkpoint:" in out and "reused" not in out
    assert main(args) == 0
    assert "reused cached checkpoint" in capsys.readouterr().out
    assert main(["train", "--model", "tiny_cnm", "--cache-dir", str(tmp_path)]) == 2
    assert "Did you mean 'tiny_cnn'" in capsys.readouterr().err
    assert DEFAULT_CACHE_DIR == "results/models"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_train_on_cuda():
    ckpt = tr.train(tr.TrainConfig(epochs=1), device="cuda")
    assert ckpt.device.startswith("cuda") and ckpt.accuracy["test"] > 0.5
    model = ckpt.build_model(device="cuda")
    assert next(model.parameters()).is_cuda


@pytest.mark.slow
@pytest.mark.parametrize(
    ("model", "dataset", "floor"),
    [
        ("tiny_cnn", "digits", 0.95),
        ("tiny_resnet", "digits", 0.90),
        ("lenet5", "digits16", 0.8),
        ("cifar10_quick", "digits", 0.8),
        ("nin", "digits", 0.5),
        ("alexnet_cifar", "digits", 0.8),
    ],
)
def test_models_learn_with_their_defaults(model, dataset, floor):
    """Default hyperparameters train (full budget for the tiny models, 10 epochs for the rest)."""
    epochs = None if model.startswith("tiny") else 10
    ckpt = tr.train(tr.TrainConfig(model=model, dataset=dataset, epochs=epochs))
    assert ckpt.accuracy["test"] >= floor
