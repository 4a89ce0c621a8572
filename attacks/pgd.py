"""Projected gradient descent (Madry et al., ICLR 2018, https://arxiv.org/abs/1706.06083).

Distance: L-inf or L2 in [0, 1] pixel space. Random start in the ball, ``steps`` ascent steps on the
attacker's loss (sign of the gradient for L-inf, normalised gradient for L2), projection onto the ball and
onto [0, 1] after each step. With ``restarts`` > 1 a sample keeps the first restart that fools the model.
Samples already misclassified stop early (their x_adv is frozen), which cannot lower the success rate;
``early_stop=False`` runs every step on every sample, as adversarial training wants.

Arguments (defaults): eps 8/255, step_size None (= 2.5 * eps / steps, Madry et al.'s rule: 2/255 for
L-inf 8/255 with 10 steps, and scaled with eps for L2), steps 10, restarts 1, norm linf, loss ce,
random_start True, direction both, early_stop True, backend ours (torchattacks, art: their PGD with the
same settings; both need early_stop false).

Example::

    x_adv = PGD(eps=8/255, steps=10)(model, x, y)   # x in [0,1], y with 1 = fake
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
    check_positive_int,
    check_vocabulary,
    decided,
    exact,
    loss_and_grad,
    misclassified,
    project,
    random_start,
)
from afsl_bench.attacks.vocabulary import Direction, Loss, Norm


@ATTACKS.register("pgd")
@dataclass(frozen=True)
class PGD(Attack):
    """PGD (Madry et al. 2018): L-inf / L2, random start, restarts; early stop on fooled samples."""

    eps: float = 8 / 255
    step_size: float | None = None
    steps: int = 10
    restarts: int = 1
    norm: Norm = Norm.LINF
    loss: Loss = Loss.CE
    random_start: bool = True
    direction: Direction = Direction.BOTH
    #: stop a sample once fooled (evaluation); training attacks set False to run every step (Madry et al.)
    early_stop: bool = True
    #: ours, or torchattacks' / ART's implementation with the same settings (attacks.backends)
    backend: Backend = Backend.OURS

    def __post_init__(self) -> None:
        check_vocabulary(self.norm, self.loss, self.direction)
        check_budget(self.eps, self.norm)
        check_positive_int(steps=self.steps, restarts=self.restarts)
        if self.step_size is not None and not self.step_size > 0:
            raise ValueError(f"step_size must be > 0, got {self.step_size}")
        check_backend(self)

    @property
    def step(self) -> float:
        return self.step_size if self.step_size is not None else 2.5 * self.eps / self.steps

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.backend != Backend.OURS:
            return run_backend(self, model, x, y)
        best = x.clone()
        todo = torch.ones(len(x), dtype=torch.bool, device=x.device)
        for restart in range(self.restarts):
            idx = todo.nonzero().squeeze(1)
            if len(idx) == 0:
                break
            x_adv = self.run_once(model, x[idx], y[idx])
            best[idx] = x_adv
            if restart + 1 < self.restarts:  # scoring the result costs a forward pass: only when it is used
                with torch.no_grad():
                    todo[idx[misclassified(exact(model)(x_adv), y[idx])]] = False
        return best

    def run_once(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """One run from a fresh start; returns x_adv."""
        delta = random_start(x, self.norm, self.eps) if self.random_start else torch.zeros_like(x)
        if not self.early_stop:  # every sample steps every time: no per-step indexing
            for _ in range(self.steps):
                delta, _ = self.ascend(model, x, y, delta)
            return (x + delta).clamp(0, 1)
        active = torch.ones(len(x), dtype=torch.bool, device=x.device)
        for _ in range(self.steps):
            idx = active.nonzero().squeeze(1)
            if len(idx) == 0:
                break
            d_new, logits = self.ascend(model, x[idx], y[idx], delta[idx])
            # a sample fooled before this step is frozen: further steps could only undo the success
            still = ~decided(model, x[idx] + delta[idx], logits, y[idx])
            delta[idx[still]] = d_new[still]
            active[idx[~still]] = False
        return (x + delta).clamp(0, 1)

    def ascend(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, delta: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One projected ascent step from x + delta: (new delta, logits at x + delta)."""
        logits, _, grad = loss_and_grad(model, x + delta, y, self.loss)
        # in place where the operand is ours: fewer fresh image-sized tensors (page faults on CPU)
        d_new = project(ascent_direction(grad, self.norm).mul_(self.step).add_(delta), self.norm, self.eps)
        return (x + d_new).clamp_(0, 1).sub_(x), logits
