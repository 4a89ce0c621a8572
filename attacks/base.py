"""The attack contract and its shared vocabulary.

An attack is a frozen dataclass whose fields are its parameters (one vocabulary across attacks: ``eps``,
``step_size``, ``steps``, ``restarts``, ``norm``, ``loss``, ``direction``). Calling it,
``attack(model, x, y) -> x_adv``, perturbs the samples its ``direction`` targets and returns the others
unchanged. The model is passed at call time, so one attack object serves a whole grid. Inputs are RGB in
[0, 1]; budgets are in that pixel space.

This module is the protocol only: the ``ATTACKS`` registry, ``Attack``, ``AttackOutput``, ``AttackContext`` and
``SurrogateRequest``. The vocabulary (``Norm``, ``Loss``, ``Direction``, ``GradientsUnavailableError``) is in
``attacks.vocabulary``; the helpers attacks share (projection, losses, gradients, parameter checks, ``frozen``)
in ``attacks.ops``, which imports the vocabulary only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from afsl_bench.attacks.ops import attacked_mask, frozen, require_gradients
from afsl_bench.attacks.vocabulary import Direction, Norm
from afsl_bench.core.registry import Registry

ATTACKS: Registry = Registry("attack")


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
class SurrogateRequest:
    """A model an attack needs besides its target, by registered names; the planner checks the names."""

    detector: str
    defense: str
    data: str | None = None  # None: the cell's training data


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

    def surrogates(self) -> tuple[SurrogateRequest, ...]:
        """The models this attack needs besides its target (a transfer attack's surrogate), by registered
        names. The planner validates these names before anything runs, and the runner supplies the models
        through ``prepare(context)``; the default needs none."""
        return ()

    def forward_budget(self) -> int | None:
        """About how many model evaluations one attacked sample costs at most (early stops make it fewer),
        for progress within a batch and its time estimate, never for a result. The default reads the shared
        vocabulary: ``queries`` (a score-based attack's budget) or ``steps`` (one forward and backward
        each), times ``restarts``; None when the attack has neither."""
        per_run = getattr(self, "queries", None) or getattr(self, "steps", None)
        return None if per_run is None else int(per_run) * int(getattr(self, "restarts", 1) or 1)

    @property
    def name(self) -> str:
        return getattr(type(self), "registered_name", type(self).__name__.lower())

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "requires_grad": self.requires_grad}
