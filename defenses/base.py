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

    #: the head of the defense's paper, given to a detector whose ``head`` is unset (None: the detector's
    #: default); any head can be chosen with any defense (``--set detector.head=...``)
    head: ClassVar[Head | None] = None
    #: True when training crafts adversarial examples
    adversarial: ClassVar[bool] = False

    def loss(self, model: Detector, batch: Batch, ctx: TrainContext) -> tuple[torch.Tensor, dict[str, float]]:
        raise NotImplementedError
