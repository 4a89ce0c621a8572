"""Projected gradient descent (Madry et al., ICLR 2018, https://arxiv.org/abs/1706.06083).

Distance: L-inf or L2 in [0, 1] pixel space. Random start in the ball, ``steps`` ascent steps on the
attacker's loss (sign of the gradient for L-inf, normalised gradient for L2), projection onto the ball and
onto [0, 1] after each step. With ``restarts`` > 1 a sample keeps the first restart that fools the model.
Samples already misclassified stop early (their x_adv is frozen), which cannot lower the success rate;
``early_stop=False`` runs every step on every sample, as adversarial training wants.

Arguments (defaults): eps 8/255, step_size 2/255, steps 10, restarts 1, norm linf, loss ce,
random_start True, direction both, early_stop True.

Example::

    x_adv = PGD(eps=8/255, steps=10)(model, x, y)   # x in [0,1], y with 1 = fake
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from attacks.base import ATTACKS, Attack, Direction, Loss, Norm, attack_loss, project


def random_start(x: torch.Tensor, norm: Norm, eps: float) -> torch.Tensor:
    """A uniform point of the L-inf ball, or a uniformly random direction scaled into the L2 ball."""
    if Norm(norm) is Norm.LINF:
        delta = torch.empty_like(x).uniform_(-eps, eps)
    else:
        delta = torch.randn_like(x)
        radius = torch.rand(len(x), device=x.device).view(-1, *([1] * (x.dim() - 1)))
        delta = delta / delta.flatten(1).norm(dim=1).view_as(radius).clamp_min(1e-12) * eps * radius
    return (x + delta).clamp(0, 1) - x


def ascent_direction(grad: torch.Tensor, norm: Norm) -> torch.Tensor:
    if Norm(norm) is Norm.LINF:
        return grad.sign()
    return grad / grad.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * (grad.dim() - 1)))


def misclassified(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return logits.argmax(1) != y


@ATTACKS.register("pgd")
@dataclass(frozen=True)
class PGD(Attack):
    """PGD (Madry et al. 2018): L-inf / L2, random start, restarts; early stop on fooled samples."""

    eps: float = 8 / 255
    step_size: float = 2 / 255
    steps: int = 10
    restarts: int = 1
    norm: Norm = Norm.LINF
    loss: Loss = Loss.CE
    random_start: bool = True
    direction: Direction = Direction.BOTH
    #: stop a sample once fooled (evaluation); training attacks set False to run every step (Madry et al.)
    early_stop: bool = True

    def __post_init__(self) -> None:
        check_budget(self.eps, self.norm)
        if self.steps < 1 or self.restarts < 1:
            raise ValueError(f"steps ({self.steps}) and restarts ({self.restarts}) must be >= 1")
        if self.step_size <= 0:
            raise ValueError(f"step_size must be > 0, got {self.step_size}")

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        best = x.clone()
        todo = torch.ones(len(x), dtype=torch.bool, device=x.device)
        for _ in range(self.restarts):
            idx = todo.nonzero().squeeze(1)
            if len(idx) == 0:
                break
            x_adv, fooled = self.run_once(model, x[idx], y[idx])
            best[idx] = x_adv
            todo[idx[fooled]] = False
        return best

    def run_once(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        delta = random_start(x, self.norm, self.eps) if self.random_start else torch.zeros_like(x)
        active = torch.ones(len(x), dtype=torch.bool, device=x.device)
        for _ in range(self.steps):
            idx = active.nonzero().squeeze(1)
            if len(idx) == 0:
                break
            d = delta[idx].requires_grad_(True)
            logits = model(x[idx] + d)
            grad, = torch.autograd.grad(attack_loss(logits, y[idx], self.loss).sum(), d)
            # a sample fooled before this step is frozen: further steps could only undo the success
            still = ~misclassified(logits.detach(), y[idx]) if self.early_stop else torch.ones_like(idx, dtype=torch.bool)
            step = self.step_size * ascent_direction(grad, self.norm)
            d_new = project(d.detach() + step, self.norm, self.eps)
            d_new = (x[idx] + d_new).clamp(0, 1) - x[idx]
            delta[idx[still]] = d_new[still]
            active[idx[~still]] = False
        x_adv = (x + delta).clamp(0, 1)
        with torch.no_grad():
            fooled = misclassified(model(x_adv), y)
        return x_adv, fooled


def check_budget(eps: float, norm: Norm) -> None:
    """L-inf budgets live in (0, 1] (pixel space); L2 budgets must be > 0."""
    if Norm(norm) is Norm.LINF and not 0 < eps <= 1:
        raise ValueError(f"eps={eps:.4g} is outside (0, 1] for an L-inf budget in [0,1] pixel space (try 8/255)")
    if Norm(norm) is Norm.L2 and not eps > 0:
        raise ValueError(f"eps={eps:.4g} must be > 0 for an L2 budget (try 0.5)")
