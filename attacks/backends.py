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

This module is the shared machinery only: the registry, ``check_backend`` / ``run_backend``, and the helpers
translators use (``first_problem``, ``ta_seed``, ``MarginLoss``, ``art_classifier``, ``art_generate``, the
norm tables). Each attack registers its translators in its own module, below its class (pgd, fgsm, apgd,
cw, square); this module imports none of them.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np
import torch
from torch import nn

from afsl_bench.attacks.vocabulary import Loss, Norm
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


_TRANSLATORS: dict[tuple[type, Backend], Translation] = {}


def translator(
    attack_cls: type, backend: Backend, supports: Supports | None = None
) -> Callable[[Translator], Translator]:
    """Register ``f(attack, model, x, y) -> x_adv`` as ``attack_cls``'s implementation in ``backend`` (that
    class only, not its subclasses). ``supports`` vets an attack's settings at construction."""

    def add(f: Translator) -> Translator:
        _TRANSLATORS[(attack_cls, Backend(backend))] = Translation(f, supports or (lambda attack: None))
        return f

    return add


def backends_of(attack_cls: type) -> list[str]:
    return [Backend.OURS.value] + [b.value for (cls, b) in _TRANSLATORS if cls is attack_cls]


def check_backend(attack: Any) -> None:
    """Called from an attack's ``__post_init__``: the backend must be known, have a translator, and be able to
    express the attack's settings."""
    backend = getattr(attack, "backend", Backend.OURS)
    if backend not in {b.value for b in Backend}:
        raise ValueError(f"backend={backend!r} is not one of {', '.join(b.value for b in Backend)}")
    if Backend(backend) is Backend.OURS:
        return
    found = _TRANSLATORS.get((type(attack), Backend(backend)))
    if found is None:
        raise ValueError(
            f"backend={backend} has no implementation of this attack; choose one of "
            f"{', '.join(backends_of(type(attack)))}"
        )
    problem = found.supports(attack)
    if problem:
        raise ValueError(f"backend={backend} cannot run {problem}")


def run_backend(attack: Any, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """x_adv from the attack's chosen third-party backend (the caller handles direction and freezing)."""
    backend = Backend(attack.backend)
    try:
        return _TRANSLATORS[(type(attack), backend)].run(attack, model, x, y).to(x.device, x.dtype)
    except ImportError as err:
        raise ConfigError(f"backend={backend} is not installed ({err}); {INSTALL[backend]}") from err


def first_problem(*checks: tuple[bool, str]) -> str | None:
    """The message of the first failed ``(ok, message)`` check, or None."""
    return next((message for ok, message in checks if not ok), None)


# --- shared helpers -----------------------------------------------------------------------------------------


def ta_seed() -> int:
    """A seed for a library that reseeds torch's global RNG (torchattacks' APGD and Square): drawn from that
    RNG, so a seeded run stays reproducible."""
    return int(torch.randint(2**31, ()))


class MarginLoss(nn.modules.loss._Loss):
    """The binary margin z_wrong - z_true for ART, which hands a custom loss one-hot labels: sum(z * (1 - 2 y))
    weights the true logit -1 and the other +1, with no third logit. Honours ART's ``reduction`` switch."""

    def forward(self, logits: torch.Tensor, onehot: torch.Tensor) -> torch.Tensor:
        per_sample = (logits * (1 - 2 * onehot.to(logits.dtype))).sum(1)
        reduce = {"mean": torch.mean, "sum": torch.sum}.get(self.reduction, lambda t: t)
        return reduce(per_sample)


def art_classifier(model: nn.Module, x: torch.Tensor, loss: Loss = Loss.CE) -> Any:
    """ART's PyTorchClassifier around a parameter-frozen copy of the model (ART's ``loss.backward()`` would
    otherwise write weight gradients), on x's device, two logits, inputs clipped to [0, 1]."""
    from art.estimators.classification import PyTorchClassifier

    net = copy.deepcopy(model).requires_grad_(False)
    losses = {Loss.CE: nn.CrossEntropyLoss, Loss.MARGIN: MarginLoss}
    # ART places the model on torch's current CUDA device: make that x's
    with torch.cuda.device(x.device) if x.is_cuda else contextlib.nullcontext():
        return PyTorchClassifier(
            model=net,
            loss=losses[Loss(loss)](),
            input_shape=tuple(x.shape[1:]),
            nb_classes=2,
            clip_values=(0.0, 1.0),
            device_type="gpu" if x.is_cuda else "cpu",
        )


@contextlib.contextmanager
def numpy_seeded_from_torch() -> Iterator[None]:
    """ART draws its random starts from numpy's global RNG: seed it from torch's (reproducible under our seed)
    and restore its state afterwards."""
    state = np.random.get_state()
    np.random.seed(int(torch.randint(2**31, ())))
    try:
        yield
    finally:
        np.random.set_state(state)


def art_generate(art_attack: Any, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Run an ART attack on the whole batch (numpy on the CPU); the caller moves the result to x's device."""
    with numpy_seeded_from_torch():
        return torch.from_numpy(art_attack.generate(x.detach().cpu().numpy(), y=y.cpu().numpy()))


ART_NORM = {Norm.LINF: np.inf, Norm.L2: 2}
TA_NORM = {Norm.LINF: "Linf", Norm.L2: "L2"}
