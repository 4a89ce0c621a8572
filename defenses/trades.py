"""TRADES (Zhang et al., "Theoretically Principled Trade-off between Robustness and Accuracy", ICML 2019,
https://arxiv.org/abs/1901.08573).

loss = CE(f(x), y) + beta * KL(p(x) || p(x_adv)), beta = 6 (the paper's CIFAR-10 setting). As in the reference
code (github.com/yaodongyu/TRADES, ``trades.py``): x_adv starts at x + 0.001 * N(0, I) and climbs the KL to
the eval-mode prediction on x by L-inf sign-gradient steps, projected onto the eps-ball and [0, 1], with the
model in eval mode; both outer forward passes run in train mode, and the KL is summed over classes and
averaged over the batch (``batchmean``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from afsl_bench.attacks.ops import check_budget, frozen
from afsl_bench.attacks.vocabulary import Norm
from afsl_bench.core.types import Batch
from afsl_bench.defenses.base import DEFENSES, Defense, TrainContext
from afsl_bench.detectors.base import Detector


def kl_clean_adv(logits_clean: torch.Tensor, logits_adv: torch.Tensor) -> torch.Tensor:
    """KL(p_clean || p_adv), summed over classes, mean over samples (TRADES' robust term).

    The target goes in as log-probabilities (``log_target``): the gradient flows into p_clean too (as in
    the reference code), and d/dp [p log p] = log p + 1 is -inf where a float32 softmax underflows to 0 (a
    logit gap above about 104), which turned a finite loss into NaN gradients on meso4 (seed 1, epoch 6);
    in log space the same KL has finite gradients."""
    return F.kl_div(F.log_softmax(logits_adv, dim=1), F.log_softmax(logits_clean, dim=1),
                    reduction="batchmean", log_target=True)


def ascend_linf(x: torch.Tensor, x_start: torch.Tensor, objective: Callable[[torch.Tensor], torch.Tensor], *,
                eps: float, step_size: float, steps: int) -> torch.Tensor:
    """Maximise ``objective(x_adv)`` (a scalar) by L-inf sign-gradient steps from ``x_start``, projected
    onto the eps-ball around x and onto [0, 1]. The caller holds the model frozen (``attacks.base.frozen``).
    """
    x_adv = x_start.detach()
    for _ in range(steps):
        x_adv.requires_grad_(True)
        grad, = torch.autograd.grad(objective(x_adv), x_adv)
        x_adv = x_adv.detach() + step_size * grad.sign()
        x_adv = torch.min(torch.max(x_adv, x - eps), x + eps).clamp(0, 1)
    return x_adv.detach()


@DEFENSES.register("trades")
@dataclass(frozen=True)
class Trades(Defense):
    """TRADES (Zhang et al., ICML 2019, https://arxiv.org/abs/1901.08573): CE + beta * KL(clean || adv)."""

    adversarial: ClassVar[bool] = True

    beta: float = 6.0
    eps: float = 8 / 255
    step_size: float = 2 / 255
    # the reference code's 10 steps (github.com/yaodongyu/TRADES, train_trades_cifar10.py: num-steps 10)
    steps: int = 10

    def __post_init__(self) -> None:
        check_budget(self.eps, Norm.LINF)
        if self.steps < 1 or self.step_size <= 0 or self.beta < 0:
            raise ValueError(f"need steps >= 1, step_size > 0, beta >= 0; got {self.steps}, "
                             f"{self.step_size}, {self.beta}")

    def adversarial_examples(self, model: Detector, x: torch.Tensor) -> torch.Tensor:
        """TRADES' inner maximisation: x_adv maximising KL(p(x) || p(x_adv)), from x + 0.001 * N(0, I)."""
        with frozen(model):
            p_clean = F.softmax(model(x), dim=1).detach()

            def kl_sum(x_adv: torch.Tensor) -> torch.Tensor:
                return F.kl_div(F.log_softmax(model(x_adv), dim=1), p_clean, reduction="sum")

            start = x + 0.001 * torch.randn_like(x)
            return ascend_linf(x, start, kl_sum, eps=self.eps, step_size=self.step_size, steps=self.steps)

    def loss(self, model: Detector, batch: Batch, ctx: TrainContext) -> tuple[torch.Tensor, dict[str, float]]:
        x_adv = self.adversarial_examples(model, batch.x)
        logits = model(batch.x)
        natural = F.cross_entropy(logits, batch.y)
        robust = kl_clean_adv(logits, model(x_adv))
        return natural + self.beta * robust, {"ce": natural.item(), "kl": robust.item()}
