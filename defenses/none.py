"""Standard training: cross-entropy on clean data (the undefended baseline)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from afsl_bench.core.types import Batch
from afsl_bench.defenses.base import DEFENSES, Defense, TrainContext
from afsl_bench.detectors.base import Detector


@DEFENSES.register("none")
@dataclass(frozen=True)
class NoDefense(Defense):
    """No defense: cross-entropy on clean inputs (empirical risk minimisation, every paper's baseline)."""

    def loss(self, model: Detector, batch: Batch, ctx: TrainContext) -> tuple[torch.Tensor, dict[str, float]]:
        loss = F.cross_entropy(model(batch.x), batch.y)
        return loss, {"ce": loss.item()}
