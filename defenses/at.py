"""PGD adversarial training (Madry et al., "Towards Deep Learning Models Resistant to Adversarial Attacks",
ICLR 2018, https://arxiv.org/abs/1706.06083).

Minimises the cross-entropy on L-inf PGD examples only (no clean term, as in the paper): the inner PGD runs
every step on every sample (``early_stop=False``) from a uniform random start, with the model in eval mode
(``attacks.base.frozen``); the outer loss is computed in train mode.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from afsl_bench.attacks.ops import check_budget
from afsl_bench.attacks.pgd import PGD
from afsl_bench.attacks.vocabulary import Loss, Norm
from afsl_bench.core.types import Batch
from afsl_bench.defenses.base import DEFENSES, Defense, TrainContext
from afsl_bench.detectors.base import Detector


@DEFENSES.register("at")
@dataclass(frozen=True)
class AdversarialTraining(Defense):
    """PGD adversarial training (Madry et al., ICLR 2018, https://arxiv.org/abs/1706.06083)."""

    adversarial: ClassVar[bool] = True

    eps: float = 8 / 255
    step_size: float = 2 / 255
    # PGD-10 of 2/255: the reference step count (TRADES' code: 10 steps; the AFSL paper trains and evaluates
    # with PGD-10), the same for every adversarial defense of the suite
    steps: int = 10

    def __post_init__(self) -> None:
        check_budget(self.eps, Norm.LINF)
        if self.steps < 1 or self.step_size <= 0:
            raise ValueError(f"steps ({self.steps}) must be >= 1 and step_size ({self.step_size}) > 0")

    @property
    def attack(self) -> PGD:
        """The training attack: PGD-CE on every sample, every step."""
        return PGD(eps=self.eps, step_size=self.step_size, steps=self.steps, loss=Loss.CE, early_stop=False)

    def loss(self, model: Detector, batch: Batch, ctx: TrainContext) -> tuple[torch.Tensor, dict[str, float]]:
        x_adv = self.attack(model, batch.x, batch.y)
        loss = F.cross_entropy(model(x_adv), batch.y)
        return loss, {"ce_adv": loss.item()}
