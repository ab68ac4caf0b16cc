"""Feed-forward CNNs: the embedded tiny default and the paper's Caffe-era networks.

Every network is ``features`` (convolutions) then ``classifier`` (flatten + linear, or
NIN's convolutional head). Each activation, pool and flatten is its own module, used
once and never in place, so the statistics collector can hook and fx-trace any layer.
"""

from __future__ import annotations

from torch import Tensor, nn

from study.models.shapes import flat_features

__all__ = ["TinyCNN", "LeNet5", "Cifar10Quick", "NIN", "AlexNetCifar", "conv_bn_relu", "init_relu_net"]


def conv_bn_relu(cin: int, cout: int, kernel: int = 3, groups: int = 1) -> list[nn.Module]:
    """A same-padded conv (no bias: BN has one), BN and ReLU."""
    return [
        nn.Conv2d(cin, cout, kernel, padding=kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(),
    ]


def init_relu_net(net: nn.Module) -> None:
    """He (fan-in) normal weights and zero biases for convs and linears of a net without BN.

    PyTorch's default (uniform, gain 1/sqrt(3)) shrinks the signal layer by layer, so the
    deeper Caffe-era nets (NIN, AlexNet) never leave chance accuracy with it.
    """
    for m in net.modules():
        if isinstance(m, nn.Conv2d | nn.Linear):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class _FeaturesClassifier(nn.Module):
    """``classifier(features(x))``: the shape every plain network here shares."""

    features: nn.Sequential
    classifier: nn.Sequential

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))


class TinyCNN(_FeaturesClassifier):
    """Three BN-conv layers (16, 32, 32 channels by default) and one linear layer.

    Small enough to train to >= 95 % on 8x8 digits in seconds on two CPU cores; the
    flattened last feature map (not a global pool) gives the linear layer input columns
    per conv channel, as in LeNet-style heads.
    """

    def __init__(
        self, in_channels: int, num_classes: int, image_size: int, widths: tuple[int, int, int] = (16, 32, 32)
    ) -> None:
        super().__init__()
        a, b, c = widths
        self.features = nn.Sequential(
            *conv_bn_relu(in_channels, a),
            *conv_bn_relu(a, b),
            nn.MaxPool2d(2),
            *conv_bn_relu(b, c),
        )
        n = flat_features(self.features, in_channels, image_size)
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(n, num_classes))


class LeNet5(_FeaturesClassifier):
    """Caffe's LeNet: conv 20@5 -> max-pool -> conv 50@5 -> max-pool -> fc 500 -> ReLU -> fc.

    As in Caffe's ``lenet_train_test.prototxt`` there is no nonlinearity after either
    convolution. Needs images of at least 16x16.
    """

    def __init__(self, in_channels: int, num_classes: int, image_size: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 20, 5),
            nn.MaxPool2d(2),
            nn.Conv2d(20, 50, 5),
            nn.MaxPool2d(2),
        )
        n = flat_features(self.features, in_channels, image_size)
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(n, 500), nn.ReLU(), nn.Linear(500, num_classes)
        )
        init_relu_net(self)


class Cifar10Quick(_FeaturesClassifier):
    """Caffe's ``cifar10_quick``: conv 32@5, 32@5, 64@5 (pad 2), fc 64, fc classes.

    Layer order as in the prototxt: conv1 -> max-pool -> ReLU, conv2 -> ReLU -> avg-pool,
    conv3 -> ReLU -> avg-pool; pools are 3x3 stride 2 rounding up (Caffe's ceil mode); no
    ReLU between the two linear layers.
    """

    def __init__(self, in_channels: int, num_classes: int, image_size: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 32, 5, padding=2),
            nn.MaxPool2d(3, 2, ceil_mode=True),
            nn.ReLU(),
            nn.Conv2d(32, 32, 5, padding=2),
            nn.ReLU(),
            nn.AvgPool2d(3, 2, ceil_mode=True),
            nn.Conv2d(32, 64, 5, padding=2),
            nn.ReLU(),
            nn.AvgPool2d(3, 2, ceil_mode=True),
        )
        n = flat_features(self.features, in_channels, image_size)
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(n, 64), nn.Linear(64, num_classes))
        init_relu_net(self)


def _mlpconv(cin: int, widths: tuple[int, int, int], kernel: int) -> list[nn.Module]:
    """NIN's micro-network: one k x k conv then two 1x1 convs, each followed by ReLU."""
    layers: list[nn.Module] = []
    for i, cout in enumerate(widths):
        k = kernel if i == 0 else 1
        layers += [nn.Conv2d(cin, cout, k, padding=k // 2), nn.ReLU()]
        cin = cout
    return layers


def _nin_head(cin: int, num_classes: int) -> list[nn.Module]:
    """The last mlpconv (192@3, 192@1, classes@1) without a ReLU on the class maps."""
    return _mlpconv(cin, (192, 192, num_classes), 3)[:-1]


class NIN(_FeaturesClassifier):
    """Network-in-Network for CIFAR (Lin et al. 2014, the authors' Caffe model).

    Three mlpconv blocks (192-160-96, 192-192-192, 192-192-classes); max-pool and avg-pool
    3x3/2 (ceil mode) with dropout 0.5 between blocks. The classifier is the last 1x1 conv
    (``num_classes`` channels) then global average pooling; that conv is a prunable
    channel source like any other. The Caffe model's ReLU on the class maps is left out:
    from random initialisation it kills whole class maps and training stalls at chance.
    """

    def __init__(self, in_channels: int, num_classes: int, image_size: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            *_mlpconv(in_channels, (192, 160, 96), 5),
            nn.MaxPool2d(3, 2, ceil_mode=True),
            nn.Dropout(0.5),
            *_mlpconv(96, (192, 192, 192), 5),
            nn.AvgPool2d(3, 2, ceil_mode=True),
            nn.Dropout(0.5),
            *_nin_head(192, num_classes),
        )
        flat_features(self.features, in_channels, image_size)  # fail early if too small
        self.classifier = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        init_relu_net(self)


class AlexNetCifar(_FeaturesClassifier):
    """AlexNet adapted to 32x32 inputs, keeping its channel widths and two-GPU groups.

    conv1 96@5 -> conv2 256@5 (groups 2) -> conv3 384@3 -> conv4 384@3 (groups 2) ->
    conv5 256@3 (groups 2), ReLU after each, 3x3/2 max-pools (ceil mode) after conv1,
    conv2 and conv5; fc 1024 -> fc 1024 (ReLU, dropout 0.5) -> fc classes. Choices for
    CIFAR: stride-1 5x5 first conv, no LRN (modern ports drop it, and the LM second-order
    pass has no rule for it), 1024-wide fully connected layers instead of 4096.
    """

    def __init__(self, in_channels: int, num_classes: int, image_size: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 96, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(3, 2, ceil_mode=True),
            nn.Conv2d(96, 256, 5, padding=2, groups=2),
            nn.ReLU(),
            nn.MaxPool2d(3, 2, ceil_mode=True),
            nn.Conv2d(256, 384, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(384, 384, 3, padding=1, groups=2),
            nn.ReLU(),
            nn.Conv2d(384, 256, 3, padding=1, groups=2),
            nn.ReLU(),
            nn.MaxPool2d(3, 2, ceil_mode=True),
        )
        n = flat_features(self.features, in_channels, image_size)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(n, 1024),
            nn.ReLU(),
            nn.Dropout(0.5),
            nn.Linear(1024, 1024),
            nn.ReLU(),
            nn.Dropout(0.5),
            nn.Linear(1024, num_classes),
        )
        init_relu_net(self)
