"""The defense contract: a frozen dataclass with ``loss(model, batch, ctx) -> (loss, logs)``.

A defense only says what to minimise on one batch; the shared loop (``defenses.training``) owns the
optimiser, schedule, validation-based model selection, NaN guard, checkpoints and resume.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from afsl_bench.core.registry import Registry
from afsl_bench.core.types import Batch
from afsl_bench.detectors.base import Detector, Head

DEFENSES: Registry = Registry("defense")


@dataclass
class TrainContext:
    """What a loss may need beyond the batch."""

    prior_fake: float  # fraction of fakes in the training split (AFSL's logit adjustment)
    epoch: int = 0
    step: int = 0


@dataclass(frozen=True)
class Defense:
    """Base class for training defenses."""

    #: the classifier head this defense needs (None: any); the runner builds the detector with it
    head: ClassVar[Head | None] = None
    #: True when training crafts adversarial examples (validation then also tracks robust accuracy)
    adversarial: ClassVar[bool] = False

    def loss(self, model: Detector, batch: Batch, ctx: TrainContext) -> tuple[torch.Tensor, dict[str, float]]:
        raise NotImplementedError
