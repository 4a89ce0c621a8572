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

This module holds the translators of PGD, FGSM, APGD and C&W (keyed by the classes' dotted names, so that
the attack modules, which import this one, are not imported here); other attacks register theirs next to
their own code. The helpers ``art_classifier``, ``art_generate`` and ``ta_seed`` are for them too.
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

from attacks.base import Loss, Norm
from benchmark.errors import ConfigError


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


_TRANSLATORS: dict[tuple[str, Backend], Translation] = {}


def _key(attack_cls: type | str) -> str:
    """A class's dotted name (``attacks.pgd.PGD``): translators can be registered before the class exists."""
    return attack_cls if isinstance(attack_cls, str) else f"{attack_cls.__module__}.{attack_cls.__qualname__}"


def translator(
    attack_cls: type | str, backend: Backend, supports: Supports | None = None
) -> Callable[[Translator], Translator]:
    """Register ``f(attack, model, x, y) -> x_adv`` as ``attack_cls``'s implementation in ``backend``;
    ``attack_cls`` is the class or its dotted name. ``supports`` vets an attack's settings at construction."""

    def add(f: Translator) -> Translator:
        _TRANSLATORS[(_key(attack_cls), Backend(backend))] = Translation(f, supports or (lambda attack: None))
        return f

    return add


def backends_of(attack_cls: type) -> list[str]:
    return [Backend.OURS.value] + [b.value for (key, b) in _TRANSLATORS if key == _key(attack_cls)]


def check_backend(attack: Any) -> None:
    """Called from an attack's ``__post_init__``: the backend must be known, have a translator, and be able to
    express the attack's settings."""
    backend = getattr(attack, "backend", Backend.OURS)
    if backend not in {b.value for b in Backend}:
        raise ValueError(f"backend={backend!r} is not one of {', '.join(b.value for b in Backend)}")
    if Backend(backend) is Backend.OURS:
        return
    found = _TRANSLATORS.get((_key(type(attack)), Backend(backend)))
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
        return _TRANSLATORS[(_key(type(attack)), backend)].run(attack, model, x, y).to(x.device, x.dtype)
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


# --- PGD (attacks/pgd.py) -----------------------------------------------------------------------------------


def pgd_checks(attack: Any, lib: str) -> list[tuple[bool, str]]:
    return [
        (
            not attack.early_stop,
            f"early_stop=true: {lib} steps every sample every time (set early_stop=false)",
        )
    ]


def ta_pgd_supports(attack: Any) -> str | None:
    return first_problem(
        (
            Loss(attack.loss) is Loss.CE,
            f"loss={attack.loss!r}: torchattacks' PGD maximises cross-entropy only",
        ),
        (attack.restarts == 1, f"restarts={attack.restarts}: torchattacks' PGD has no restarts"),
        *pgd_checks(attack, "torchattacks' PGD"),
    )


@translator("attacks.pgd.PGD", Backend.TORCHATTACKS, supports=ta_pgd_supports)
def torchattacks_pgd(attack: Any, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """torchattacks.PGD (L-inf) or PGDL2 (its division guard set to ours, 1e-12)."""
    import torchattacks

    common = {
        "eps": attack.eps,
        "alpha": attack.step,
        "steps": attack.steps,
        "random_start": attack.random_start,
    }
    if Norm(attack.norm) is Norm.LINF:
        return torchattacks.PGD(model, **common)(x, y)
    return torchattacks.PGDL2(model, eps_for_division=1e-12, **common)(x, y)


def art_pgd_supports(attack: Any) -> str | None:
    return first_problem(
        (
            attack.random_start or attack.restarts == 1,
            f"restarts={attack.restarts} with random_start=false: ART's restarts are random starts",
        ),
        *pgd_checks(attack, "ART's ProjectedGradientDescent"),
    )


@translator("attacks.pgd.PGD", Backend.ART, supports=art_pgd_supports)
def art_pgd(attack: Any, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """ART's ProjectedGradientDescentPyTorch; restarts are its ``num_random_init`` (it keeps a later
    restart's point where that one fools the model, we keep the first: the same samples are broken)."""
    from art.attacks.evasion import ProjectedGradientDescentPyTorch

    art = ProjectedGradientDescentPyTorch(
        art_classifier(model, x, attack.loss),
        norm=ART_NORM[Norm(attack.norm)],
        eps=attack.eps,
        eps_step=attack.step,
        max_iter=attack.steps,
        num_random_init=attack.restarts if attack.random_start else 0,
        batch_size=len(x),
        verbose=False,
    )
    return art_generate(art, x, y)


# --- FGSM (attacks/fgsm.py) ---------------------------------------------------------------------------------


def ta_fgsm_supports(attack: Any) -> str | None:
    return first_problem(
        (Norm(attack.norm) is Norm.LINF, f"norm={attack.norm!r}: torchattacks' FGSM is L-inf only"),
        (
            Loss(attack.loss) is Loss.CE,
            f"loss={attack.loss!r}: torchattacks' FGSM maximises cross-entropy only",
        ),
        (
            attack.random_start or attack.step == attack.eps,
            f"step_size={attack.step_size}: torchattacks' FGSM steps by eps (FFGSM, with random_start, takes any)",
        ),
    )


@translator("attacks.fgsm.FGSM", Backend.TORCHATTACKS, supports=ta_fgsm_supports)
def torchattacks_fgsm(attack: Any, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """torchattacks.FGSM; with a random start its FFGSM (Wong et al. 2020), the same algorithm as ours."""
    import torchattacks

    if attack.random_start:
        return torchattacks.FFGSM(model, eps=attack.eps, alpha=attack.step)(x, y)
    return torchattacks.FGSM(model, eps=attack.eps)(x, y)


def art_fgsm_supports(attack: Any) -> str | None:
    return first_problem(
        (
            attack.step == attack.eps,
            f"step_size={attack.step:.4g}: ART's FastGradientMethod steps by eps (set step_size=eps)",
        )
    )


@translator("attacks.fgsm.FGSM", Backend.ART, supports=art_fgsm_supports)
def art_fgsm(attack: Any, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """ART's FastGradientMethod (one random start with ``random_start``, its own draw in the ball)."""
    from art.attacks.evasion import FastGradientMethod

    art = FastGradientMethod(
        art_classifier(model, x, attack.loss),
        norm=ART_NORM[Norm(attack.norm)],
        eps=attack.eps,
        eps_step=attack.eps,
        num_random_init=int(attack.random_start),
        batch_size=len(x),
    )
    return art_generate(art, x, y)


# --- APGD (attacks/apgd.py) ---------------------------------------------------------------------------------


def apgd_checks(attack: Any, lib: str) -> list[tuple[bool, str]]:
    """What both libraries hard-code: a random start, rho = momentum = 0.75 (our early_stop returns the same
    points either way, so it needs no check)."""
    return [
        (attack.random_start, f"random_start=false: {lib} always starts at a random point of the ball"),
        (attack.rho == 0.75, f"rho={attack.rho}: {lib} fixes rho at 0.75"),
        (attack.momentum == 0.75, f"momentum={attack.momentum}: {lib} fixes the momentum at 0.75"),
    ]


def ta_apgd_supports(attack: Any) -> str | None:
    return first_problem(
        (
            Loss(attack.loss) is Loss.CE,
            f"loss={attack.loss!r}: torchattacks' APGD has ce and dlr (which needs three logits) only",
        ),
        *apgd_checks(attack, "torchattacks' APGD"),
    )


@translator("attacks.apgd.APGD", Backend.TORCHATTACKS, supports=ta_apgd_supports)
def torchattacks_apgd(attack: Any, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """torchattacks.APGD with cross-entropy (the reference code's checkpoints and step rules)."""
    import torchattacks

    ta = torchattacks.APGD(
        model,
        norm=TA_NORM[Norm(attack.norm)],
        eps=attack.eps,
        steps=attack.steps,
        n_restarts=attack.restarts,
        loss="ce",
        rho=attack.rho,
        seed=ta_seed(),
    )
    # it reseeds torch's global RNG: fork it so that ours goes on where the seed draw left it
    with torch.random.fork_rng(devices=[x.device] if x.is_cuda else []):
        return ta(x, y)


@translator("attacks.apgd.APGD", Backend.ART, supports=lambda a: first_problem(*apgd_checks(a, "ART's APGD")))
def art_apgd(attack: Any, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """ART's AutoProjectedGradientDescent: ``cross_entropy``, or the margin as the classifier's loss; the
    first step is 2 * eps as in the paper and ours."""
    from art.attacks.evasion import AutoProjectedGradientDescent

    ce = Loss(attack.loss) is Loss.CE
    art = AutoProjectedGradientDescent(
        art_classifier(model, x, attack.loss),
        norm=ART_NORM[Norm(attack.norm)],
        eps=attack.eps,
        eps_step=2 * attack.eps,
        max_iter=attack.steps,
        nb_random_init=attack.restarts,
        batch_size=len(x),
        loss_type="cross_entropy" if ce else None,
        verbose=False,
    )
    return art_generate(art, x, y)


# --- C&W (attacks/cw.py); its eps filter and success check are applied by CW itself -------------------------


def ta_cw_supports(attack: Any) -> str | None:
    return first_problem(
        (
            attack.search_steps == 1,
            f"search_steps={attack.search_steps}: torchattacks' CW has no binary search (set search_steps=1)",
        ),
        (attack.abort_early, "abort_early=false: torchattacks' CW always aborts when its loss stops falling"),
    )


@translator("attacks.cw.CW", Backend.TORCHATTACKS, supports=ta_cw_supports)
def torchattacks_cw(attack: Any, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """torchattacks.CW: one constant c = initial_const, Adam. Caveat: its f takes max((1 - onehot) * z) as
    the other class's logit, so with two logits that are both negative f is 0 and the attack has no
    classification gradient (it is not binary-safe, though it does not crash)."""
    import torchattacks

    return torchattacks.CW(
        model, c=attack.initial_const, kappa=attack.confidence, steps=attack.steps, lr=attack.lr
    )(x, y)


def art_cw_supports(attack: Any) -> str | None:
    return first_problem(
        (
            not attack.abort_early,
            "abort_early=true: ART's CarliniL2Method runs every iteration (set abort_early=false)",
        )
    )


@translator("attacks.cw.CW", Backend.ART, supports=art_cw_supports)
def art_cw(attack: Any, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """ART's CarliniL2Method: the same binary search; gradient descent with a line search instead of Adam
    (``lr`` is its initial learning rate)."""
    from art.attacks.evasion import CarliniL2Method

    art = CarliniL2Method(
        art_classifier(model, x),
        confidence=attack.confidence,
        learning_rate=attack.lr,
        binary_search_steps=attack.search_steps,
        max_iter=attack.steps,
        initial_const=attack.initial_const,
        batch_size=len(x),
        verbose=False,
    )
    return art_generate(art, x, y)
