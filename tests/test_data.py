"""Dataset loading: digits splits, and readers of the real on-disk formats on tiny files."""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from study import data
from taxonomy.errors import PrunetaxError


@pytest.fixture(scope="module")
def digits() -> data.Splits:
    return data.load("digits", seed=0)


def _unnormalise(splits: data.Splits, x: torch.Tensor) -> torch.Tensor:
    mean, std = torch.tensor(splits.mean), torch.tensor(splits.std)
    return x * std[:, None, None] + mean[:, None, None]


def test_digits_splits_are_disjoint_cover_and_sized(digits):
    idx = digits.indices
    assert digits.sizes() == {"train": 1037, "eval": 400, "test": 360}
    every = torch.cat([idx["train"], idx["eval"], idx["test"]])
    assert torch.equal(every.sort().values, torch.arange(1797))
    assert (digits.name, digits.in_channels, digits.num_classes, digits.image_size) == ("digits", 1, 10, 8)
    for split in ("train", "eval", "test"):
        x, y = getattr(digits, split)
        assert x.dtype == torch.float32 and y.dtype == torch.int64
        assert x.shape == (len(idx[split]), 1, 8, 8)


def test_digits_match_sklearn_and_are_normalised_with_train_stats(digits):
    from sklearn.datasets import load_digits

    bunch = load_digits()
    assert torch.equal(digits.test.y, torch.from_numpy(bunch.target[digits.indices["test"].numpy()]))
    raw = torch.from_numpy(bunch.images[digits.indices["eval"].numpy()]).float() / 16
    torch.testing.assert_close(_unnormalise(digits, digits.eval.x)[:, 0], raw, atol=2e-3, rtol=0)
    x = digits.train.x
    torch.testing.assert_close(x.mean(dim=(0, 2, 3)), torch.zeros(1), atol=1e-5, rtol=0)
    torch.testing.assert_close(x.std(dim=(0, 2, 3)), torch.ones(1), atol=1e-5, rtol=0)


def test_splits_deterministic_per_seed_and_differ_across_seeds(digits):
    again, other = data.load("digits", seed=0), data.load("digits", seed=1)
    assert all(torch.equal(digits.indices[k], again.indices[k]) for k in digits.indices)
    assert torch.equal(digits.train.x, again.train.x)
    assert digits.fingerprint() == again.fingerprint() != other.fingerprint()
    assert not torch.equal(digits.indices["test"], other.indices["test"])


@pytest.mark.parametrize("size", [16, 32])
def test_resized_digits(digits, size):
    s = data.load(f"digits{size}")
    assert s.train.x.shape[1:] == (1, size, size) and s.image_size == size
    assert torch.equal(s.indices["test"], digits.indices["test"])


def test_custom_sizes_and_device_move(digits):
    s = data.load("digits", eval_size=100, test_size=0.25)
    assert s.sizes() == {"train": 1797 - 449 - 100, "eval": 100, "test": 449}
    moved = digits.to("cpu")
    assert moved.train.x.device.type == "cpu" and moved.fingerprint() == digits.fingerprint()
    with pytest.raises(PrunetaxError, match="eval_size"):
        data.load("digits", eval_size=5000)


# --- real formats written to tmp_path -------------------------------------------------


def _cifar_batch(path: Path, n: int, label_key: bytes, classes: int, rng: np.random.Generator) -> dict:
    batch = {
        b"batch_label": b"testing batch",
        label_key: rng.integers(0, classes, n).tolist(),
        b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        b"filenames": [f"img_{i}.png".encode() for i in range(n)],
    }
    if label_key == b"fine_labels":
        batch[b"coarse_labels"] = rng.integers(0, 20, n).tolist()
    # protocol 2 naming numpy.core.multiarray, as the official (Python 2 era) files do
    path.write_bytes(pickle.dumps(batch, protocol=2).replace(b"numpy._core.", b"numpy.core."))
    return batch


def test_cifar10_python_batches(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    batches = [_cifar_batch(folder / f"data_batch_{i}", 12, b"labels", 10, rng) for i in range(1, 6)]
    test = _cifar_batch(folder / "test_batch", 8, b"labels", 10, rng)
    s = data.load("cifar10", root=tmp_path, seed=3, eval_size=10)
    assert s.sizes() == {"train": 50, "eval": 10, "test": 8}
    assert (s.in_channels, s.num_classes, s.image_size) == (3, 10, 32)
    assert torch.equal(s.indices["test"], torch.arange(60, 68))
    assert s.test.y.tolist() == test[b"labels"]
    first = s.indices["train"][0].item()  # canonical order: batch 1..5, then test
    row = batches[first // 12][b"data"][first % 12]
    pixel = _unnormalise(s, s.train.x[:1])[0, 2, 5, 7] * 255  # channel-major: c*1024 + h*32 + w
    assert pixel.item() == pytest.approx(row[2 * 1024 + 5 * 32 + 7], abs=1e-3)


def test_cifar100_fine_labels(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    rng = np.random.default_rng(1)
    train = _cifar_batch(folder / "train", 30, b"fine_labels", 100, rng)
    _cifar_batch(folder / "test", 6, b"fine_labels", 100, rng)
    s = data.load("cifar100", root=tmp_path, eval_size=5)
    assert s.sizes() == {"train": 25, "eval": 5, "test": 6} and s.num_classes == 100
    assert s.train.y.tolist() == [train[b"fine_labels"][i] for i in s.indices["train"].tolist()]


def test_cifar_reader_refuses_code_in_pickles(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    _cifar_batch(folder / "test", 6, b"fine_labels", 100, np.random.default_rng(1))
    evil = {b"data": _Evil(), b"fine_labels": [0]}
    (folder / "train").write_bytes(pickle.dumps(evil, protocol=2))
    with pytest.raises(PrunetaxError, match="refusing to load"):
        data.load("cifar100", root=tmp_path)


class _Evil:
    def __reduce__(self):
        return (print, ("this must never run",))


def _write_idx(path: Path, array: np.ndarray, gz: bool) -> None:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    if gz:
        path = path.with_name(path.name + ".gz")
        payload = gzip.compress(payload)
    path.write_bytes(payload)


def _mnist_files(folder: Path, gz: bool, rng: np.random.Generator) -> dict[str, np.ndarray]:
    folder.mkdir(parents=True)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (20, 28, 28)),
        "train-labels-idx1-ubyte": rng.integers(0, 10, 20),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (7, 28, 28)),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, 7),
    }
    for name, array in arrays.items():
        _write_idx(folder / name, array, gz)
    return arrays


@pytest.mark.parametrize(
    ("name", "folder", "gz"),
    [("mnist", "MNIST/raw", True), ("mnist", "mnist", False), ("fashion_mnist", "FashionMNIST/raw", False)],
)
def test_mnist_idx_files(tmp_path, name, folder, gz):
    arrays = _mnist_files(tmp_path / folder, gz, np.random.default_rng(2))
    s = data.load(name, root=tmp_path, eval_size=4)
    assert s.sizes() == {"train": 16, "eval": 4, "test": 7}
    assert (s.in_channels, s.image_size, s.num_classes) == (1, 28, 10)
    assert s.test.y.tolist() == arrays["t10k-labels-idx1-ubyte"].tolist()
    raw = torch.from_numpy(arrays["t10k-images-idx3-ubyte"]).float()
    torch.testing.assert_close(_unnormalise(s, s.test.x)[:, 0] * 255, raw, atol=1e-3, rtol=0)


def test_corrupt_idx_is_a_clear_error(tmp_path):
    _mnist_files(tmp_path / "MNIST" / "raw", False, np.random.default_rng(0))
    (tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte").write_bytes(b"\x01\x02\x03\x04junk")
    with pytest.raises(PrunetaxError, match="not an idx file"):
        data.load("mnist", root=tmp_path, eval_size=4)


def test_imagefolder(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for cls in ("cat", "dog", "eel"):
        (tmp_path / "pets" / cls).mkdir(parents=True)
        for i in range(5):
            pixels = rng.integers(0, 256, (10, 12, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / "pets" / cls / f"{i}.png")
    s = data.load(f"imagefolder:{tmp_path / 'pets'}", image_size=16)
    assert (s.in_channels, s.num_classes, s.image_size) == (3, 3, 16)
    assert s.classes == ("cat", "dog", "eel")
    assert s.sizes() == {"train": 11, "eval": 1, "test": 3}
    assert s.name == f"imagefolder:{(tmp_path / 'pets').resolve()}"
    assert data.load(f"imagefolder:{tmp_path / 'pets'}").image_size == 32


@pytest.mark.parametrize(
    ("name", "where", "expected"),
    [
        ("cifar10", "cifar-10-batches-py", "data_batch_1"),
        ("cifar100", "cifar-100-python", "train"),
        ("mnist", "MNIST/raw", "train-images-idx3-ubyte"),
        ("fashion_mnist", "FashionMNIST/raw", "t10k-labels-idx1-ubyte"),
    ],
)
def test_missing_dataset_says_where_it_looked(tmp_path, name, where, expected):
    with pytest.raises(PrunetaxError) as err:
        data.load(name, root=tmp_path)
    msg = str(err.value)
    assert str(tmp_path / where) in msg and expected in msg
    assert "--data-root" in msg and "--download" in msg


def test_default_root_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("PRUNETAX_DATA", str(tmp_path))
    assert data.default_root() == tmp_path
    with pytest.raises(PrunetaxError, match=str(tmp_path / "cifar-10-batches-py")):
        data.load("cifar10")
    monkeypatch.delenv("PRUNETAX_DATA")
    assert data.default_root() == Path("~/.cache/prunetax/data").expanduser()


def test_unknown_dataset_and_missing_folder(tmp_path):
    with pytest.raises(PrunetaxError, match="Did you mean 'cifar10'"):
        data.load("cifar1O")
    with pytest.raises(PrunetaxError, match=str(tmp_path / "nope")):
        data.load(f"imagefolder:{tmp_path / 'nope'}")
