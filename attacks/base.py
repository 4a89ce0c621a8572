"""The attack contract, shared vocabulary and helpers.

An attack is a frozen dataclass whose fields are its parameters (one vocabulary across attacks: ``eps``,
``step_size``, ``steps``, ``restarts``, ``norm``, ``loss``, ``direction``). Calling it,
``attack(model, x, y) -> x_adv``, perturbs the samples its ``direction`` targets and returns the others
unchanged. The model is passed at call time, so one attack object serves a whole grid. Inputs are RGB in
[0, 1]; budgets are in that pixel space.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.errors import ConfigError
from benchmark.registry import Registry

ATTACKS: Registry = Registry("attack")


class Direction(StrEnum):
    """Which samples are attacked: ``both`` pushes every sample to the wrong class (the AFSL paper's
    setting); ``fake-to-real`` attacks only fakes (evasion, Hussain et al., WACV 2021)."""

    BOTH = "both"
    FAKE_TO_REAL = "fake-to-real"


class Norm(StrEnum):
    LINF = "linf"
    L2 = "l2"


class Loss(StrEnum):
    """``ce``: cross-entropy. ``margin``: the binary logit margin z_wrong - z_true, the two-class form of
    Carlini-Wagner / DLR losses that does not index a third logit."""

    CE = "ce"
    MARGIN = "margin"


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


def project(delta: torch.Tensor, norm: Norm, eps: float) -> torch.Tensor:
    """Project a perturbation onto the eps-ball of the norm (per sample)."""
    if Norm(norm) is Norm.LINF:
        return delta.clamp(-eps, eps)
    flat = delta.flatten(1).norm(dim=1).clamp_min(1e-12)
    factor = (eps / flat).clamp(max=1.0)
    return delta * factor.view(-1, *([1] * (delta.dim() - 1)))


class GradientsUnavailableError(ConfigError):
    """A gradient attack was pointed at a model whose output has no gradient w.r.t. its input."""


def require_gradients(attack: str, model: nn.Module) -> None:
    """Fail early, naming the attack, when a model declares itself non-differentiable (``differentiable =
    False``: a black-box API wrapper, a JPEG front end without a surrogate gradient)."""
    if getattr(model, "differentiable", True) is False:
        raise GradientsUnavailableError(
            f"attack '{attack}' needs input gradients but the detector {type(model).__name__} declares "
            "differentiable=False; use a score-based attack (square, nes), a transfer attack (transfer) "
            "or a distortion"
        )


@dataclass(frozen=True)
class AttackOutput:
    """What ``Attack.run`` returns: the adversarial batch and per-sample columns for the per-sample table
    (``queries`` a query attack spent, ``broken_by`` the ensemble member that broke a sample, ...). Rows the
    attack's direction leaves alone hold NaN."""

    x_adv: torch.Tensor
    info: dict[str, torch.Tensor] = field(default_factory=dict)


@dataclass(frozen=True)
class AttackContext:
    """What the runner offers attacks that need more than the model under attack (``Attack.prepare``).

    ``surrogate(detector, defense, seed, data)`` returns a trained model on the cell's device, trained with
    the cell's training settings on the data set ``data`` (a registered name with its defaults; None: the
    cell's training data), or loaded from the checkpoint cache, and notes its training id in ``used``.
    """

    surrogate: Callable[[str, str, int | None, str | None], nn.Module]
    seed: int
    used: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Attack:
    """Base class. Subclasses implement ``perturb(model, x, y) -> x_adv`` on the attacked samples only (or
    ``perturb_with_info`` to add per-sample columns)."""

    #: False for distortions and score-only attacks that never ask for gradients
    requires_grad: ClassVar[bool] = True
    #: the norms the attack supports; ``check_vocabulary`` rejects others, naming ``norm``
    norms: ClassVar[tuple[Norm, ...]] = (Norm.LINF, Norm.L2)

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.run(model, x, y).x_adv

    def run(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> AttackOutput:
        """Perturb the samples the direction targets; the others come back unchanged."""
        if self.requires_grad:
            require_gradients(self.name, model)
        mask = attacked_mask(y, getattr(self, "direction", Direction.BOTH))
        x_adv, info = x.clone(), {}
        if mask.any():
            with frozen(model):
                x_part, info_part = self.perturb_with_info(model, x[mask], y[mask])
            x_adv[mask] = x_part.detach().to(x.dtype)
            for key, values in info_part.items():
                column = torch.full((len(x),), float("nan"), device=values.device)
                column[mask.to(values.device)] = values.float()
                info[key] = column
        return AttackOutput(x_adv, info)

    def perturb_with_info(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return self.perturb(model, x, y), {}

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def prepare(self, context: AttackContext) -> Attack:
        """Hook for attacks that need a surrogate model or other resources; the default needs nothing."""
        return self

    @property
    def name(self) -> str:
        return getattr(type(self), "registered_name", type(self).__name__.lower())

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "requires_grad": self.requires_grad}
