"""Carlini & Wagner L2 attack (Carlini & Wagner, IEEE S&P 2017, "Towards Evaluating the Robustness of Neural
Networks", https://arxiv.org/abs/1608.04644), Section V-A and the authors' reference code.

A minimum-norm attack. The adversarial point lives in tanh space, x' = (tanh(w) + 1) / 2, so it is always
inside [0, 1], and for a constant c Adam minimises, per sample,

    ||x' - x||_2^2 + c * max(z_true(x') - z_wrong(x') + kappa, 0)

for ``steps`` iterations from w_0 = atanh(2x - 1) (z: the two logits; with two classes the paper's "largest
other logit" is the wrong class's, no third logit is indexed). A per-sample binary search over c runs
``search_steps`` times: c grows tenfold until a first success, then bisects between the largest failing
and the smallest successful constant; Adam restarts from x for every constant. A sample keeps its
smallest-L2 point over all iterations and constants that the model misclassifies by at least kappa (the
argmax of the logits with kappa added to the true class's, so ties go the way the model decides). With
``abort_early`` a sample leaves the current constant when its objective fell by less than 0.01% over the
last steps/10 iterations (the reference code's rule, per sample instead of per batch). A last forward pass
checks that every returned point fools the model.

Budget: none by default; the per-sample table's ``l2`` column is then the distance each sample needed.
With ``eps`` set, a sample whose smallest adversarial is farther than eps counts as a failure and comes
back unchanged (as does a sample no constant broke). The per-sample column ``cw_const`` is the smallest
constant that succeeded (NaN where none did; absent with a third-party backend).

Arguments (defaults): eps None, confidence 0 (kappa, in logits), steps 100 (Adam iterations per constant;
the paper allows up to 10,000), search_steps 9, initial_const 1e-2, lr 1e-2 (Adam, on w), norm l2 (the
only one), direction both, abort_early True, backend ours (torchattacks: one constant, no search, needs
search_steps=1; art: CarliniL2Method, gradient descent with line search, needs abort_early=false).

Example::

    x_adv = CW()(model, x, y)                              # minimum-norm; x in [0,1], y with 1 = fake
    out = CW(eps=0.5, confidence=2.0).run(model, x, y)     # success only within L2 <= 0.5
    out.info["cw_const"]                                   # smallest successful c per sample
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from afsl_bench.attacks.backends import Backend, check_backend, run_backend
from afsl_bench.attacks.base import ATTACKS, Attack
from afsl_bench.attacks.ops import check_positive_int, check_vocabulary, loss_and_grad, per_sample
from afsl_bench.attacks.vocabulary import Direction, Loss, Norm

#: 2x - 1 is scaled by this before atanh so that pixels at exactly 0 or 1 map to a finite w (reference code)
TANH_SMOOTHER = 1 - 1e-6
#: the upper bound of c before any success: while it stands, c grows tenfold (reference code: 1e10)
NO_UPPER = 1e10
#: abort a constant when the objective fell by less than this fraction over steps/10 iterations
ABORT_TOLERANCE = 1e-4
ADAM_BETAS, ADAM_EPS = (0.9, 0.999), 1e-8


def to_tanh_space(x: torch.Tensor) -> torch.Tensor:
    return torch.atanh((2 * x - 1) * TANH_SMOOTHER)


def from_tanh_space(w: torch.Tensor) -> torch.Tensor:
    return (torch.tanh(w) + 1) / 2


def fooled(logits: torch.Tensor, y: torch.Tensor, confidence: float) -> torch.Tensor:
    """The model's argmax decision is wrong even with kappa added to the true class's logit."""
    rows = y[:, None]
    return logits.scatter(1, rows, logits.gather(1, rows) + confidence).argmax(1) != y


@dataclass
class Adam:
    """Adam (Kingma & Ba, ICLR 2015) on a batch of variables; ``step`` updates the rows given."""

    m: torch.Tensor
    v: torch.Tensor
    lr: float
    t: int = 0

    @classmethod
    def like(cls, w: torch.Tensor, lr: float) -> Adam:
        return cls(torch.zeros_like(w), torch.zeros_like(w), lr)

    def step(self, w: torch.Tensor, grad: torch.Tensor, rows: torch.Tensor | slice) -> None:
        """w[rows] -= lr * m_hat / (sqrt(v_hat) + eps), in place; the rows still descending step together."""
        (b1, b2), self.t = ADAM_BETAS, self.t + 1
        m = self.m[rows].mul_(b1).add_(grad, alpha=1 - b1)
        v = self.v[rows].mul_(b2).addcmul_(grad, grad, value=1 - b2)
        self.m[rows], self.v[rows] = m, v
        denom = (v / (1 - b2**self.t)).sqrt_().add_(ADAM_EPS)
        w[rows] = w[rows].addcdiv_(m, denom, value=-self.lr / (1 - b1**self.t))


@dataclass
class Best:
    """Per sample: the smallest-L2 successful point so far, its squared L2, the smallest successful c."""

    x_adv: torch.Tensor
    l2sq: torch.Tensor
    const: torch.Tensor

    @classmethod
    def start(cls, x: torch.Tensor, dtype: torch.dtype) -> Best:
        none = torch.full((len(x),), float("inf"), device=x.device, dtype=dtype)
        return cls(x.clone(), none, torch.full_like(none, float("nan")))

    def update(
        self,
        rows: torch.Tensor,
        x_adv: torch.Tensor,
        l2sq: torch.Tensor,
        success: torch.Tensor,
        const: torch.Tensor,
    ) -> None:
        closer = success & (l2sq < self.l2sq[rows])
        idx = rows[closer]
        self.x_adv[idx], self.l2sq[idx] = x_adv[closer], l2sq[closer].to(self.l2sq.dtype)
        self.const[rows[success]] = torch.fmin(self.const[rows[success]], const[success])


@ATTACKS.register("cw")
@dataclass(frozen=True)
class CW(Attack):
    """C&W L2 (Carlini & Wagner 2017): minimum-norm, tanh space, Adam, binary search over c; optional eps."""

    norms = (Norm.L2,)

    #: None: minimum-norm; else adversarials farther than eps (L2) count as failures
    eps: float | None = None
    #: kappa: the logit margin by which the wrong class must win
    confidence: float = 0.0
    steps: int = 100
    search_steps: int = 9
    initial_const: float = 1e-2
    lr: float = 1e-2
    norm: Norm = Norm.L2
    direction: Direction = Direction.BOTH
    abort_early: bool = True
    backend: Backend = Backend.OURS

    def __post_init__(self) -> None:
        check_vocabulary(norm=self.norm, direction=self.direction, norms=self.norms)
        check_positive_int(steps=self.steps, search_steps=self.search_steps)
        for name in ("initial_const", "lr"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.eps is not None and not self.eps > 0:
            raise ValueError(f"eps must be > 0 (an L2 budget) or None (minimum-norm), got {self.eps}")
        if not self.confidence >= 0:
            raise ValueError(f"confidence must be >= 0 (kappa, a logit margin), got {self.confidence}")
        check_backend(self)

    def forward_budget(self) -> int:
        """``steps`` Adam steps for each of ``search_steps`` constants."""
        return self.steps * self.search_steps

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.perturb_with_info(model, x, y)[0]

    def perturb_with_info(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if Backend(self.backend) is not Backend.OURS:
            return self.accept(model, x, y, run_backend(self, model, x, y))[0], {}
        best = self.search(model, x, y)
        x_adv, kept = self.accept(model, x, y, best.x_adv)
        return x_adv, {"cw_const": best.const.where(kept, float("nan"))}

    def accept(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, x_adv: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Keep a point where it fools the model (checked on the whole batch) and lies within eps; else x."""
        with torch.no_grad():
            keep = fooled(model(x_adv), y, 0.0)
        if self.eps is not None:
            keep &= (x_adv - x).flatten(1).norm(dim=1) <= self.eps
        return torch.where(per_sample(keep, x), x_adv, x), keep

    def search(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Best:
        """The binary search over c, per sample: x10 until a first success, then bisection."""
        dtype = torch.promote_types(x.dtype, torch.float32)
        best = Best.start(x, dtype)
        const = torch.full((len(x),), self.initial_const, device=x.device, dtype=dtype)
        lower, upper = torch.zeros_like(const), torch.full_like(const, NO_UPPER)
        for _ in range(self.search_steps):
            succeeded = self.minimise(model, x, y, const, best)
            upper = torch.where(succeeded, torch.minimum(upper, const), upper)
            lower = torch.where(succeeded, lower, torch.maximum(lower, const))
            const = torch.where(upper < NO_UPPER, (lower + upper) / 2, const * 10)
        return best

    def minimise(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, const: torch.Tensor, best: Best
    ) -> torch.Tensor:
        """Adam on w for each sample's constant, from x; records successes in ``best``; returns which samples
        succeeded at some iteration."""
        w = to_tanh_space(x)
        adam = Adam.like(w, self.lr)
        succeeded = torch.zeros(len(x), dtype=torch.bool, device=x.device)
        prev = torch.full_like(const, float("inf"))
        active = torch.arange(len(x), device=x.device)
        check_every = max(self.steps // 10, 1)
        for step in range(self.steps):
            # all rows as a slice while no sample has aborted: no gather / scatter copies of the batch
            rows = slice(None) if len(active) == len(x) else active
            x_adv, logits, l2sq, objective, grad = self.objective(
                model, w[rows], x[rows], y[rows], const[rows]
            )
            success = fooled(logits, y[rows], self.confidence)
            best.update(active, x_adv, l2sq, success, const[rows])
            succeeded[active[success]] = True
            adam.step(w, grad, rows)
            if self.abort_early and step % check_every == 0:
                stalled = objective > (1 - ABORT_TOLERANCE) * prev[rows]
                prev[rows] = objective
                active = active[~stalled]
                if len(active) == 0:
                    break
        return succeeded

    def objective(
        self, model: nn.Module, w: torch.Tensor, x: torch.Tensor, y: torch.Tensor, const: torch.Tensor
    ) -> tuple[torch.Tensor, ...]:
        """At x' = (tanh(w) + 1) / 2: (x', logits, ||x' - x||^2, the objective, its gradient w.r.t. w).

        d objective / dx' = 2 (x' - x) - c * d margin / dx' where the hinge is active, and dx'/dw = 2x'(1 - x')
        (= (1 - tanh(w)^2) / 2); the margin z_wrong - z_true and its input gradient come from loss_and_grad.
        """
        x_adv = from_tanh_space(w)
        logits, margin, margin_grad = loss_and_grad(model, x_adv, y, Loss.MARGIN)
        hinge = (self.confidence - margin).clamp_min(0)
        diff = x_adv - x
        l2sq = diff.flatten(1).pow(2).sum(1)
        pull = per_sample(-const * (hinge > 0), x).to(x.dtype)
        grad = margin_grad.mul_(pull).add_(diff, alpha=2).mul_(x_adv * (1 - x_adv) * 2)
        return x_adv, logits, l2sq, l2sq + const * hinge, grad
