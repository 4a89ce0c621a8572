"""Per-sample state of one APGD run (``attacks.apgd``): iterates, best point, step sizes, checkpoint counters.

Every tensor field is per sample, so fooled samples can be retired (``early_stop``) by indexing, and one
sample's trajectory never depends on the others in the batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import torch

from afsl_bench.attacks.ops import per_sample, project
from afsl_bench.attacks.vocabulary import Norm


@dataclass
class Sink:
    """The run's output rows, written when a sample retires or the run ends."""

    x: torch.Tensor
    loss: torch.Tensor
    fooled: torch.Tensor

    def write(self, rows: torch.Tensor, x: torch.Tensor, loss: torch.Tensor, fooled: torch.Tensor) -> None:
        self.x[rows], self.loss[rows], self.fooled[rows] = x, loss, fooled


@dataclass
class State:
    x: torch.Tensor  # clean inputs
    y: torch.Tensor
    lo: torch.Tensor  # max(x - eps, 0): for L-inf the feasible set is one clamp between lo and hi
    hi: torch.Tensor  # min(x + eps, 1)
    rows: torch.Tensor  # row of each live sample in the run's input
    cur: torch.Tensor  # x_k
    prev: torch.Tensor  # x_{k-1}
    grad: torch.Tensor | None  # gradient at x_k; None after the last step
    loss: torch.Tensor  # f(x_k)
    best: torch.Tensor  # x_max (own buffer, updated in place)
    best_grad: torch.Tensor  # gradient at x_max: a restart from x_max needs no extra backward pass
    best_loss: torch.Tensor  # f_max
    step: torch.Tensor  # eta
    increases: torch.Tensor  # steps since the last checkpoint where the loss went up (condition 1)
    loss_at_check: torch.Tensor  # f_max at the last checkpoint (condition 2)
    halved_last: torch.Tensor  # step halved at the last checkpoint (condition 2)
    fooled: torch.Tensor
    first_fool: torch.Tensor  # first fooling iterate; meaningful where ``fooled``
    norm: Norm
    eps: float
    sink: Sink = field(repr=False)
    moved: bool = False  # no momentum on the first step (alpha = 1)

    @classmethod
    def start(
        cls,
        x: torch.Tensor,
        y: torch.Tensor,
        start: torch.Tensor,
        loss: torch.Tensor,
        grad: torch.Tensor,
        fooled: torch.Tensor,
        step: torch.Tensor,
        norm: Norm,
        eps: float,
    ) -> State:
        """The state at x_0 = ``start`` with its loss, gradient and initial step sizes."""
        sink = Sink(x.clone(), torch.full_like(loss, -torch.inf), torch.zeros_like(fooled))
        return cls(
            x=x,
            y=y,
            lo=(x - eps).clamp_min(0),
            hi=(x + eps).clamp_max(1),
            rows=torch.arange(len(x), device=x.device),
            cur=start,
            prev=start,
            grad=grad,
            loss=loss,
            best=start.clone(),
            best_grad=grad.clone(),
            best_loss=loss,
            step=step,
            increases=torch.zeros_like(loss),
            loss_at_check=loss,
            halved_last=torch.zeros_like(fooled),
            fooled=fooled,
            first_fool=start,
            norm=Norm(norm),
            eps=eps,
            sink=sink,
        )

    def clip_(self, point: torch.Tensor) -> torch.Tensor:
        """P_S: projection onto the eps-ball around x intersected with [0, 1] (in place for L-inf)."""
        if self.norm is Norm.LINF:
            return point.clamp_(self.lo, self.hi)
        # clamping to [0, 1] after the L2 projection moves each pixel towards x: it stays in the ball
        return (self.x + project(point - self.x, self.norm, self.eps)).clamp(0, 1)

    def advance(
        self, new: torch.Tensor, loss: torch.Tensor, grad: torch.Tensor | None, fooled: torch.Tensor
    ) -> None:
        """Take x_{k+1} with its loss and gradient: count increases, update f_max / x_max, first fooling."""
        self.increases = self.increases + (loss > self.loss)
        self.prev, self.cur, self.grad, self.loss = self.cur, new, grad, loss
        improved = loss > self.best_loss
        if improved.any():
            # in place, improved rows only: fresh image-sized tensors each step cost page faults on CPU
            rows = improved.nonzero().squeeze(1)
            self.best[rows] = new[rows]
            if grad is not None:
                self.best_grad[rows] = grad[rows]
            self.best_loss = torch.where(improved, loss, self.best_loss)
        newly = fooled & ~self.fooled
        if newly.any():
            self.first_fool = torch.where(per_sample(newly, new), new, self.first_fool)
            self.fooled = self.fooled | fooled
        self.moved = True

    def checkpoint(self, min_increases: float) -> None:
        """At w_j: halve the step and restart from x_max where condition 1 or 2 holds (paper, Sec. 3.2)."""
        cond1 = self.increases < min_increases
        cond2 = ~self.halved_last & (self.best_loss <= self.loss_at_check)
        halve = cond1 | cond2
        wide = per_sample(halve, self.cur)
        self.step = torch.where(halve, self.step / 2, self.step)
        self.cur = torch.where(wide, self.best, self.cur)
        self.grad = torch.where(wide, self.best_grad, self.grad)
        self.loss = torch.where(halve, self.best_loss, self.loss)
        self.halved_last, self.loss_at_check = halve, self.best_loss
        self.increases = torch.zeros_like(self.increases)

    def retire_fooled(self) -> State:
        """Write fooled samples to the sink and keep the others (their trajectories are unaffected)."""
        if not self.fooled.any():
            return self
        self._flush(self.fooled)
        keep = (~self.fooled).nonzero().squeeze(1)
        live = {f.name: getattr(self, f.name) for f in fields(self)}
        for name, value in live.items():
            if isinstance(value, torch.Tensor):
                live[name] = value[keep]
        return State(**live)

    def finish(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(x_adv, loss, fooled) for every row of the run: first fooling iterate, else x_max."""
        self._flush(torch.ones_like(self.fooled))
        return self.sink.x, self.sink.loss, self.sink.fooled

    def _flush(self, mask: torch.Tensor) -> None:
        chosen = torch.where(per_sample(self.fooled, self.cur), self.first_fool, self.best)
        self.sink.write(self.rows[mask], chosen[mask], self.best_loss[mask], self.fooled[mask])
