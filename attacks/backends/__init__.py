"""Optional third-party backends: run torchattacks' or ART's implementation of an attack through our protocol.

``--set attack.backend=torchattacks`` (or ``art``) makes an attack hand its (already direction-masked,
frozen-model) batch to the other library, with the same budget translated into that library's arguments,
so a number can be cross-checked without leaving the runner. Translators are registered per (attack
class, backend) with ``@translator``; an attack without a translator for the chosen backend fails at
construction with the list of backends it has, and a translator's ``supports(attack)`` check names the first
parameter the library cannot express (torchattacks' APGD has no margin loss, ART's APGD always starts at
random, ...), also at construction: a backend never silently runs another setting than the one asked for.

Neither library is the engine (see README): torchattacks' AutoAttack, APGD-T and DLR losses index a third
logit and crash on two-class detectors; ART works on numpy arrays in memory and is slower.

This package is the one home of the translators, so an attack's own file holds its algorithm and nothing
else: here the registry and dispatch (``check_backend``, ``run_backend``) and what both libraries hard-code;
``via_torchattacks`` and ``via_art`` hold each library's translators, keyed by the attack's registered name
and loaded the first time another backend than ours is asked for. The libraries themselves are imported
inside the translators, only when one runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

if TYPE_CHECKING:
    from afsl_bench.attacks.apgd import APGD
    from afsl_bench.attacks.pgd import PGD

from afsl_bench.core.errors import ConfigError


class Backend(StrEnum):
    OURS = "ours"
    TORCHATTACKS = "torchattacks"
    ART = "art"


#: the installation hint per backend, used when the import fails
INSTALL = {
    Backend.TORCHATTACKS: "pip install --no-deps torchattacks==3.5.1",
    Backend.ART: "pip install adversarial-robustness-toolbox",
}

Translator = Callable[[Any, nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]
#: ``supports(attack)``: None when the backend can run the attack's settings, else what it cannot run,
#: starting with the parameter's name ("loss='margin': ...")
Supports = Callable[[Any], str | None]


@dataclass(frozen=True)
class Translation:
    run: Translator
    supports: Supports


#: (registered attack name, backend) -> translation
_TRANSLATORS: dict[tuple[str, Backend], Translation] = {}


def translator(
    attack: str, backend: Backend, supports: Supports | None = None
) -> Callable[[Translator], Translator]:
    """Register ``f(attack, model, x, y) -> x_adv`` as the implementation in ``backend`` of the attack
    registered as ``attack`` (that name only: a subclass registered under another name has none).
    ``supports`` vets an attack's settings at construction."""

    def add(f: Translator) -> Translator:
        _TRANSLATORS[(attack, Backend(backend))] = Translation(f, supports or (lambda attack: None))
        return f

    return add


def _translators() -> dict[tuple[str, Backend], Translation]:
    """The registered translators, their modules imported on first use (they register on import)."""
    from afsl_bench.attacks.backends import via_art, via_torchattacks  # noqa: F401  (registration)

    return _TRANSLATORS


def backends_of(attack: str) -> list[str]:
    return [Backend.OURS.value] + [b.value for (name, b) in _translators() if name == attack]


def check_backend(attack: Any) -> None:
    """Called from an attack's ``__post_init__``: the backend must be known, have a translator, and be able to
    express the attack's settings."""
    backend = getattr(attack, "backend", Backend.OURS)
    if backend not in {b.value for b in Backend}:
        raise ValueError(f"backend={backend!r} is not one of {', '.join(b.value for b in Backend)}")
    if Backend(backend) is Backend.OURS:
        return
    found = _translators().get((attack.name, Backend(backend)))
    if found is None:
        raise ValueError(
            f"backend={backend} has no implementation of this attack; choose one of "
            f"{', '.join(backends_of(attack.name))}"
        )
    problem = found.supports(attack)
    if problem:
        raise ValueError(f"backend={backend} cannot run {problem}")


def run_backend(attack: Any, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """x_adv from the attack's chosen third-party backend (the caller handles direction and freezing)."""
    backend = Backend(attack.backend)
    try:
        return _translators()[(attack.name, backend)].run(attack, model, x, y).to(x.device, x.dtype)
    except ImportError as err:
        raise ConfigError(f"backend={backend} is not installed ({err}); {INSTALL[backend]}") from err


def first_problem(*checks: tuple[bool, str]) -> str | None:
    """The message of the first failed ``(ok, message)`` check, or None."""
    return next((message for ok, message in checks if not ok), None)


# --- what both libraries hard-code --------------------------------------------------------------------------


def apgd_checks(attack: APGD, lib: str) -> list[tuple[bool, str]]:
    """What both libraries hard-code: a random start, rho = momentum = 0.75 (our early_stop returns the same
    points either way, so it needs no check)."""
    return [
        (attack.random_start, f"random_start=false: {lib} always starts at a random point of the ball"),
        (attack.rho == 0.75, f"rho={attack.rho}: {lib} fixes rho at 0.75"),
        (attack.momentum == 0.75, f"momentum={attack.momentum}: {lib} fixes the momentum at 0.75"),
    ]


def pgd_checks(attack: PGD, lib: str) -> list[tuple[bool, str]]:
    return [
        (
            not attack.early_stop,
            f"early_stop=true: {lib} steps every sample every time (set early_stop=false)",
        )
    ]
