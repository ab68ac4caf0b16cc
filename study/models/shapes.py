"""Feature-map geometry found by running the network, not by hand arithmetic.

Builders size their first linear layer from ``image_size``; probing a zero image through
the convolutional part is exact for every padding/ceil-mode combination, and an image
too small for the architecture becomes a :class:`~taxonomy.errors.PrunetaxError`.
"""

from __future__ import annotations

import torch
from torch import nn

from taxonomy.errors import PrunetaxError

__all__ = ["feature_shape", "flat_features"]


def feature_shape(features: nn.Module, in_channels: int, image_size: int) -> tuple[int, ...]:
    """Shape (C, H, W) of ``features`` applied to one ``in_channels`` x ``image_size``² image."""
    was_training = features.training
    features.eval()  # BN on a single 1x1 example is undefined in training mode
    try:
        with torch.no_grad():
            out = features(torch.zeros(1, in_channels, image_size, image_size))
    except RuntimeError as err:
        raise PrunetaxError(
            f"`image_size` {image_size} is too small for this architecture ({err}). "
            "Use larger images (e.g. dataset digits16 or digits32)."
        ) from None
    finally:
        features.train(was_training)
    return tuple(out.shape[1:])


def flat_features(features: nn.Module, in_channels: int, image_size: int) -> int:
    """Number of values ``features`` produces per image (the first linear layer's width)."""
    shape = feature_shape(features, in_channels, image_size)
    n = 1
    for d in shape:
        n *= d
    return n
