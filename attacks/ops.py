"""The shared tensor helpers and parameter checks of the attacks (and of the defenses that craft attacks).

The one home of what more than one attack uses; ``attacks.base`` holds the contract and vocabulary only.

- parameter checks, called from ``__post_init__`` so a bad value fails at construction: ``check_vocabulary``,
  ``check_positive_int``, ``check_budget``; ``require_gradients`` at the first call;
- the attacker's side of a batch: ``attacked_mask`` (which samples a direction perturbs), ``attack_loss``
  and ``loss_and_grad`` (the loss maximised and its input gradient), ``misclassified``;
- steps in the eps-ball: ``random_start``, ``ascent_direction``, ``project``, ``per_sample``;
- ``frozen``: the model in eval mode without parameter gradients while it is attacked.

Inputs are RGB in [0, 1]; budgets are in that pixel space.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from afsl_bench.attacks.vocabulary import Direction, GradientsUnavailableError, Loss, Norm

# --- parameter checks ---------------------------------------------------------------------------------------


def check_vocabulary(
    norm: Norm | str | None = None,
    loss: Loss | str | None = None,
    direction: Direction | str | None = None,
    norms: tuple[Norm, ...] = tuple(Norm),
) -> None:
    """Reject unknown enum values at construction (not at the first call), naming the field and choices;
    ``norms`` narrows the norms an attack supports (C&W: L2 only). ``None`` skips a field."""
    fields = (("norm", norms, norm), ("loss", tuple(Loss), loss), ("direction", tuple(Direction), direction))
    for field, allowed, value in fields:
        if value is not None and value not in {m.value for m in allowed}:
            choices = ", ".join(m.value for m in allowed)
            shown = getattr(value, "value", value)  # an enum member prints as its plain value
            raise ValueError(f"{field}={shown!r} is not supported here; choose one of {choices}")


def check_positive_int(**values: int) -> None:
    """``steps=0`` -> ValueError naming ``steps``."""
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")


def check_budget(eps: float, norm: Norm) -> None:
    """L-inf budgets live in (0, 1] (pixel space); L2 budgets must be > 0."""
    if Norm(norm) is Norm.LINF and not 0 < eps <= 1:
        raise ValueError(
            f"eps={eps:.4g} is outside (0, 1] for an L-inf budget in [0,1] pixel space (try 8/255)"
        )
    if Norm(norm) is Norm.L2 and not eps > 0:
        raise ValueError(f"eps={eps:.4g} must be > 0 for an L2 budget (try 0.5)")


def require_gradients(attack: str, model: nn.Module) -> None:
    """Fail early, naming the attack, when a model declares itself non-differentiable (``differentiable =
    False``: a black-box API wrapper, a JPEG front end without a surrogate gradient)."""
    if getattr(model, "differentiable", True) is False:
        raise GradientsUnavailableError(
            f"attack '{attack}' needs input gradients but the detector {type(model).__name__} declares "
            "differentiable=False; use a score-based attack (square, nes), a transfer attack (transfer) "
            "or a distortion"
        )


# --- the attacker's loss and decision -----------------------------------------------------------------------


def attacked_mask(y: torch.Tensor, direction: Direction) -> torch.Tensor:
    """Boolean mask of the samples an attack with this direction perturbs."""
    if Direction(direction) is Direction.FAKE_TO_REAL:
        return y == 1
    return torch.ones_like(y, dtype=torch.bool)


def attack_loss(logits: torch.Tensor, y: torch.Tensor, loss: Loss) -> torch.Tensor:
    """Per-sample loss the attacker maximises."""
    if Loss(loss) is Loss.CE:
        return F.cross_entropy(logits, y, reduction="none")
    true = logits.gather(1, y[:, None]).squeeze(1)
    wrong = logits.gather(1, (1 - y)[:, None]).squeeze(1)
    return wrong - true


def loss_and_grad(
    model: nn.Module, x_adv: torch.Tensor, y: torch.Tensor, loss: Loss
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Logits, per-sample attacker loss (both detached) and the gradient of the summed loss w.r.t. x_adv.

    ``enable_grad`` because callers often run evaluation loops under ``torch.no_grad()``; the gradient is
    taken w.r.t. the input only, so no parameter ``.grad`` is ever written.
    """
    with torch.enable_grad():
        x_adv = x_adv.detach().requires_grad_(True)
        logits = model(x_adv)
        if not logits.requires_grad:
            raise GradientsUnavailableError(
                f"{type(model).__name__}'s output does not depend differentiably on its input (no grad_fn), "
                "so a gradient attack cannot run; use a score-based attack (square, nes) or transfer"
            )
        per_sample = attack_loss(logits, y, loss)
        (grad,) = torch.autograd.grad(per_sample.sum(), x_adv)
    return logits.detach(), per_sample.detach(), grad


def misclassified(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return logits.argmax(1) != y


#: a reduced-precision margin this close to the boundary, relative to the largest logit (at least 1), is
#: re-decided in float32: bf16 logits of the suite's detectors were measured up to 4.5 % of that scale off
#: their float32 values (meso4, tiny-cnn; docs/speed.md), so the band is twice that
NEAR_BOUNDARY = 0.1


def decided(
    model: nn.Module,
    x: torch.Tensor,
    logits: torch.Tensor,
    y: torch.Tensor,
    among: torch.Tensor | None = None,
) -> torch.Tensor:
    """Which samples ``logits`` (the crafting forward's, at ``x``) misclassify. When the model crafts in
    reduced precision (``FrozenModel.exact``; afsl_bench/core/precision.py), every sample it calls fooled,
    and every one it leaves within ``NEAR_BOUNDARY`` of the boundary, is decided in float32 instead: a search
    neither stops on a point only the reduced forward calls adversarial nor passes one float32 calls
    adversarial. ``among``: the samples to decide (the others come back False). Free in float32."""
    fooled = misclassified(logits, y)
    if among is not None:
        fooled = fooled & among
    if not getattr(model, "reduced", False):
        return fooled
    margin = (logits[:, 1] - logits[:, 0]).abs()
    scale = logits.abs().amax(1).clamp_min(1.0)
    check = fooled | (margin <= NEAR_BOUNDARY * scale)
    if among is not None:
        check = check & among
    if not check.any():
        return fooled
    rows = check.nonzero().squeeze(1)
    with torch.no_grad():
        fooled = fooled.clone()
        fooled[rows] = misclassified(model.exact(x[rows]), y[rows])
    return fooled


class Reshaped:
    """A model seen through a reshape of its input to ``shape`` (a query attack's flattened clips), with
    the model's float32 forward (``exact``) seen the same way."""

    def __init__(self, model: nn.Module, shape: tuple[int, ...]) -> None:
        self.model, self.shape = model, shape
        self.reduced = getattr(model, "reduced", False)

    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        return self.model(z.reshape(-1, *self.shape))

    def exact(self, z: torch.Tensor) -> torch.Tensor:
        return exact(self.model)(z.reshape(-1, *self.shape))


def exact(model: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """The model's float32 forward (``FrozenModel.exact``), or the model itself: where candidates are
    compared before one is kept."""
    return getattr(model, "exact", model)


# --- steps in the eps-ball ----------------------------------------------------------------------------------


def random_start(x: torch.Tensor, norm: Norm, eps: float) -> torch.Tensor:
    """A uniform point of the L-inf ball, or a uniformly random direction scaled into the L2 ball."""
    if Norm(norm) is Norm.LINF:
        delta = torch.empty_like(x).uniform_(-eps, eps)
    else:
        delta = torch.randn_like(x)
        radius = torch.rand(len(x), device=x.device).view(-1, *([1] * (x.dim() - 1)))
        delta = delta / delta.flatten(1).norm(dim=1).view_as(radius).clamp_min(1e-12) * eps * radius
    return (x + delta).clamp(0, 1) - x


def ascent_direction(grad: torch.Tensor, norm: Norm) -> torch.Tensor:
    if Norm(norm) is Norm.LINF:
        return grad.sign()
    return grad / grad.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * (grad.dim() - 1)))


def project(delta: torch.Tensor, norm: Norm, eps: float) -> torch.Tensor:
    """Project a perturbation onto the eps-ball of the norm (per sample)."""
    if Norm(norm) is Norm.LINF:
        return delta.clamp(-eps, eps)
    flat = delta.flatten(1).norm(dim=1).clamp_min(1e-12)
    factor = (eps / flat).clamp(max=1.0)
    return delta * factor.view(-1, *([1] * (delta.dim() - 1)))


def per_sample(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Reshape a [N] tensor to broadcast over the non-batch dimensions of ``like``."""
    return values.view(-1, *([1] * (like.dim() - 1)))


# --- the model under attack ---------------------------------------------------------------------------------


@contextlib.contextmanager
def frozen(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode and parameters without gradients while attacking (input gradients only), then restore."""
    # per module: model.train(True) would also switch submodules the caller had put in eval mode (a frozen
    # backbone's BatchNorm during fine-tuning) to training mode
    modes = [m.training for m in model.modules()]
    flags = [p.requires_grad for p in model.parameters()]
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    try:
        yield model
    finally:
        for p, flag in zip(model.parameters(), flags, strict=True):
            p.requires_grad_(flag)
        for m, mode in zip(model.modules(), modes, strict=True):
            m.training = mode
