"""VGG-16 with batch normalisation, CIFAR style (Simonyan & Zisserman; Liu et al. 2017 port).

Thirteen 3x3 BN-conv layers in five stages (64-64, 128-128, 256x3, 512x3, 512x3) and
one linear classifier on the flattened map. A stage's 2x2 max-pool is kept only while
the map is at least 2x2, so the same network runs on 8x8 digits and 32x32 CIFAR.
"""

from __future__ import annotations

from torch import Tensor, nn

from study.models.plain import conv_bn_relu
from study.models.shapes import flat_features

__all__ = ["VGG16BN"]

_STAGES = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))


class VGG16BN(nn.Module):
    """``features`` (13 BN-convs, up to 5 pools) then ``classifier`` (flatten, linear)."""

    def __init__(self, in_channels: int, num_classes: int, image_size: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin, size = in_channels, image_size
        for stage in _STAGES:
            for cout in stage:
                layers += conv_bn_relu(cin, cout)
                cin = cout
            if size >= 2:
                layers.append(nn.MaxPool2d(2))
                size //= 2
        self.features = nn.Sequential(*layers)
        n = flat_features(self.features, in_channels, image_size)
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(n, num_classes))

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))
