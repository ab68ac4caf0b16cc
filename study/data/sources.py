"""The dataset registry: where each dataset's files live, how to read them, default splits.

Root folder: ``root`` argument, else ``$PRUNETAX_DATA``, else ``~/.cache/prunetax/data``.
Layouts under it (torchvision's, so an existing torchvision download is reused):

=============  =============================================  ================================
dataset        folder (first one holding every file wins)     files
=============  =============================================  ================================
mnist          MNIST/raw, MNIST, mnist                        train-images-idx3-ubyte,
                                                              train-labels-idx1-ubyte,
                                                              t10k-images-idx3-ubyte,
                                                              t10k-labels-idx1-ubyte (raw or .gz)
fashion_mnist  FashionMNIST/raw, FashionMNIST, fashion_mnist  same names as MNIST
cifar10        cifar-10-batches-py                            data_batch_1..5, test_batch
cifar100       cifar-100-python                               train, test
=============  =============================================  ================================

``digits`` (and ``digits16``/``digits32``, bilinearly resized) come from scikit-learn and
need no files. ``imagefolder:PATH`` reads ``PATH/<class>/<image>`` at 32x32 by default.
Default splits, stratified by class and drawn per seed: digits test 360 / eval 400 /
train 1,037 (the eval pool exceeds the paper's 2 x 128 saliency images, so repeats score
on different examples); MNIST-family and CIFAR keep the official test set and hold 5,000 training
examples out as eval (CIFAR 45k / 5k / 10k); imagefolder holds out 20 % test, 10 % eval.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NamedTuple

import torch
from torch import Tensor

from study.data.readers import read_cifar, read_digits, read_imagefolder, read_mnist
from study.data.splits import Splits, make_splits, split_indices
from taxonomy.errors import PrunetaxError
from taxonomy.registry import Registry

__all__ = [
    "DATASETS",
    "DatasetEntry",
    "Raw",
    "default_root",
    "entry",
    "load",
    "names",
    "IMAGEFOLDER",
]

IMAGEFOLDER = "imagefolder:"
Augment = Literal["none", "crop_flip"]


class Raw(NamedTuple):
    """A dataset as read: uint8 images, labels, and how many leading examples are training."""

    x: Tensor
    y: Tensor
    n_train: int
    classes: tuple[str, ...] = ()


# (root, download, image_size) -> Raw; only formats of mixed image sizes use image_size
Reader = Callable[[Path, bool, int | None], Raw]


@dataclass(frozen=True)
class DatasetEntry:
    """One registered dataset and its defaults (sizes are counts, or fractions of the pool)."""

    name: str
    read: Reader
    num_classes: int | None
    eval_size: int | float
    test_size: int | float = 0
    image_size: int | None = None
    augment: Augment = "none"
    summary: str = ""


DATASETS: Registry[DatasetEntry] = Registry("dataset")


def default_root() -> Path:
    """``$PRUNETAX_DATA`` if set, else ``~/.cache/prunetax/data``."""
    return Path(os.environ.get("PRUNETAX_DATA") or "~/.cache/prunetax/data").expanduser()


def _find(root: Path, folders: tuple[str, ...], files: tuple[str, ...], gz: bool) -> dict[str, Path] | None:
    """The first folder holding every file (or its ``.gz``), as name -> path."""
    for folder in folders:
        found = {}
        for f in files:
            options = [root / folder / f] + ([root / folder / f"{f}.gz"] if gz else [])
            hit = next((p for p in options if p.is_file()), None)
            if hit is None:
                break
            found[f] = hit
        else:
            return found
    return None


def _require(
    name: str,
    root: Path,
    folders: tuple[str, ...],
    files: tuple[str, ...],
    *,
    gz: bool,
    download: bool,
    fetch: Callable[[Path], None],
    origin: str,
) -> dict[str, Path]:
    """Locate the files, downloading first when asked; else explain where to put them."""
    found = _find(root, folders, files, gz)
    if found is None and download:
        fetch(root)
        found = _find(root, folders, files, gz)
    if found is not None:
        return found
    looked = ", ".join(str(root / f) for f in folders)
    listed = ", ".join(files) + (" (raw or .gz)" if gz else "")
    raise PrunetaxError(
        f"dataset {name!r} not found: looked in {looked} for {listed} ({origin}). "
        f"Put the files in {root / folders[0]}, or pass --data-root DIR (or set $PRUNETAX_DATA) "
        f"to a folder holding {folders[0]}/, or pass --download on a machine that is online."
    )


_MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


def _mnist_reader(name: str, tv_class: str, folders: tuple[str, ...]) -> Reader:
    def fetch(root: Path) -> None:
        import torchvision.datasets as tvd
        from torchvision.datasets.utils import download_and_extract_archive

        cls = getattr(tvd, tv_class)
        for filename, md5 in cls.resources:
            for mirror in cls.mirrors:
                try:
                    download_and_extract_archive(
                        mirror + filename, root / folders[0], filename=filename, md5=md5
                    )
                    break
                except OSError:
                    continue

    def read(root: Path, download: bool, _size: int | None) -> Raw:
        f = _require(
            name,
            root,
            folders,
            _MNIST_FILES,
            gz=True,
            download=download,
            fetch=fetch,
            origin=f"the idx files of {tv_class}",
        )
        x_tr, y_tr = read_mnist(f[_MNIST_FILES[0]], f[_MNIST_FILES[1]])
        x_te, y_te = read_mnist(f[_MNIST_FILES[2]], f[_MNIST_FILES[3]])
        return Raw(torch.cat([x_tr, x_te]), torch.cat([y_tr, y_te]), len(y_tr))

    return read


def _cifar_reader(
    name: str, tv_class: str, folder: str, train: tuple[str, ...], test: str, label_key: bytes
) -> Reader:
    archive = {"CIFAR10": "cifar-10-python.tar.gz", "CIFAR100": "cifar-100-python.tar.gz"}[tv_class]

    def fetch(root: Path) -> None:
        import torchvision.datasets as tvd
        from torchvision.datasets.utils import download_and_extract_archive

        cls = getattr(tvd, tv_class)
        download_and_extract_archive(cls.url, root, filename=cls.filename, md5=cls.tgz_md5)

    def read(root: Path, download: bool, _size: int | None) -> Raw:
        f = _require(
            name,
            root,
            (folder,),
            (*train, test),
            gz=False,
            download=download,
            fetch=fetch,
            origin=f"the python version of {tv_class}: {archive}",
        )
        x_tr, y_tr = read_cifar([f[t] for t in train], label_key)
        x_te, y_te = read_cifar([f[test]], label_key)
        return Raw(torch.cat([x_tr, x_te]), torch.cat([y_tr, y_te]), len(y_tr))

    return read


def _digits(_root: Path, _download: bool, _size: int | None) -> Raw:
    x, y = read_digits()
    return Raw(x, y, len(y))


def _add(entry: DatasetEntry) -> None:
    DATASETS.add(entry.name, entry)


_DIGITS = dict(read=_digits, num_classes=10, eval_size=400, test_size=360)
_add(DatasetEntry("digits", **_DIGITS, summary="scikit-learn's 1,797 8x8 digits (embedded, no files)"))
_add(DatasetEntry("digits16", **_DIGITS, image_size=16, summary="digits resized to 16x16"))
_add(DatasetEntry("digits32", **_DIGITS, image_size=32, summary="digits resized to 32x32"))
_add(
    DatasetEntry(
        "mnist",
        _mnist_reader("mnist", "MNIST", ("MNIST/raw", "MNIST", "mnist")),
        10,
        5000,
        summary="MNIST 28x28 (55k / 5k / 10k)",
    )
)
_add(
    DatasetEntry(
        "fashion_mnist",
        _mnist_reader("fashion_mnist", "FashionMNIST", ("FashionMNIST/raw", "FashionMNIST", "fashion_mnist")),
        10,
        5000,
        summary="Fashion-MNIST 28x28 (55k / 5k / 10k)",
    )
)
_add(
    DatasetEntry(
        "cifar10",
        _cifar_reader(
            "cifar10",
            "CIFAR10",
            "cifar-10-batches-py",
            tuple(f"data_batch_{i}" for i in range(1, 6)),
            "test_batch",
            b"labels",
        ),
        10,
        5000,
        augment="crop_flip",
        summary="CIFAR-10 32x32 (45k / 5k / 10k)",
    )
)
_add(
    DatasetEntry(
        "cifar100",
        _cifar_reader("cifar100", "CIFAR100", "cifar-100-python", ("train",), "test", b"fine_labels"),
        100,
        5000,
        augment="crop_flip",
        summary="CIFAR-100 32x32, fine labels (45k / 5k / 10k)",
    )
)


def names() -> list[str]:
    """Registered dataset names; ``imagefolder:PATH`` is also accepted."""
    return DATASETS.names()


def _imagefolder_entry(spec: str, root: Path | None) -> DatasetEntry:
    path = Path(spec[len(IMAGEFOLDER) :]).expanduser()
    candidates = [path] if path.is_absolute() else [Path.cwd() / path] + ([root / path] if root else [])
    found = next((p for p in candidates if p.is_dir()), None)
    if found is None:
        raise PrunetaxError(
            f"dataset {spec!r} not found: looked for a folder at {', '.join(map(str, candidates))}. "
            "Pass imagefolder:PATH with PATH/<class>/<image files>."
        )

    def read(_root: Path, _download: bool, image_size: int | None) -> Raw:
        x, y, classes = read_imagefolder(found, image_size or 32)
        return Raw(x, y, len(y), tuple(classes))

    return DatasetEntry(
        IMAGEFOLDER + str(found.resolve()),
        read,
        None,
        eval_size=0.1,
        test_size=0.2,
        image_size=32,
        summary=f"images under {found}",
    )


def entry(name: str, root: str | Path | None = None) -> DatasetEntry:
    """The registry record of ``name`` (``imagefolder:PATH`` and ``module:loader`` included)."""
    from study.data.own import from_loader
    from study.plugins import is_import_string, load_object

    if name.startswith(IMAGEFOLDER):
        return _imagefolder_entry(name, Path(root).expanduser() if root else None)
    if is_import_string(name):
        return from_loader(
            name, load_object(name, "dataset"), f"imported {name}", eval_size=0.1, test_size=0.2
        )
    try:
        return DATASETS.get(name)
    except PrunetaxError as err:
        raise PrunetaxError(
            f"{err} Folders of images are available as `imagefolder:PATH`, and a dataset of your own "
            "as `module.path:loader`."
        ) from None


def load(
    name: str,
    root: str | Path | None = None,
    seed: int = 0,
    download: bool = False,
    *,
    eval_size: int | float | None = None,
    test_size: int | float | None = None,
    image_size: int | None = None,
) -> Splits:
    """Load dataset ``name`` as seeded train / eval / test splits in memory.

    Parameters
    ----------
    name
        A registered name (:func:`names`) or ``imagefolder:PATH``.
    root
        Data folder; default :func:`default_root`.
    seed
        Split seed: the same seed gives the same example indices in every split.
    download
        Fetch missing files with torchvision's download helpers (needs internet).
    eval_size, test_size
        Override the held-out sizes (count, or float fraction); ``test_size`` only
        applies to datasets without an official test set.
    image_size
        Resize (bilinear) to this many pixels square; default the dataset's own.
    """
    record = entry(name, root)
    folder = Path(root).expanduser() if root else default_root()
    size = image_size or record.image_size
    raw = record.read(folder, download, size)
    indices = split_indices(
        raw.y,
        raw.n_train,
        seed,
        record.eval_size if eval_size is None else eval_size,
        record.test_size if test_size is None else test_size,
    )
    return make_splits(
        record.name,
        raw.x,
        raw.y,
        indices,
        seed=seed,
        image_size=size,
        num_classes=record.num_classes or len(raw.classes),
        classes=raw.classes,
    )
