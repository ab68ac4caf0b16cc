"""``characterise``: retrain only when needed, and count the steps it took (SPEC §3).

After a prune, if train accuracy (on a fixed probe of 1,024 training examples drawn with
the trial seed) fell below 90 % of its initial value, retrain until it recovers, capped
at ``retrain_steps``; the steps used are logged (the paper's characterisation mode).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic.dataclasses import dataclass

from study.params import STRICT
from study.protocols.base import register_protocol
from study.protocols.greedy import Retrainer
from study.protocols.retrain import Retrain, step_seed

if TYPE_CHECKING:
    from study.masks import MaskedModel
    from study.trajectory import Setup

__all__ = ["Characterise", "PROBE_SIZE"]

PROBE_SIZE = 1024


@register_protocol
@dataclass(frozen=True, config=STRICT)
class Characterise(Retrain):
    name = "characterise"
    summary = "greedy global pruning; retrain only when train accuracy fell below 90 % of its start"

    def retrainer(self, setup: Setup) -> Retrainer | None:
        import torch

        from study.evaluation import evaluate
        from study.retrain import characterise

        cfg = self.settings(setup)
        if cfg.steps == 0:
            return None
        x, y = setup.train
        g = torch.Generator().manual_seed(setup.seed)
        idx = torch.randperm(y.shape[0], generator=g)[:PROBE_SIZE].to(x.device)
        probe = (x[idx], y[idx])
        initial = 100.0 * evaluate(setup.model, *probe)[0]  # on the unpruned base model

        def run(masked: MaskedModel, step: int) -> int:
            return characterise(masked, x, y, probe, initial, cfg, step_seed(setup, step))

        return run
