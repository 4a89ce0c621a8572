"""Helpers shared by the gradient attacks (PGD, FGSM, APGD): the input gradient and parameter checks."""

from __future__ import annotations

import torch
from torch import nn

from attacks.base import Direction, GradientsUnavailableError, Loss, Norm, attack_loss


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


def per_sample(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Reshape a [N] tensor to broadcast over the non-batch dimensions of ``like``."""
    return values.view(-1, *([1] * (like.dim() - 1)))
