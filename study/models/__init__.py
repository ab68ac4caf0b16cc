"""Model registry and builders: the paper's CNNs, tiny ones for the embedded digits data,
and any torchvision classifier as ``tv:<name>``.

Every model follows the rules the statistics collector relies on: torch.fx traces it,
each activation/pool is its own module called once, nothing runs in place, and the
forward pass has no data-dependent control flow.
"""

from study.models.registry import (
    MODELS,
    Hyperparams,
    ModelEntry,
    build,
    entry,
    hyperparams,
    names,
    register_model,
)
from study.models.tv import tv_names

__all__ = [
    "MODELS",
    "Hyperparams",
    "ModelEntry",
    "build",
    "entry",
    "hyperparams",
    "names",
    "register_model",
    "tv_names",
]
