"""The model registry: name -> builder, smallest input it takes, and training defaults.

Defaults are for the network's home dataset (CIFAR for the paper's networks, 8x8
digits for the tiny ones); override any of them per run. Retraining values are the
paper's (SPEC §3): SGD lr 1e-3, momentum 0.9, weight decay 5e-4 (1e-4 for NIN and the
ResNets), and k retraining steps per prune where the paper gives one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Literal

from torch import nn

from study.models.plain import NIN, AlexNetCifar, Cifar10Quick, LeNet5, TinyCNN
from study.models.resnet import CifarResNet
from study.models.tv import PREFIX, build_tv, tv_names
from study.models.vgg import VGG16BN
from taxonomy.errors import PrunetaxError, invalid
from taxonomy.registry import Registry

__all__ = ["Hyperparams", "ModelEntry", "MODELS", "build", "entry", "hyperparams", "names", "register_model"]

Schedule = Literal["cosine", "step"]
Builder = Callable[[int, int, int], nn.Module]


@dataclass(frozen=True)
class Hyperparams:
    """Default base training (SGD + momentum) and per-prune retraining of one model.

    ``schedule`` "step" divides the rate by 10 at 50 % and 75 % of the epochs; "cosine"
    anneals it to 0 per step. ``retrain_steps`` is None where the paper gives no k.
    """

    epochs: int
    batch_size: int
    lr: float
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: Schedule = "cosine"
    retrain_steps: int | None = None
    retrain_lr: float = 1e-3
    retrain_momentum: float = 0.9
    retrain_weight_decay: float = 5e-4


@dataclass(frozen=True)
class ModelEntry:
    """One registered network: ``builder(in_channels, num_classes, image_size)``."""

    name: str
    builder: Builder
    hyperparams: Hyperparams
    min_image_size: int
    summary: str


MODELS: Registry[ModelEntry] = Registry("model")

_RESNET = dict(
    epochs=160, batch_size=128, lr=0.1, weight_decay=1e-4, schedule="step", retrain_weight_decay=1e-4
)


def _resnet(blocks: int, widths: tuple[int, int, int] = (16, 32, 64)) -> Builder:
    return lambda c, k, s: CifarResNet(c, k, blocks=blocks, widths=widths)


def _add(name: str, builder: Builder, hp: Hyperparams, summary: str, min_image_size: int = 1) -> None:
    MODELS.add(name, ModelEntry(name, builder, hp, min_image_size, summary))


_add(
    "tiny_cnn",
    TinyCNN,
    Hyperparams(epochs=12, batch_size=32, lr=0.05),
    "3 BN-convs 16/32/32 + linear; the embedded default for 8x8 digits",
    min_image_size=2,
)
_add(
    "tiny_resnet",
    _resnet(1, (8, 16, 32)),
    Hyperparams(epochs=15, batch_size=32, lr=0.05),
    "ResNet-8: one BasicBlock per stage, widths 8/16/32",
)
# The demo's networks, right-sized for one unit per step on two CPU cores: half the
# channels of tiny_cnn / tiny_resnet (40 and 56 units instead of 80 and 112) still
# reach 97-99 % on 8x8 digits (5 seeds: 98.6 % and 97.7 % mean test accuracy), and a
# trajectory has half the steps at a quarter of the MACs per step.
_add(
    "digits_cnn",
    partial(TinyCNN, widths=(8, 16, 16)),
    Hyperparams(epochs=12, batch_size=32, lr=0.05),
    "3 BN-convs 8/16/16 + linear; the demo's plain network for 8x8 digits",
    min_image_size=2,
)
_add(
    "digits_resnet",
    _resnet(1, (4, 8, 16)),
    Hyperparams(epochs=15, batch_size=32, lr=0.05),
    "ResNet-8 at widths 4/8/16; the demo's residual network for 8x8 digits",
)
_add(
    "lenet5",
    LeNet5,
    Hyperparams(epochs=20, batch_size=64, lr=0.01, schedule="step", retrain_steps=256),
    "Caffe LeNet: conv 20@5, conv 50@5, fc 500, fc classes; no ReLU after the convs",
    min_image_size=16,
)
_add(
    "cifar10_quick",
    Cifar10Quick,
    Hyperparams(epochs=30, batch_size=100, lr=0.01, schedule="step", retrain_steps=256),
    "Caffe cifar10_quick: conv 32@5, 32@5, 64@5, fc 64, fc classes",
    min_image_size=8,
)
_add(
    "resnet20",
    _resnet(3),
    Hyperparams(**_RESNET, retrain_steps=50),
    "CIFAR ResNet-20 (16/32/64, projection shortcuts)",
)
_add("resnet32", _resnet(5), Hyperparams(**_RESNET), "CIFAR ResNet-32")
_add("resnet56", _resnet(9), Hyperparams(**_RESNET), "CIFAR ResNet-56")
_add(
    "nin",
    NIN,
    Hyperparams(
        epochs=120,
        batch_size=128,
        lr=0.01,
        weight_decay=1e-4,
        schedule="step",
        retrain_steps=25,
        retrain_weight_decay=1e-4,
    ),
    "Network-in-Network; classifier = 1x1 conv with num_classes channels + global pool",
    min_image_size=4,
)
_add(
    "alexnet_cifar",
    AlexNetCifar,
    Hyperparams(epochs=60, batch_size=128, lr=0.01, schedule="step", retrain_steps=10),
    "AlexNet for 32x32 inputs (groups=2 in conv2/4/5, fc 1024)",
    min_image_size=8,
)
_add(
    "vgg16_bn",
    VGG16BN,
    Hyperparams(epochs=160, batch_size=128, lr=0.05),
    "CIFAR VGG-16 with batch norm and a linear classifier",
)

# torchvision models get one generic CIFAR-scale recipe; override per run as needed.
TV_HYPERPARAMS = Hyperparams(epochs=100, batch_size=128, lr=0.1)


def names() -> list[str]:
    """Registered model names; any torchvision classifier is also available as ``tv:<name>``."""
    return MODELS.names()


def register_model(
    name: str,
    builder: Builder,
    *,
    hyperparams: Hyperparams | None = None,
    min_image_size: int = 1,
    summary: str = "",
) -> ModelEntry:
    """Register a model of one's own: ``builder(in_channels, num_classes, image_size)``.

    Training defaults to a generic recipe (SGD, cosine, 30 epochs) unless ``hyperparams``
    say otherwise. Sweeps on Ray workers need the model by import string instead
    (``"mypkg.nets:my_cnn"``), which every worker can resolve by itself.
    """
    if not callable(builder):
        raise PrunetaxError(f"the builder of model {name!r} must be callable; got {builder!r}.")
    record = ModelEntry(name, builder, hyperparams or USER_HYPERPARAMS, min_image_size, summary or name)
    return MODELS.add(name, record)


USER_HYPERPARAMS = Hyperparams(epochs=30, batch_size=64, lr=0.05)
"""The training recipe of a model registered without one (or named by import string)."""


def entry(name: str) -> ModelEntry:
    """The registry record of ``name`` (``tv:<name>`` and ``module:builder`` included)."""
    from study.plugins import is_import_string, load_object

    if is_import_string(name):
        return ModelEntry(name, load_object(name, "model"), USER_HYPERPARAMS, 1, f"imported {name}")
    if name.startswith(PREFIX):
        tv = name[len(PREFIX) :]
        if tv not in tv_names():
            raise invalid("model", name, [PREFIX + n for n in tv_names()])
        return ModelEntry(name, partial(build_tv, tv), TV_HYPERPARAMS, 1, f"torchvision {tv}")
    try:
        return MODELS.get(name)
    except PrunetaxError as err:
        raise PrunetaxError(
            f"{err} Any torchvision classifier is also available as `tv:<name>`, and a model of your "
            "own as `module.path:builder`."
        ) from None


def hyperparams(name: str) -> Hyperparams:
    """Default training hyperparameters of model ``name``."""
    return entry(name).hyperparams


def build(name: str, in_channels: int, num_classes: int, image_size: int) -> nn.Module:
    """Build model ``name`` (in training mode, random weights) for the given input geometry.

    Raises
    ------
    PrunetaxError
        For an unknown name (with close matches), bad sizes, or images too small for it.
    """
    record = entry(name)
    for param, value, lowest in (
        ("in_channels", in_channels, 1),
        ("num_classes", num_classes, 2),
        ("image_size", image_size, record.min_image_size),
    ):
        if not isinstance(value, int) or value < lowest:
            raise PrunetaxError(f"`{param}` must be an integer >= {lowest} for model {name}; got {value!r}.")
    return record.builder(in_channels, num_classes, image_size)
