"""Auto-PGD (Croce & Hein, ICML 2020, "Reliable evaluation of adversarial robustness with an ensemble of
diverse parameter-free attacks", https://arxiv.org/abs/2003.01690), Algorithm 1.

PGD with momentum and a per-sample step size that adapts itself: the step starts at 2 * eps; at the
checkpoints w_j = ceil(p_j * steps), p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06),
a sample halves its step and restarts from its best point when

- condition 1: the loss went up in fewer than rho * (w_j - w_{j-1}) of the steps since the last
  checkpoint, or
- condition 2: its step was not halved at the last checkpoint and its best loss has not improved since.

Each step is ``z = P(x_k + eta * s(grad))`` and
``x_{k+1} = P(x_k + alpha (z - x_k) + (1 - alpha)(x_k - x_{k-1}))`` with alpha = 0.75 (1 on the first
step), s = sign for L-inf and the L2-normalised gradient for L2, P the projection onto the eps-ball
intersected with [0, 1].

A sample returns its first iterate that fools the model, else its highest-loss iterate (over restarts too).
Fooled samples stop early (``early_stop``), which cannot change what is returned: every sample's state is
its own. Departures from the reference code (auto-attack, also torchattacks): the checkpoints follow the
paper's formula, condition 1 uses the paper's strict "<", condition 2 may fire at the first checkpoint (the
paper's w_0 = 0 has no halving), and the last iterate's loss is computed without a gradient.

Losses: ``ce`` and the binary logit ``margin`` (z_wrong - z_true, see ``attacks.vocabulary.Loss``), which replaces
the DLR loss that needs three logits and keeps its gradient where softmax cross-entropy saturates.

Arguments (defaults): eps 8/255, steps 100 (the paper's budget), restarts 1, norm linf, loss ce,
rho 0.75, momentum 0.75, random_start True, direction both, early_stop True, backend ours (torchattacks:
its APGD, loss ce only; art: AutoProjectedGradientDescent).

Example::

    x_adv = APGD(eps=8/255, steps=100, loss="margin")(model, x, y)   # x in [0,1], y with 1 = fake
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from afsl_bench.attacks.apgd_state import State
from afsl_bench.attacks.backends import Backend, check_backend, run_backend
from afsl_bench.attacks.base import ATTACKS, Attack
from afsl_bench.attacks.ops import (
    ascent_direction,
    attack_loss,
    check_budget,
    check_positive_int,
    check_vocabulary,
    decided,
    loss_and_grad,
    per_sample,
    random_start,
)
from afsl_bench.attacks.vocabulary import Direction, Loss, Norm

#: the paper's initial step, relative to eps, for L-inf and L2
INITIAL_STEP = 2.0


def checkpoints(steps: int) -> list[int]:
    """The iterations w_j (1 <= w_j <= steps) at which step sizes are revised (paper, Section 3.2)."""
    p_prev, p, found = 0.0, 0.22, []
    while p <= 1:
        # round away float noise: 0.22 * 100 must give 22, not 23
        w = math.ceil(round(p * steps, 6))
        if w >= 1 and (not found or w > found[-1]):
            found.append(w)
        p_prev, p = p, p + max(p - p_prev - 0.03, 0.06)
    return found


@ATTACKS.register("apgd")
@dataclass(frozen=True)
class APGD(Attack):
    """APGD (Croce & Hein 2020): momentum PGD with per-sample step-size halving; L-inf / L2, CE / margin."""

    eps: float = 8 / 255
    steps: int = 100
    restarts: int = 1
    norm: Norm = Norm.LINF
    loss: Loss = Loss.CE
    #: condition 1 threshold: halve when the loss rose in fewer than rho of the steps (paper: 0.75)
    rho: float = 0.75
    #: weight of the new step against the previous move (paper: 0.75)
    momentum: float = 0.75
    random_start: bool = True
    direction: Direction = Direction.BOTH
    #: drop a sample once fooled; the returned x_adv is the same either way, only faster
    early_stop: bool = True
    #: ours, or torchattacks' / ART's implementation with the same settings (attacks.backends)
    backend: Backend = Backend.OURS

    def __post_init__(self) -> None:
        check_vocabulary(self.norm, self.loss, self.direction)
        check_budget(self.eps, self.norm)
        check_positive_int(steps=self.steps, restarts=self.restarts)
        for name in ("rho", "momentum"):
            if not 0 < getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in (0, 1], got {getattr(self, name)} (paper: 0.75)")
        check_backend(self)

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.backend != Backend.OURS:
            return run_backend(self, model, x, y)
        best, best_loss, fooled = self.run_once(model, x, y)
        for _ in range(self.restarts - 1):
            rows = (~fooled).nonzero().squeeze(1)
            if len(rows) == 0:
                break
            x_r, loss_r, fooled_r = self.run_once(model, x[rows], y[rows])
            better = fooled_r | (loss_r > best_loss[rows])
            best[rows[better]] = x_r[better]
            best_loss[rows[better]] = loss_r[better]
            fooled[rows[fooled_r]] = True
        return best

    def run_once(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One run from a fresh start: per sample (x_adv, its loss, whether it fools the model)."""
        state = self.init_state(model, x, y)
        marks = checkpoints(self.steps)
        last_mark = 0
        for k in range(1, self.steps + 1):
            if self.early_stop:
                state = state.retire_fooled()
                if len(state.rows) == 0:
                    break
            self.step(model, state, need_grad=k < self.steps)
            if k in marks and k < self.steps:  # a halving after the last step would change nothing
                state.checkpoint(self.rho * (k - last_mark))
                last_mark = k
        return state.finish()

    def init_state(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> State:
        start = x + random_start(x, self.norm, self.eps) if self.random_start else x.clone()
        logits, loss, grad = loss_and_grad(model, start, y, self.loss)
        step = torch.full((len(x),), INITIAL_STEP * self.eps, device=x.device, dtype=loss.dtype)
        fooled = decided(model, start, logits, y)
        return State.start(x, y, start, loss, grad, fooled, step, self.norm, self.eps)

    def step(self, model: nn.Module, s: State, need_grad: bool) -> None:
        """x_{k+1} from x_k (momentum step, Algorithm 1), then its loss, gradient and bookkeeping."""
        alpha = self.momentum if s.moved else 1.0
        eta = per_sample(s.step, s.cur)
        if Norm(self.norm) is Norm.LINF:
            # consumes the gradient at x_k in place (nothing reads it later; x_max keeps its own copy): fewer
            # fresh image-sized tensors, which on CPU cost page faults
            z = s.clip_(s.grad.sign_().mul_(eta).add_(s.cur))
        else:
            z = s.clip_(torch.addcmul(s.cur, eta, ascent_direction(s.grad, self.norm)))
        # x_k + alpha (z - x_k) + (1 - alpha)(x_k - x_{k-1}) = lerp(2 x_k - x_{k-1}, z, alpha): fewer passes
        new = s.clip_(torch.sub(s.cur, s.prev).add_(s.cur).lerp_(z, alpha))
        if need_grad:
            logits, loss, grad = loss_and_grad(model, new, s.y, self.loss)
        else:  # the last iterate is only scored: no backward pass, and no step will need a gradient
            with torch.no_grad():
                logits = model(new)
            loss, grad = attack_loss(logits, s.y, self.loss), None
        # only a sample's first fooling iterate counts: the fooled ones need no confirming again
        fooled = s.fooled | decided(model, new, logits, s.y, among=~s.fooled)
        s.advance(new, loss, grad, fooled)
