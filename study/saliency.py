"""The saliency data of a trial: which eval examples score the channels, at which tap.

SPEC §3: every step scores the units on ``eval_batches`` x ``eval_batch_size`` held-out
examples (the paper: 2 x 128), drawn once per trial with the trial's seed and fixed for
the whole trajectory. :class:`SaliencyData` is the value object every protocol, the
``scores`` command and rank-quality jobs share.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field
from pydantic.dataclasses import dataclass

from study.params import STRICT, validated
from taxonomy.errors import PrunetaxError

if TYPE_CHECKING:  # torch-free at import: the CLI builds its options from these objects
    from torch import Tensor

__all__ = ["SaliencyData", "PAPER_SALIENCY", "Batches", "Tap", "TapField", "EvalBatches", "EvalBatchSize"]

Batches = list[tuple["Tensor", "Tensor"]]
Tap = Literal["output", "conv"]

TapField = Annotated[Tap, Field(description="activation tap: output (after BN and nonlinearity) | conv")]
EvalBatches = Annotated[int, Field(ge=1, description="saliency batches per step (paper: 2)")]
EvalBatchSize = Annotated[int, Field(ge=1, description="examples per saliency batch (paper: 128)")]


@dataclass(frozen=True, config=STRICT)
class SaliencyData:
    """Tap point and size of the saliency batches (part of every trial's identity)."""

    tap: TapField = "output"
    eval_batches: EvalBatches = 2
    eval_batch_size: EvalBatchSize = 128

    @classmethod
    def make(cls, **params: object) -> SaliencyData:
        """Validated construction (a bad value is a :class:`PrunetaxError` naming it)."""
        return validated(cls, params, "saliency data")

    def as_dict(self) -> dict[str, object]:
        return {"tap": self.tap, "eval_batches": self.eval_batches, "eval_batch_size": self.eval_batch_size}

    @property
    def examples(self) -> int:
        return self.eval_batches * self.eval_batch_size

    def draw(self, eval_x: Tensor, eval_y: Tensor, indices: Tensor, seed: int) -> tuple[Batches, list[int]]:
        """The batches, drawn once with ``seed`` from the eval split, and their dataset indices."""
        import torch

        n_eval, need = eval_y.shape[0], self.examples
        if need > n_eval:
            raise PrunetaxError(
                f"the saliency data asks for {self.eval_batches} x {self.eval_batch_size} = {need} eval "
                f"examples but the eval split has {n_eval}; lower eval_batch_size or eval_batches."
            )
        idx = torch.randperm(n_eval, generator=torch.Generator().manual_seed(seed))[:need]
        x, y = eval_x[idx.to(eval_x.device)], eval_y[idx.to(eval_y.device)]
        b = self.eval_batch_size
        return [(x[i : i + b], y[i : i + b]) for i in range(0, need, b)], indices[idx].tolist()


PAPER_SALIENCY = SaliencyData()
"""The paper's saliency data: 2 x 128 eval examples, activations at the ``output`` tap."""
