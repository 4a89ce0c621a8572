"""Square Attack (Andriushchenko, Croce, Flammarion & Hein, ECCV 2020, "Square Attack: a query-efficient
black-box adversarial attack via random search", https://arxiv.org/abs/1912.00049).

Score-based: it reads the model's logits only (no gradients, every forward under ``torch.no_grad``), so
gradient masking cannot stop it. Random search over perturbations at the boundary of the eps-ball: each
iteration proposes a change inside one random square window of side s and keeps it when the attacker's
loss improves (or the sample is fooled). The window's area is a fraction p of the image, halved at the
paper's iterations 10, 50, 200, 500, 1000, 2000, 4000, 6000 and 8000 of 10000, rescaled to the budget as
the authors' code does.

- L-inf (Algorithm 2 of the paper): start from vertical stripes of +-eps (one sign per channel and column);
  a proposal adds +-2 eps (one sign per channel) to the window and projects back, i.e. sets the window's
  perturbation to +-eps per channel; a proposal that would not change the image is redrawn.
- L2 (Algorithm 3): start from a grid of "meta pseudo-gaussian" bumps (two opposite-signed halves, random
  sign per channel) scaled to norm eps; a proposal moves the perturbation's mass of a second window into
  the first as a fresh bump plus the old window content, with the free budget eps^2 - ||delta||^2, and
  rescales the whole perturbation to norm eps.

Query accounting (per sample, every model forward counts): one forward on the clean input (samples already
misclassified stop there, as the authors skip them), then per restart the initial point and one forward
per iteration. ``queries`` is the total: each restart gets ``(queries - 1) // restarts`` forwards, its own
p schedule rescaled to that share. A sample stops as soon as the model's argmax is wrong; the ``queries``
info column is what it spent. A sample never fooled returns its highest-loss point.

Departures from the authors' code (github.com/max-andr/square-attack), none changing the algorithm: a window
position is drawn per sample (the reference L2 code draws one per batch, which changes only the
correlation across samples) from every position the image allows (the reference's ``randint(0, h - s)``
never places a window on the last row or column), and the L2 bump's random transpose is drawn per sample.
Inputs [N, *lead, H, W] (video clips [N, T, 3, H, W]) are treated as [N, C', H, W] with C' the product of
the leading dimensions: a window covers every frame, with one sign per frame and channel.

Arguments (defaults): eps 8/255, norm linf, queries 1000, p_init 0.8, loss margin (ce allowed),
restarts 1, direction both, backend ours (torchattacks, art: their implementations, same budget).

Example::

    attack = Square(eps=8/255, queries=1000)
    out = attack.run(model, x, y)      # x in [0,1], y with 1 = fake
    out.x_adv, out.info["queries"]     # adversarial batch, model queries per sample
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from afsl_bench.attacks.backends import Backend, check_backend, run_backend
from afsl_bench.attacks.base import ATTACKS, Attack
from afsl_bench.attacks.ops import (
    Reshaped,
    attack_loss,
    check_budget,
    check_positive_int,
    check_vocabulary,
    decided,
)
from afsl_bench.attacks.vocabulary import Direction, Loss, Norm

#: iterations (of 10000) after which p halves (the paper's schedule; ``p_selection`` in the authors' code)
HALVINGS = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)
#: a proposal that leaves the image unchanged is redrawn (authors' code: until it changes) at most this often
MAX_REDRAWS = 16

Score = Callable[[torch.Tensor], torch.Tensor]


def p_schedule(p_init: float, it: int, n_iters: int) -> float:
    """The fraction of pixels a window covers at iteration ``it`` of ``n_iters`` (rescaled to 10000)."""
    it = int(it / n_iters * 10000)
    return p_init / 2 ** sum(it > mark for mark in HALVINGS)


def window_side(p: float, h: int, w: int, norm: Norm) -> int:
    """Side s of a window covering a fraction p of the pixels: L-inf in [1, side - 1], L2 odd and >= 3."""
    s = round(math.sqrt(p * h * w))
    if Norm(norm) is Norm.LINF:
        return min(max(s, 1), max(min(h, w) - 1, 1))
    s = max(s, 3)
    s += 1 - s % 2
    return min(s, h, w)


def random_signs(*shape: int, like: torch.Tensor) -> torch.Tensor:
    """Uniform +-1 of ``shape`` on ``like``'s device and dtype."""
    return torch.randint(0, 2, shape, device=like.device).to(like.dtype).mul_(2).sub_(1)


def window_corners(n: int, s: int, h: int, w: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """[n, 1] top and left corners of one s x s window per sample, at a uniformly random position."""
    top = torch.randint(0, h - s + 1, (n, 1), device=device)
    left = torch.randint(0, w - s + 1, (n, 1), device=device)
    return top, left


def window_mask(n: int, s: int, h: int, w: int, like: torch.Tensor) -> torch.Tensor:
    """[n, 1, h, w] 0/1 mask (``like``'s dtype) of one s x s window per sample, at a uniformly random position."""
    top, left = window_corners(n, s, h, w, like.device)
    rows = torch.arange(h, device=like.device)
    cols = torch.arange(w, device=like.device)
    in_rows = (rows >= top) & (rows < top + s)  # [n, h]
    in_cols = (cols >= left) & (cols < left + s)  # [n, w]
    return (in_rows[:, :, None] & in_cols[:, None, :])[:, None].to(like.dtype)


def window_index(n: int, c: int, s: int, h: int, w: int, device: torch.device) -> tuple[torch.Tensor, ...]:
    """The advanced index of one random s x s window per sample (every channel): ``x[index]`` is its
    [n, c, s, s] content, ``x[index] = v`` writes it; the same random draws as ``window_mask``."""
    top, left = window_corners(n, s, h, w, device)
    span = torch.arange(s, device=device)
    return (
        torch.arange(n, device=device).view(n, 1, 1, 1),
        torch.arange(c, device=device).view(1, c, 1, 1),
        (top + span).view(n, 1, s, 1),
        (left + span).view(n, 1, 1, s),
    )


# --- L2: the meta pseudo-gaussian bump ------------------------------------------------------------------


def pseudo_gaussian(rows: int, cols: int, like: torch.Tensor) -> torch.Tensor:
    """The authors' ``pseudo_gaussian_pert_rectangles``: nested rectangles around the centre, ring k adding
    1 / (k + 1)^2, so a pixel at Chebyshev distance d from the centre holds sum_{k=d}^{K-1} 1 / (k + 1)^2;
    unit Frobenius norm (all zeros when empty)."""
    rings = max(rows // 2 + 1, cols // 2 + 1)
    weights = 1.0 / torch.arange(1, rings + 1, device=like.device, dtype=like.dtype) ** 2
    tail = weights.flip(0).cumsum(0).flip(0)  # tail[d] = sum_{k >= d} weights[k]
    di = (torch.arange(rows, device=like.device) - rows // 2).abs()
    dj = (torch.arange(cols, device=like.device) - cols // 2).abs()
    bump = tail[torch.maximum(di[:, None], dj[None, :])]
    return bump / bump.norm().clamp_min(1e-12)


def meta_bump(s: int, n: int, like: torch.Tensor) -> torch.Tensor:
    """[n, 1, s, s]: the authors' ``meta_pseudo_gaussian_pert`` (upper half a bump, lower half its negative,
    unit norm), transposed for a random half of the samples."""
    top = pseudo_gaussian(s // 2, s, like)
    bottom = -pseudo_gaussian(s - s // 2, s, like)
    bump = torch.cat([top, bottom])
    bump = bump / bump.norm()
    flip = torch.rand(n, 1, 1, 1, device=like.device) > 0.5
    return torch.where(flip, bump.T, bump)


def place(patch: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Write a [n, c, s, s] patch into each sample's s x s window of a [n, 1, h, w] mask (zeros elsewhere)."""
    full = torch.zeros(*patch.shape[:2], *mask.shape[2:], device=patch.device, dtype=patch.dtype)
    return full.masked_scatter_(mask.bool().expand_as(full), patch)


def channel_norm(delta: torch.Tensor) -> torch.Tensor:
    """[n, c, 1, 1] L2 norm of each sample's channel."""
    return delta.pow(2).sum((2, 3), keepdim=True).sqrt()


def image_norm(delta: torch.Tensor) -> torch.Tensor:
    """[n, 1, 1, 1] L2 norm of each sample."""
    return delta.flatten(1).norm(dim=1).view(-1, 1, 1, 1)


# --- initial points and proposals, per norm -------------------------------------------------------------


def linf_init(x: torch.Tensor, eps: float) -> torch.Tensor:
    """Vertical stripes: +-eps with one sign per sample, channel and column (best for untargeted attacks)."""
    n, c, _, w = x.shape
    return (x + eps * random_signs(n, c, 1, w, like=x)).clamp(0, 1)


def linf_proposal(x: torch.Tensor, best: torch.Tensor, eps: float, p: float) -> torch.Tensor:
    """Set one random window's perturbation to +-eps per channel; redraw the signs of proposals equal to
    ``best`` (the authors' ``while`` loop, bounded). A small window is computed alone (gathered and written
    back), a large one through a mask; both give the same proposal from the same random draws."""
    n, c, h, w = x.shape
    s = window_side(p, h, w, Norm.LINF)
    masked = 4 * s * s > h * w  # gathering most of the image costs more than masking all of it
    if masked:
        inside = window_mask(n, s, h, w, like=x).bool()
        x_win, best_win = x, best
    else:
        index = window_index(n, c, s, h, w, x.device)
        x_win, best_win = x[index], best[index]  # [n, c, s, s]
    random_signs(n, c, 1, 1, like=x)  # the first draw is replaced at once (kept: the same random stream)
    new = (x_win + eps * random_signs(n, c, 1, 1, like=x)).clamp_(0, 1)
    if masked:
        new = torch.where(inside, new, best)
    redraw = (new - best_win).flatten(1).abs().amax(1) < 1e-7
    for _ in range(MAX_REDRAWS - 1):
        if not redraw.any():
            break
        # only the samples still to redraw (about one in 2^c) are recomputed; signs are drawn for every sample,
        # as a single draw would consume the random stream
        rows, signs = redraw.nonzero().squeeze(1), random_signs(n, c, 1, 1, like=x)
        part = (x_win[rows] + eps * signs[rows]).clamp_(0, 1)
        new[rows] = torch.where(inside[rows], part, best[rows]) if masked else part
        redraw[rows] = (new[rows] - best_win[rows]).flatten(1).abs().amax(1) < 1e-7
    if masked:
        return new
    candidate = best.clone()
    candidate[index] = new
    return candidate


def l2_init(x: torch.Tensor, eps: float) -> torch.Tensor:
    """A centred grid of (side // 5)-sided meta bumps, a random sign per sample and channel, scaled to norm
    eps (the authors' h // 5 on square images)."""
    n, c, h, w = x.shape
    s = max(min(h, w) // 5, 1)
    delta = torch.zeros_like(x)
    top0, left0 = (h - s * (h // s)) // 2, (w - s * (w // s)) // 2
    for top in range(top0, top0 + s * (h // s), s):
        for left in range(left0, left0 + s * (w // s), s):
            bump = meta_bump(s, n, like=x) * random_signs(n, c, 1, 1, like=x)
            delta[:, :, top : top + s, left : left + s] += bump
    return (x + eps * delta / image_norm(delta).clamp_min(1e-12)).clamp(0, 1)


def l2_proposal(x: torch.Tensor, best: torch.Tensor, eps: float, p: float) -> torch.Tensor:
    """Algorithm 3: window 1 gets a fresh bump plus its old (normalised) content, scaled per channel to carry
    the mass of windows 1 and 2 and the free budget; window 2 is emptied; the whole is rescaled to norm eps."""
    n, c, h, w = x.shape
    s = window_side(p, h, w, Norm.L2)
    delta = best - x
    first, second = window_mask(n, s, h, w, like=x), window_mask(n, s, h, w, like=x)
    union = torch.maximum(first, second)
    free = (eps**2 - image_norm(delta) ** 2).clamp_min(0) / c
    mass = (free + channel_norm(delta * union) ** 2).sqrt()  # [n, c, 1, 1]
    old = delta * first / (channel_norm(delta * first) + 1e-12)
    fresh = place(meta_bump(s, n, like=x) * random_signs(n, c, 1, 1, like=x), first)
    new = fresh + old
    new = new / channel_norm(new).clamp_min(1e-12) * mass
    delta = delta * (1 - union) + new
    return (x + eps * delta / image_norm(delta).clamp_min(1e-12)).clamp(0, 1)


#: (initial point, proposal) per norm
STEPS: dict[Norm, tuple[Callable[..., torch.Tensor], Callable[..., torch.Tensor]]] = {
    Norm.LINF: (linf_init, linf_proposal),
    Norm.L2: (l2_init, l2_proposal),
}


@ATTACKS.register("square")
@dataclass(frozen=True)
class Square(Attack):
    """Square Attack (Andriushchenko et al. 2020): score-based random search over windows; L-inf / L2."""

    requires_grad: ClassVar[bool] = False

    eps: float = 8 / 255
    norm: Norm = Norm.LINF
    #: model forwards per sample, all included (the clean check, each restart's start and iterations)
    queries: int = 1000
    #: initial fraction of the image a window covers (paper: 0.8 for L-inf, 0.1 for L2 on ImageNet)
    p_init: float = 0.8
    loss: Loss = Loss.MARGIN
    restarts: int = 1
    direction: Direction = Direction.BOTH
    backend: Backend = Backend.OURS

    def __post_init__(self) -> None:
        check_vocabulary(self.norm, self.loss, self.direction, norms=self.norms)
        check_budget(self.eps, self.norm)
        check_positive_int(queries=self.queries, restarts=self.restarts)
        if self.queries < 1 + self.restarts:
            raise ValueError(
                f"queries={self.queries} is below {1 + self.restarts}: one clean check plus at least the "
                f"initial point of each of the {self.restarts} restart(s)"
            )
        if not 0 < self.p_init <= 1:
            raise ValueError(f"p_init must be in (0, 1], got {self.p_init} (paper: 0.8 for L-inf)")
        check_backend(self)

    def perturb_with_info(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if Backend(self.backend) is not Backend.OURS:
            return run_backend(self, model, x, y), {}
        if Norm(self.norm) is Norm.LINF and getattr(model, "channels_last", False):
            # the layout the model converts every query to: candidates built in it reach the model uncopied.
            # L-inf only: L2's per-channel norms are sums whose order, so whose last bits, follow the layout
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.no_grad():
            return self.search(Reshaped(model, tuple(x.shape[1:])), x, y)

    def search(self, score: Score, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """The clean check, then restarts on the samples still classified correctly."""
        flat = x.reshape(len(x), -1, *x.shape[-2:])
        logits = score(flat)
        fooled = decided(score, flat, logits, y)
        queries = torch.ones(len(x), device=x.device)
        best = flat.clone()
        best_loss = torch.full((len(x),), -torch.inf, device=x.device, dtype=logits.dtype)
        share = (self.queries - 1) // self.restarts
        for _ in range(self.restarts):
            rows = (~fooled).nonzero().squeeze(1)
            if len(rows) == 0:
                break
            x_r, loss_r, fooled_r, spent = self.run_once(score, flat[rows], y[rows], share)
            take = fooled_r | (loss_r > best_loss[rows])
            best[rows[take]], best_loss[rows[take]] = x_r[take], loss_r[take]
            fooled[rows] = fooled_r
            queries[rows] += spent
        return best.contiguous().view_as(x), {"queries": queries}

    def run_once(
        self, score: Score, x: torch.Tensor, y: torch.Tensor, n_iters: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """One random search of ``n_iters`` forwards (initial point included): per sample its best point,
        that point's loss, whether it fools the model, and the forwards spent."""
        init, propose = STEPS[Norm(self.norm)]
        best = init(x, self.eps)
        logits = score(best)
        best_loss, fooled = (
            attack_loss(logits, y, self.loss),
            decided(score, best, logits, y),
        )
        spent = torch.ones(len(x), device=x.device)
        # the samples still searching, gathered once and compacted only when some are fooled: no copy of
        # every image at every iteration
        rows = (~fooled).nonzero().squeeze(1)
        x_r, y_r, best_r, loss_r = x[rows], y[rows], best[rows], best_loss[rows]
        for it in range(n_iters - 1):
            if len(rows) == 0:
                break
            p = p_schedule(self.p_init, it, n_iters)
            candidate = propose(x_r, best_r, self.eps, p)
            logits = score(candidate)
            loss = attack_loss(logits, y_r, self.loss)
            now_fooled = decided(score, candidate, logits, y_r)
            take = now_fooled | (loss > loss_r)
            best_r[take], loss_r[take] = candidate[take], loss[take]
            spent[rows] += 1
            if now_fooled.any():
                best[rows], best_loss[rows], fooled[rows] = best_r, loss_r, now_fooled
                keep = ~now_fooled
                rows, x_r, y_r, best_r, loss_r = rows[keep], x_r[keep], y_r[keep], best_r[keep], loss_r[keep]
        best[rows], best_loss[rows] = best_r, loss_r
        return best, best_loss, fooled, spent
