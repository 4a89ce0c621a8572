"""Fast gradient sign method (Goodfellow et al., ICLR 2015, https://arxiv.org/abs/1412.6572).

One gradient step on the attacker's loss: ``x_adv = clip(x + step_size * sign(grad))`` for L-inf, the
gradient normalised to unit L2 norm for L2. With ``random_start`` the step starts from a uniform point of
the ball and defaults to 1.25 * eps, as in "Fast is better than free" (Wong et al., ICLR 2020,
https://arxiv.org/abs/2001.03994); the result is projected back onto the eps-ball and onto [0, 1].

Arguments (defaults): eps 8/255, step_size None (= eps, or 1.25 * eps with random_start), norm linf,
loss ce, random_start False, direction both, backend ours (torchattacks: FGSM, FFGSM with random_start;
art: FastGradientMethod).

Example::

    x_adv = FGSM(eps=8/255)(model, x, y)   # x in [0,1], y with 1 = fake
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from afsl_bench.attacks.backends import Backend, check_backend, run_backend
from afsl_bench.attacks.base import ATTACKS, Attack
from afsl_bench.attacks.ops import (
    ascent_direction,
    check_budget,
    check_vocabulary,
    loss_and_grad,
    project,
    random_start,
)
from afsl_bench.attacks.vocabulary import Direction, Loss, Norm

#: Wong et al. (2020) found 1.25 * eps the largest step that avoids catastrophic overfitting in FGSM-AT
WONG_STEP_FACTOR = 1.25


@ATTACKS.register("fgsm")
@dataclass(frozen=True)
class FGSM(Attack):
    """FGSM (Goodfellow et al. 2015): one signed-gradient step; optional random start (Wong et al. 2020)."""

    eps: float = 8 / 255
    #: None: eps without random start (Goodfellow), 1.25 * eps with it (Wong et al.)
    step_size: float | None = None
    norm: Norm = Norm.LINF
    loss: Loss = Loss.CE
    random_start: bool = False
    direction: Direction = Direction.BOTH
    #: ours, or torchattacks' / ART's implementation with the same settings (attacks.backends)
    backend: Backend = Backend.OURS

    def __post_init__(self) -> None:
        check_vocabulary(self.norm, self.loss, self.direction)
        check_budget(self.eps, self.norm)
        if self.step_size is not None and not self.step_size > 0:
            raise ValueError(f"step_size must be > 0 (or None for the default), got {self.step_size}")
        check_backend(self)

    @property
    def step(self) -> float:
        if self.step_size is not None:
            return self.step_size
        return WONG_STEP_FACTOR * self.eps if self.random_start else self.eps

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.backend != Backend.OURS:
            return run_backend(self, model, x, y)
        delta = random_start(x, self.norm, self.eps) if self.random_start else torch.zeros_like(x)
        _, _, grad = loss_and_grad(model, x + delta, y, self.loss)
        delta = project(delta + self.step * ascent_direction(grad, self.norm), self.norm, self.eps)
        return (x + delta).clamp(0, 1)
