"""FAB, the Fast Adaptive Boundary attack (Croce & Hein, ICML 2020, "Minimally distorted adversarial examples
with a fast adaptive boundary attack", https://arxiv.org/abs/1907.02044), untargeted, L-inf and L2.

A minimum-norm attack. At the current point x_k the decision boundary is linearised: with the two logits of
a detector the boundary between the true class and the only other one is the zero set of the margin
f = z_wrong - z_true, so the hyperplane is {z : f(x_k) + grad f(x_k) . (z - x_k) = 0} (the paper's "closest
class" is the wrong one; no third logit is read, so FAB is binary-safe as it stands). Each step projects
both x_k and the original x onto that hyperplane intersected with the box [0, 1]^n in the attack's norm
(``box_projection``: the exact solution, from sorting the coordinates' breakpoints), giving steps d_k and
d_0, and moves to

    x_{k+1} = clip((x_k + eta d_k)(1 - alpha) + (x + eta d_0) alpha),  alpha = min(|d_k| / (|d_k| + |d_0|), alpha_max)

(eta overshoots the boundary; the pull towards x keeps the point close). Whenever x_{k+1} fools the
detector it is kept if closer to x than the best so far, and the iterate steps back towards x:
x_{k+1} = x + beta (x_{k+1} - x) (Algorithm 1 of the paper). Restarts after the first start at a random
point at half the best distance found (at most eps) from x, as in the reference code.

Budget: a sample counts as broken only when its closest adversarial lies within ``eps``; otherwise, or when
no adversarial was found, it comes back unchanged (as in AutoAttack). The per-sample column ``fab_norm`` is
the distance of the closest adversarial found in the attack's norm (NaN where none was), so the table also
shows how far beyond the budget a robust sample's boundary lies.

Arguments (defaults, the reference code's): eps 8/255, norm linf, steps 100, restarts 1, alpha_max 0.1,
eta 1.05, beta 0.9, direction both, backend ours (torchattacks: its FAB, untargeted, two classes).

Example::

    x_adv = FAB(eps=8/255)(model, x, y)                  # x in [0,1], y with 1 = fake
    out = FAB(eps=0.5, norm="l2").run(model, x, y); out.info["fab_norm"]
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from afsl_bench.attacks.backends import Backend, check_backend, run_backend
from afsl_bench.attacks.base import ATTACKS, Attack
from afsl_bench.attacks.ops import (
    check_budget,
    check_positive_int,
    check_vocabulary,
    decided,
    exact,
    loss_and_grad,
    misclassified,
    per_sample,
)
from afsl_bench.attacks.vocabulary import Direction, Loss, Norm

#: distances below this count as zero (the reference code's floor in the step weights)
TINY = 1e-8


def lp_norm(v: torch.Tensor, norm: Norm) -> torch.Tensor:
    flat = v.flatten(1)
    return flat.abs().amax(1) if Norm(norm) is Norm.LINF else flat.norm(dim=1)


def box_projection(t: torch.Tensor, w: torch.Tensor, b: torch.Tensor, norm: Norm) -> torch.Tensor:
    """Row-wise, the smallest step d in the norm (L-inf or L2) with w . (t + d) = b and t + d in [0, 1]^n;
    where the box cannot reach the hyperplane, the step into the box corner that gets closest.

    With c = b - w . t made positive (flipping w), coordinate i moves by d_i = sign(w_i) min(lam r_i, room_i),
    where room_i is how far the box lets it move in w's direction and r_i = 1 (L-inf: |d|_inf = lam) or
    |w_i| (L2: d = lam w until a coordinate hits the box, the KKT solution). w . d = h(lam) is nondecreasing
    and piecewise linear with a knee at lam_i = room_i / r_i per coordinate: sorting the knees gives the
    segment where h(lam) = c, and lam on it in closed form."""
    c = b - (w * t).sum(1)
    w = w * torch.where(c < 0, -1.0, 1.0).to(w.dtype)[:, None]
    c = c.abs()
    room = torch.where(w > 0, 1 - t, t)
    moving = w != 0
    rate = moving.to(w.dtype) if Norm(norm) is Norm.LINF else w.abs()
    gain = w.abs()  # what a unit move of coordinate i adds to w . d
    knee = torch.where(moving, room / rate.where(moving, 1.0), torch.finfo(w.dtype).max)
    order = knee.argsort(1)
    knee, gain_s, rate_s, room_s = (v.gather(1, order) for v in (knee, gain, rate, room))
    saturated = torch.cumsum(gain_s * room_s, 1)  # w . d from the coordinates at their box by knee k
    # the slope of the unsaturated coordinates after knee k: a suffix sum (total - prefix cancels to a tiny
    # negative number once every moving coordinate is saturated, and the unused knees are huge)
    suffix = torch.cumsum((gain_s * rate_s).flip(1), 1).flip(1)
    slope = torch.cat([suffix[:, 1:], torch.zeros_like(suffix[:, :1])], 1)
    passed = (saturated + knee * slope < c[:, None]).sum(1, keepdim=True)  # knees where h is still below c
    before = (passed - 1).clamp_min(0)
    done = torch.where(passed > 0, saturated.gather(1, before), 0.0).squeeze(1)
    rising = torch.where(passed > 0, slope.gather(1, before), suffix[:, :1]).squeeze(1)
    lam = torch.where(rising > 0, (c - done) / rising.clamp_min(torch.finfo(w.dtype).tiny), float("inf"))
    step = torch.minimum(lam[:, None] * rate, room)
    return torch.where(moving, w.sign() * step, 0.0)


@ATTACKS.register("fab")
@dataclass(frozen=True)
class FAB(Attack):
    """FAB (Croce & Hein 2020): minimum-norm boundary projections, untargeted, L-inf / L2; eps-bounded."""

    norms = (Norm.LINF, Norm.L2)

    eps: float = 8 / 255
    norm: Norm = Norm.LINF
    steps: int = 100
    restarts: int = 1
    #: the largest weight of the step from the original point (paper: 0.1)
    alpha_max: float = 0.1
    #: overshoot past the linearised boundary (paper: 1.05)
    eta: float = 1.05
    #: the step back towards the original point after a success (paper: 0.9)
    beta: float = 0.9
    direction: Direction = Direction.BOTH
    backend: Backend = Backend.OURS

    def __post_init__(self) -> None:
        check_vocabulary(norm=self.norm, direction=self.direction, norms=self.norms)
        check_budget(self.eps, self.norm)
        check_positive_int(steps=self.steps, restarts=self.restarts)
        if not 0 <= self.alpha_max <= 1:
            raise ValueError(f"alpha_max must be in [0, 1], got {self.alpha_max} (paper: 0.1)")
        if not self.eta >= 1:
            raise ValueError(f"eta must be >= 1 (an overshoot), got {self.eta} (paper: 1.05)")
        if not 0 < self.beta < 1:
            raise ValueError(f"beta must be in (0, 1), got {self.beta} (paper: 0.9)")
        check_backend(self)

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.perturb_with_info(model, x, y)[0]

    def perturb_with_info(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if Backend(self.backend) is not Backend.OURS:
            return run_backend(self, model, x, y), {}
        best, dist = x.clone(), torch.full((len(x),), float("inf"), device=x.device)
        with torch.no_grad():
            already = misclassified(exact(model)(x), y)
        dist[already] = 0.0  # misclassified as it stands: nothing to find
        for restart in range(self.restarts):
            rows = (~already).nonzero().squeeze(1)
            if len(rows) == 0:
                break
            start = self.random_start(x[rows], dist[rows]) if restart > 0 else x[rows]
            found, found_dist = self.run_once(model, x[rows], y[rows], start)
            closer = found_dist < dist[rows]
            best[rows[closer]], dist[rows[closer]] = found[closer], found_dist[closer]
        within = dist <= self.eps
        x_adv = torch.where(per_sample(within & ~already, x), best, x)
        return x_adv, {"fab_norm": dist.where(torch.isfinite(dist), float("nan"))}

    def random_start(self, x: torch.Tensor, dist: torch.Tensor) -> torch.Tensor:
        """A random point at half the best distance so far (at most eps) from x (reference code)."""
        radius = per_sample(torch.minimum(dist, torch.full_like(dist, self.eps)) / 2, x)
        direction = 2 * torch.rand_like(x) - 1 if Norm(self.norm) is Norm.LINF else torch.randn_like(x)
        return (x + radius * direction / per_sample(lp_norm(direction, self.norm), x)).clamp(0, 1)

    def run_once(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, start: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Algorithm 1 from ``start``: per sample the closest adversarial found and its distance (inf: none)."""
        best, dist = x.clone(), torch.full((len(x),), float("inf"), device=x.device)
        current = start
        for _ in range(self.steps):
            _, margin, grad = loss_and_grad(model, current, y, Loss.MARGIN)  # f = z_wrong - z_true
            w = grad.flatten(1)
            b = (w * current.flatten(1)).sum(1) - margin  # the hyperplane f(x_k) + w . (z - x_k) = 0
            both = box_projection(
                torch.cat([current.flatten(1), x.flatten(1)]), torch.cat([w, w]), torch.cat([b, b]), self.norm
            ).view(2, *x.shape)
            d_k, d_0 = both[0], both[1]
            a_k, a_0 = lp_norm(d_k, self.norm).clamp_min(TINY), lp_norm(d_0, self.norm).clamp_min(TINY)
            alpha = per_sample((a_k / (a_k + a_0)).clamp(0, self.alpha_max), x)
            current = ((current + self.eta * d_k) * (1 - alpha) + (x + self.eta * d_0) * alpha).clamp(0, 1)
            with torch.no_grad():
                fooled = decided(model, current, model(current), y)
            distance = lp_norm(current - x, self.norm)
            closer = fooled & (distance < dist)
            best[closer], dist[closer] = current[closer], distance[closer]
            current = torch.where(per_sample(fooled, x), x + self.beta * (current - x), current)
        return best, dist


# --- third-party backend ------------------------------------------------------------------------------------
