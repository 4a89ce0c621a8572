"""Transfer (black-box) attack: craft adversarial examples on a surrogate detector with a white-box gradient
attack and evaluate them on the target (Papernot et al., 2016, https://arxiv.org/abs/1605.07277; against
deepfake detectors: Hussain et al., WACV 2021, https://arxiv.org/abs/2002.12749).

The surrogate is itself a component spec: a registered detector and defense, trained with the cell's
training settings on ``surrogate_data`` (a registered data set with its defaults; None: the cell's training
data) with seed ``surrogate_seed`` (None: the cell's seed + 1, so the same architecture is an independently
trained model), or loaded from the checkpoint cache when that training spec has run before. The attack
names it in ``surrogates()``: the planner checks those names against the registries before anything runs
(this module imports none of them), and the runner supplies the model through ``Attack.prepare``. The
target's gradients are never used, so the target may be non-differentiable. With the target's own detector,
defense and seed as surrogate, the surrogate *is* the target (same training id, same checkpoint) and the
result equals the white-box attack.

The inner attack is any registered gradient attack (``inner``: pgd, apgd, fgsm, cw, eot-pgd, ...); the
shared vocabulary (eps, steps, step_size, norm, loss, direction, early_stop) is passed on to it where it
has the field. ``early_stop`` is off by default: stopping as soon as the surrogate is fooled leaves a point
just past the surrogate's boundary, which transfers poorly (on the test fixture: 95% robust accuracy on the
target with early stopping, 79% with the full budget).

Arguments (defaults): surrogate_detector resnet, surrogate_defense none, surrogate_data None,
surrogate_seed None, inner pgd,
eps 8/255, steps 10, step_size None (the inner attack's rule), norm linf, loss ce, direction both,
early_stop False.

Example::

    afsl-bench run --defense afsl --attack transfer --set attack.surrogate_detector=meso4 \\
        --set attack.inner=apgd --set attack.steps=50
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from afsl_bench.attacks.base import ATTACKS, Attack, AttackContext, SurrogateRequest
from afsl_bench.attacks.ops import check_budget, check_positive_int, check_vocabulary, misclassified
from afsl_bench.attacks.vocabulary import Direction, Loss, Norm
from afsl_bench.core.errors import ConfigError

#: the inner attack's fields the transfer attack passes on when the inner attack has them
SHARED = ("eps", "steps", "step_size", "norm", "loss", "early_stop")


@ATTACKS.register("transfer")
@dataclass(frozen=True)
class Transfer(Attack):
    """Transfer attack: a gradient attack on a surrogate (detector + defense), replayed on the target."""

    requires_grad: ClassVar[bool] = False

    surrogate_detector: str = "resnet"
    surrogate_defense: str = "none"
    #: a registered data set (its defaults) to train the surrogate on; None: the target's training data
    surrogate_data: str | None = None
    #: None: the cell's seed + 1 (an independently trained surrogate); the cell's seed: the target itself
    surrogate_seed: int | None = None
    inner: str = "pgd"
    eps: float = 8 / 255
    steps: int = 10
    step_size: float | None = None
    norm: Norm = Norm.LINF
    loss: Loss = Loss.CE
    direction: Direction = Direction.BOTH
    #: stop a sample once the surrogate is fooled (off: the full budget transfers better)
    early_stop: bool = False

    def __post_init__(self) -> None:
        check_vocabulary(self.norm, self.loss, self.direction)
        check_budget(self.eps, self.norm)
        check_positive_int(steps=self.steps)
        if self.inner == "transfer" or self.inner not in ATTACKS:
            gradient = [n for n in ATTACKS.names() if n != "transfer" and ATTACKS.get(n).requires_grad]
            raise ValueError(f"inner={self.inner!r} must be a gradient attack: one of {', '.join(gradient)}")
        if not ATTACKS.get(self.inner).requires_grad:
            raise ValueError(
                f"inner={self.inner!r} needs no gradients, so it does not transfer; use it directly"
            )
        self.inner_attack()  # the inner attack validates the shared values now, not at the first batch

    def inner_attack(self) -> Attack:
        fields = ATTACKS.params_of(self.inner)
        shared = {k: getattr(self, k) for k in SHARED if k in fields}
        try:
            return ATTACKS.build(self.inner, **shared)
        except ConfigError as err:
            raise ValueError(f"inner attack: {err}") from err

    def surrogates(self) -> tuple[SurrogateRequest, ...]:
        """The surrogate by registered names: the planner checks them before anything runs."""
        return (SurrogateRequest(self.surrogate_detector, self.surrogate_defense, self.surrogate_data),)

    def prepare(self, context: AttackContext) -> Attack:
        seed = context.seed + 1 if self.surrogate_seed is None else self.surrogate_seed
        surrogate = context.surrogate(
            self.surrogate_detector, self.surrogate_defense, seed, self.surrogate_data
        )
        return BoundTransfer(self.inner_attack(), surrogate, self.direction)

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        raise ConfigError(
            "the transfer attack needs its surrogate: run it through the runner (afsl-bench run), or call "
            "attack.prepare(context) and use the attack it returns"
        )


@dataclass(frozen=True, eq=False)
class BoundTransfer(Attack):
    """A transfer attack with its surrogate model: what ``Transfer.prepare`` returns (not registered)."""

    requires_grad: ClassVar[bool] = False
    registered_name: ClassVar[str] = "transfer"

    inner: Attack
    surrogate: nn.Module
    direction: Direction = Direction.BOTH

    def perturb_with_info(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        surrogate = self.surrogate.to(x.device)
        x_adv = self.inner(surrogate, x, y)
        with torch.no_grad():
            fooled = misclassified(surrogate(x_adv), y)
        return x_adv, {"fooled_surrogate": fooled}

