"""A binary-safe AutoAttack: an ensemble of diverse, parameter-free attacks in the manner of Croce & Hein
(ICML 2020, https://arxiv.org/abs/2003.01690), rebuilt for two-logit detectors.

Why the standard AutoAttack cannot run here. Its "standard" version is APGD-CE, APGD-T (targeted, DLR
loss), FAB-T and Square. The DLR loss is -(z_y - max_{i != y} z_i) / (z_pi1 - z_pi3): its denominator reads
the *third* largest logit, which a detector with two logits does not have (index errors in auto-attack,
torchattacks and ART alike); the targeted versions loop over the top-9 "other" classes, of which a binary
model has one. Dropping the denominator leaves the logit margin z_wrong - z_true (DLR's numerator, and C&W's
loss), which is binary-safe but not invariant to the logits' scale; with one other class the targeted and
untargeted attacks coincide.

Members, in order (defaults): APGD with cross-entropy, APGD with the binary logit margin (the two-class
DLR / C&W loss), and Square with the margin loss (a score-based attack that gradient masking cannot stop).
As in AutoAttack each later member runs only on the points still robust (``early_stop``); a sample's
result is its worst case over the members that ran on it: the first point that fools the detector, else
the point with the highest margin loss. ``broken_by`` records, per sample, the index of the member that
broke it (NaN: robust to all). FAB (attacks/fab.py; with two classes AutoAttack's targeted FAB-T is the
untargeted FAB) is an optional member, ``members=(apgd-ce, apgd-margin, fab, square)``; the default set
leaves it out, as its cells were planned before it existed.

Arguments (defaults): eps 8/255, norm linf, steps 100 (each APGD), queries 5000 (Square), restarts 1
(each APGD), members (apgd-ce, apgd-margin, square), direction both, early_stop True.

Example::

    afsl-bench run --defense afsl --attack autoattack-binary --dataset synthetic
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from afsl_bench.attacks.base import ATTACKS, Attack
from afsl_bench.attacks.ops import (
    attack_loss,
    check_budget,
    check_positive_int,
    check_vocabulary,
    exact,
    misclassified,
)
from afsl_bench.attacks.vocabulary import Direction, Loss, Norm

Member = Callable[["AutoAttackBinary"], Attack]

#: the ensemble's possible members, built from the ensemble's budget
MEMBERS: dict[str, Member] = {
    "apgd-ce": lambda a: ATTACKS.build(
        "apgd", eps=a.eps, norm=a.norm, steps=a.steps, restarts=a.restarts, loss=Loss.CE
    ),
    "apgd-margin": lambda a: ATTACKS.build(
        "apgd", eps=a.eps, norm=a.norm, steps=a.steps, restarts=a.restarts, loss=Loss.MARGIN
    ),
    "square": lambda a: ATTACKS.build("square", eps=a.eps, norm=a.norm, queries=a.queries, loss=Loss.MARGIN),
    "fab": lambda a: ATTACKS.build("fab", eps=a.eps, norm=a.norm, steps=a.steps, restarts=a.restarts),
    "pgd": lambda a: ATTACKS.build("pgd", eps=a.eps, norm=a.norm, steps=a.steps, restarts=a.restarts),
}


@ATTACKS.register("autoattack-binary")
@dataclass(frozen=True)
class AutoAttackBinary(Attack):
    """Binary-safe AutoAttack: APGD-CE, APGD-margin, Square; later members only on still-robust points."""

    #: the score-based member needs no gradients, but the APGD members do
    requires_grad: ClassVar[bool] = True

    eps: float = 8 / 255
    norm: Norm = Norm.LINF
    steps: int = 100
    queries: int = 5000
    restarts: int = 1
    members: tuple[str, ...] = ("apgd-ce", "apgd-margin", "square")
    direction: Direction = Direction.BOTH
    #: run a member only on points no earlier member broke (AutoAttack); False runs every member on all
    early_stop: bool = True

    def __post_init__(self) -> None:
        check_vocabulary(norm=self.norm, direction=self.direction)
        check_budget(self.eps, self.norm)
        check_positive_int(steps=self.steps, queries=self.queries, restarts=self.restarts)
        unknown = [m for m in self.members if m not in MEMBERS]
        if unknown or not self.members:
            raise ValueError(f"members={self.members!r}: choose from {', '.join(MEMBERS)}")
        if len(set(self.members)) != len(self.members):
            raise ValueError(f"members={self.members!r} repeats a member")
        self.attacks()  # each member validates its budget now

    def forward_budget(self) -> int | None:
        """The members run one after the other: their budgets add up."""
        return sum(member.forward_budget() or 0 for member in self.attacks()) or None

    def attacks(self) -> list[Attack]:
        return [MEMBERS[name](self) for name in self.members]

    def perturb_with_info(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        best = x.clone()
        score = exact(model)  # candidates are compared in float32 (afsl_bench/core/precision.py)
        with torch.no_grad():
            best_loss = attack_loss(score(x), y, Loss.MARGIN)
        broken_by = torch.full((len(x),), float("nan"), device=x.device)
        everyone = torch.arange(len(x), device=x.device)
        for index, attack in enumerate(self.attacks()):
            rows = broken_by.isnan().nonzero().squeeze(1) if self.early_stop else everyone
            if len(rows) == 0:
                break
            x_adv = attack(model, x[rows], y[rows])
            with torch.no_grad():
                logits = score(x_adv)
            loss = attack_loss(logits, y[rows], Loss.MARGIN)
            newly = misclassified(logits, y[rows]) & broken_by[rows].isnan()
            # a sample keeps the first point that fools the detector, else its highest-loss point
            better = newly | (broken_by[rows].isnan() & (loss > best_loss[rows]))
            best[rows[better]] = x_adv[better]
            best_loss[rows[better]] = loss[better]
            broken_by[rows[newly]] = float(index)
        return best, {"broken_by": broken_by}
