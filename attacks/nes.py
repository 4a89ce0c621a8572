"""NES gradient-estimation attack (Ilyas, Engstrom, Athalye & Lin, ICML 2018, "Black-box adversarial
attacks with limited queries and information", https://arxiv.org/abs/1804.08598), the score-based attack
Hussain et al. (WACV 2021, "Adversarial deepfakes", https://arxiv.org/abs/2002.12749) ran against deepfake
detectors.

PGD on a gradient estimated from scores alone (every forward under ``torch.no_grad``). Natural evolution
strategies with antithetic Gaussian sampling: with n/2 pairs u_i ~ N(0, I),

    g = 1 / (n sigma) * sum_i (L(x + sigma u_i) - L(x - sigma u_i)) u_i

(query points clipped to [0, 1]), then a PGD step (sign of g for L-inf, g / ||g||_2 for L2) and the
projection onto the eps-ball and [0, 1].

Query accounting (per sample, every model forward counts): an iteration spends one forward on the current
point (a sample stops there once the model's argmax is wrong) and ``samples`` on the estimate, so the
budget allows ``iterations = queries // (samples + 1)``; the point after the last step is returned
unchecked. The ``queries`` info column is what each sample spent. The noisy copies are evaluated in chunks
of at most ``MAX_BATCH`` images, whatever the batch size.

Step size: ``step_size=None`` takes ``max(2.5 / iterations, 0.1) * eps``: Madry et al.'s 2.5 * eps / steps
(PGD's rule: enough total movement to cross the ball and come back), but never below eps / 10, since a
noisy estimate makes small steps waste the budget (Ilyas et al. stepped 0.01 with eps 0.05). On the test
fixture (1000 queries, 20 samples, 47 iterations) steps of 0.05 / 0.1 / 0.2 / 0.4 eps left 89 / 86 / 88 /
90 % robust at L-inf 8/255 and 88 / 74 / 66 / 76 % at L2 1.0.

Arguments (defaults): eps 8/255, norm linf, queries 2000 (39 iterations of 50 samples), samples 50 (even),
sigma 1e-3, step_size None (see above), loss margin, direction both, random_start False.

Example::

    out = NES(eps=8/255, queries=2000).run(model, x, y)   # x in [0,1], y with 1 = fake
    out.x_adv, out.info["queries"]
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from afsl_bench.attacks.base import ATTACKS, Attack
from afsl_bench.attacks.ops import (
    ascent_direction,
    attack_loss,
    check_budget,
    check_positive_int,
    check_vocabulary,
    decided,
    project,
    random_start,
)
from afsl_bench.attacks.vocabulary import Direction, Loss, Norm

#: most noisy copies (images, or clips for a video detector) sent to the model in one forward
MAX_BATCH = 1024
#: default step = max(MADRY / iterations, FLOOR) * eps
MADRY, FLOOR = 2.5, 0.1

Score = Callable[[torch.Tensor], torch.Tensor]


def nes_gradient(
    score: Score, x: torch.Tensor, y: torch.Tensor, loss: Loss, samples: int, sigma: float
) -> torch.Tensor:
    """Antithetic NES estimate of the gradient of the per-sample loss at x, in chunks of <= MAX_BATCH."""
    pairs = samples // 2
    rows_per = max(1, MAX_BATCH // samples)
    pairs_per = max(1, min(pairs, MAX_BATCH // 2))
    grad = torch.zeros_like(x)
    for r0 in range(0, len(x), rows_per):
        xr, yr = x[r0 : r0 + rows_per, None], y[r0 : r0 + rows_per]
        for p0 in range(0, pairs, pairs_per):
            k = min(pairs_per, pairs - p0)
            u = torch.randn(len(xr), k, *x.shape[1:], device=x.device, dtype=x.dtype)
            points = torch.cat([xr + sigma * u, xr - sigma * u], 1).clamp_(0, 1).flatten(0, 1)
            values = attack_loss(score(points), yr.repeat_interleave(2 * k), loss).view(len(xr), 2 * k)
            diff = (values[:, :k] - values[:, k:]).to(x.dtype)
            grad[r0 : r0 + rows_per] += (diff.view(*diff.shape, *[1] * (x.dim() - 1)) * u).sum(1)
    return grad / (samples * sigma)


@ATTACKS.register("nes")
@dataclass(frozen=True)
class NES(Attack):
    """NES attack (Ilyas et al. 2018): PGD on an antithetic-Gaussian gradient estimate; L-inf / L2."""

    requires_grad: ClassVar[bool] = False

    eps: float = 8 / 255
    norm: Norm = Norm.LINF
    #: model forwards per sample, all included (one per iteration on the current point, plus the estimates)
    queries: int = 2000
    #: forwards per gradient estimate (samples / 2 antithetic pairs)
    samples: int = 50
    sigma: float = 1e-3
    #: None: max(2.5 / iterations, 0.1) * eps (module docstring)
    step_size: float | None = None
    loss: Loss = Loss.MARGIN
    direction: Direction = Direction.BOTH
    random_start: bool = False

    def __post_init__(self) -> None:
        check_vocabulary(self.norm, self.loss, self.direction, norms=self.norms)
        check_budget(self.eps, self.norm)
        check_positive_int(queries=self.queries, samples=self.samples)
        if self.samples % 2:
            raise ValueError(f"samples must be even (antithetic pairs), got {self.samples}")
        if self.queries < self.samples + 1:
            raise ValueError(
                f"queries={self.queries} is below one iteration's {self.samples + 1} forwards "
                f"(samples={self.samples} for the estimate plus 1 on the current point)"
            )
        if not self.sigma > 0:
            raise ValueError(f"sigma must be > 0, got {self.sigma} (Ilyas et al.: 1e-3)")
        if self.step_size is not None and not self.step_size > 0:
            raise ValueError(f"step_size must be > 0 (or None for the default), got {self.step_size}")

    @property
    def iterations(self) -> int:
        return self.queries // (self.samples + 1)

    @property
    def step(self) -> float:
        if self.step_size is not None:
            return self.step_size
        return max(MADRY / self.iterations, FLOOR) * self.eps

    def perturb_with_info(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        with torch.no_grad():
            return self.search(model, x, y)

    def search(self, score: Score, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, dict]:
        delta = random_start(x, self.norm, self.eps) if self.random_start else torch.zeros_like(x)
        queries = torch.zeros(len(x), device=x.device)
        active = torch.ones(len(x), dtype=torch.bool, device=x.device)
        for _ in range(self.iterations):
            rows = active.nonzero().squeeze(1)
            if len(rows) == 0:
                break
            x_cur = x[rows] + delta[rows]
            queries[rows] += 1
            fooled = decided(score, x_cur, score(x_cur), y[rows])
            active[rows[fooled]] = False
            rows, x_cur = rows[~fooled], x_cur[~fooled]
            if len(rows) == 0:
                break
            grad = nes_gradient(score, x_cur, y[rows], self.loss, self.samples, self.sigma)
            queries[rows] += self.samples
            d_new = project(delta[rows] + self.step * ascent_direction(grad, self.norm), self.norm, self.eps)
            delta[rows] = (x[rows] + d_new).clamp(0, 1) - x[rows]
        return x + delta, {"queries": queries}
