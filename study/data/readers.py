"""Readers for the real on-disk formats, written here so any copy of the files works.

torchvision's dataset classes verify the MD5 sums of the official archives; these
readers only need the documented formats: MNIST's idx files (raw or gzipped), the
CIFAR "python version" pickles, and an ImageFolder tree of images. Each returns
``(x, y)`` with x uint8 [N, C, H, W] and y int64 [N].
"""

from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from taxonomy.errors import PrunetaxError

__all__ = ["read_idx", "read_mnist", "read_cifar", "read_imagefolder", "read_digits", "IMAGE_SUFFIXES"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".ppm", ".pgm", ".tif", ".tiff", ".webp")

# idx type codes (third magic byte) -> big-endian numpy dtype
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: Path) -> np.ndarray:
    """Read an idx file (``.gz`` or raw): magic 0x0000 | dtype code | ndim, then big-endian dims."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise PrunetaxError(f"{path} is not an idx file (bad magic number {data[:4].hex()}).")
    ndim = data[3]
    dims = tuple(int(d) for d in np.frombuffer(data, ">u4", ndim, offset=4))
    dtype = np.dtype(_IDX_DTYPES[data[2]])
    count = int(np.prod(dims))
    offset = 4 + 4 * ndim
    if len(data) - offset != count * dtype.itemsize:
        raise PrunetaxError(
            f"{path} is truncated or corrupt: header says {dims}, found {len(data) - offset} bytes of data."
        )
    return np.frombuffer(data, dtype, count, offset=offset).reshape(dims)


def read_mnist(images: Path, labels: Path) -> tuple[Tensor, Tensor]:
    """One MNIST-format pair (idx3 images [N, H, W], idx1 labels [N])."""
    x, y = read_idx(images), read_idx(labels)
    if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
        raise PrunetaxError(
            f"{images} / {labels}: expected images [N, H, W] and labels [N], got {x.shape} and {y.shape}."
        )
    return torch.from_numpy(x.astype(np.uint8)).unsqueeze(1), torch.from_numpy(y.astype(np.int64))


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays only, so a batch file cannot run code.

    ``_codecs.encode`` is how Python 3 pickles bytes at protocol 2; ``numpy.core`` (in
    the official files) is numpy 2's ``numpy._core``.
    """

    _NUMPY = {"_reconstruct", "ndarray", "dtype", "scalar", "_frombuffer"}

    def find_class(self, module: str, name: str) -> type:
        if module.split(".")[0] == "numpy" and name in self._NUMPY:
            if module.startswith("numpy.core.") and int(np.__version__.split(".")[0]) >= 2:
                module = "numpy._core." + module.removeprefix("numpy.core.")
            return super().find_class(module, name)
        if (module, name) == ("_codecs", "encode"):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def read_cifar(paths: list[Path], label_key: bytes) -> tuple[Tensor, Tensor]:
    """Concatenate CIFAR python batches: ``b'data'`` uint8 [N, 3072] (channel-major), labels."""
    xs, ys = [], []
    for path in paths:
        with open(path, "rb") as f:
            try:
                batch = _ArrayUnpickler(f, encoding="bytes").load()
            except Exception as err:
                raise PrunetaxError(f"{path} is not a CIFAR python batch ({err}).") from None
        if not isinstance(batch, dict) or b"data" not in batch or label_key not in batch:
            raise PrunetaxError(f"{path} lacks the keys b'data' and {label_key!r} of a CIFAR batch.")
        xs.append(np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        ys.append(np.asarray(batch[label_key], dtype=np.int64))
    return torch.from_numpy(np.concatenate(xs)), torch.from_numpy(np.concatenate(ys))


def read_imagefolder(root: Path, image_size: int) -> tuple[Tensor, Tensor, list[str]]:
    """Images under ``root/<class>/...`` as RGB, resized (bilinear) to ``image_size``²."""
    from PIL import Image

    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    xs, ys = [], []
    for label, cls in enumerate(classes):
        for path in sorted((root / cls).rglob("*")):
            if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
                with Image.open(path) as img:
                    rgb = img.convert("RGB").resize((image_size, image_size), Image.Resampling.BILINEAR)
                xs.append(np.asarray(rgb, dtype=np.uint8).transpose(2, 0, 1))
                ys.append(label)
    if not xs:
        raise PrunetaxError(
            f"no images found under {root}: expected one subfolder per class "
            f"holding {', '.join(IMAGE_SUFFIXES)} files."
        )
    return torch.from_numpy(np.stack(xs)), torch.tensor(ys, dtype=torch.int64), classes


def read_digits() -> tuple[Tensor, Tensor]:
    """scikit-learn's 1,797 8x8 digits (shipped with the package), scaled to 0..255 uint8."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)[:, None]
    return torch.from_numpy(x), torch.from_numpy(bunch.target.astype(np.int64))
