"""PGD with Expectation over Transformation (EOT; Athalye et al., ICML 2018, "Synthesizing robust adversarial
examples", https://arxiv.org/abs/1707.07397): the adversarial example should survive the distortions the
media will meet on its way to the detector, so the loss at each step is the mean over ``eot_samples``
random distortions t of the attacker's loss at t(x_adv). This is the "robust white-box" attack of Hussain
et al. (WACV 2021, "Adversarial Deepfakes", https://arxiv.org/abs/2002.12749), which averages over Gaussian
blur, Gaussian noise, JPEG-like compression and down-sizing.

Each draw picks a transform from ``transforms`` and a severity in 0..``max_severity`` uniformly (torch's
global RNG: seeded runs are reproducible); one draw applies to the whole batch. The distortions are those of
``attacks.distortions`` and ``attacks.video_codec`` at their severity tables. Blur, resize, noise and colour
are differentiable and differentiated through; the 8-bit codecs (``jpeg``, ``video-codec``) have no useful
gradient and pass through a straight-through estimator (forward: the real codec, backward: the identity;
BPDA, Athalye, Carlini & Wagner, ICML 2018, https://arxiv.org/abs/1802.00420). Every step is an L-inf sign
step (or L2 normalised step) projected onto the eps-ball and [0, 1], as ``attacks.pgd``; all samples run
all steps (no early stop: fooling the undistorted model is not the goal).

``run`` also scores the returned batch after each real round trip in ``round_trips`` (at
``round_trip_severity``): the column ``adv_score_after_<name>`` holds the model's margin z_fake - z_real on
<name>(x_adv) for every row (the rows the direction left alone too), from which the runner reports robust
metrics "after the round trip".

Arguments (defaults): eps 8/255, step_size None (= 2.5 * eps / steps), steps 20, norm linf, loss ce,
direction both, random_start True, eot_samples 4, transforms (jpeg, resize, blur, noise), max_severity 3,
round_trips (jpeg, video-codec), round_trip_severity 3.

Example::

    out = EOTPGD(eps=8/255, transforms=("jpeg", "blur")).run(model, x, y)
    out.x_adv, out.info["adv_score_after_jpeg"]          # x in [0,1], y with 1 = fake
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from afsl_bench.attacks.base import ATTACKS, Attack, AttackOutput
from afsl_bench.attacks.distortions import DISTORTIONS, NON_DIFFERENTIABLE, check_severity
from afsl_bench.attacks.ops import (
    ascent_direction,
    attack_loss,
    check_budget,
    check_positive_int,
    check_vocabulary,
    frozen,
    project,
    random_start,
)
from afsl_bench.attacks.video_codec import h264, require_av
from afsl_bench.attacks.vocabulary import Direction, Loss, Norm

Transform = Callable[..., torch.Tensor]

#: every distortion by its registered name: f(x, severity, generator=None) -> x
TRANSFORMS: dict[str, Transform] = {**DISTORTIONS, "video-codec": h264}
#: the codecs EOT differentiates with the straight-through estimator
STRAIGHT_THROUGH = NON_DIFFERENTIABLE | {"video-codec"}


def straight_through(transform: Transform, x: torch.Tensor, level: int) -> torch.Tensor:
    """BPDA with the identity: the value of transform(x), the gradient of x."""
    return x + (transform(x.detach(), level) - x).detach()


def distort(name: str, x: torch.Tensor, level: int) -> torch.Tensor:
    """TRANSFORMS[name] at a severity, differentiable in x (straight through for the codecs)."""
    if name in STRAIGHT_THROUGH:
        return straight_through(TRANSFORMS[name], x, level)
    return TRANSFORMS[name](x, level)


def margin(logits: torch.Tensor) -> torch.Tensor:
    """The detector's score z_fake - z_real (positive: called fake)."""
    return logits[:, 1] - logits[:, 0]


def check_names(field: str, names: tuple[str, ...], allow_empty: bool) -> None:
    valid = ", ".join(sorted(TRANSFORMS))
    if isinstance(names, str):
        raise TypeError(f"{field} must be a tuple of names, got the string {names!r}; valid names: {valid}")
    if not names and not allow_empty:
        raise ValueError(f"{field} must name at least one transform; valid names: {valid}")
    unknown = [name for name in names if name not in TRANSFORMS]
    if unknown:
        raise ValueError(f"{field} has unknown name(s) {', '.join(map(repr, unknown))}; valid names: {valid}")


@ATTACKS.register("eot-pgd")
@dataclass(frozen=True)
class EOTPGD(Attack):
    """EOT-PGD (Athalye et al. 2018; Hussain et al. 2021): PGD on the mean loss over random distortions."""

    eps: float = 8 / 255
    step_size: float | None = None
    steps: int = 20
    norm: Norm = Norm.LINF
    loss: Loss = Loss.CE
    direction: Direction = Direction.BOTH
    random_start: bool = True
    #: distortions drawn per step; the loss is their mean
    eot_samples: int = 4
    transforms: tuple[str, ...] = ("jpeg", "resize", "blur", "noise")
    #: each draw's severity is uniform in 0..max_severity (0: no distortion)
    max_severity: int = 3
    #: real round trips scored after the attack: column ``adv_score_after_<name>``
    round_trips: tuple[str, ...] = ("jpeg", "video-codec")
    round_trip_severity: int = 3

    def __post_init__(self) -> None:
        check_vocabulary(self.norm, self.loss, self.direction)
        check_budget(self.eps, self.norm)
        check_positive_int(steps=self.steps, eot_samples=self.eot_samples)
        if self.step_size is not None and not self.step_size > 0:
            raise ValueError(f"step_size must be > 0, got {self.step_size}")
        check_names("transforms", self.transforms, allow_empty=False)
        check_names("round_trips", self.round_trips, allow_empty=True)
        check_severity(self.max_severity, "max_severity")
        check_severity(self.round_trip_severity, "round_trip_severity")
        if "video-codec" in (*self.transforms, *self.round_trips):
            require_av()

    def forward_budget(self) -> int:
        """``eot_samples`` forward and backward passes per step."""
        return self.steps * self.eot_samples

    @property
    def step(self) -> float:
        return self.step_size if self.step_size is not None else 2.5 * self.eps / self.steps

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        delta = random_start(x, self.norm, self.eps) if self.random_start else torch.zeros_like(x)
        for _ in range(self.steps):
            grad = self.eot_gradient(model, x + delta, y)
            delta = project(
                ascent_direction(grad, self.norm).mul_(self.step).add_(delta), self.norm, self.eps
            )
            delta = (x + delta).clamp_(0, 1).sub_(x)
        return (x + delta).clamp(0, 1)

    def eot_gradient(self, model: nn.Module, x_adv: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Gradient of the mean attacker loss over ``eot_samples`` random distortions of x_adv (one backward
        per draw, so memory holds one graph at a time)."""
        grad = torch.zeros_like(x_adv)
        with torch.enable_grad():
            for _ in range(self.eot_samples):
                name, level = self.draw()
                point = x_adv.detach().requires_grad_(True)
                loss = attack_loss(model(distort(name, point, level)), y, self.loss)
                grad += torch.autograd.grad(loss.sum(), point)[0]
        return grad / self.eot_samples

    def draw(self) -> tuple[str, int]:
        """A transform and a severity, uniformly (torch's global RNG)."""
        index = int(torch.randint(len(self.transforms), ()))
        return self.transforms[index], int(torch.randint(self.max_severity + 1, ()))

    def run(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> AttackOutput:
        """The attack, then the model's score after each real round trip of the whole returned batch."""
        out = super().run(model, x, y)
        scores = {}
        with torch.no_grad(), frozen(model):
            for name in self.round_trips:
                logits = model(TRANSFORMS[name](out.x_adv, self.round_trip_severity))
                scores[f"adv_score_after_{name}"] = margin(logits).float()
        return AttackOutput(out.x_adv, {**out.info, **scores})
