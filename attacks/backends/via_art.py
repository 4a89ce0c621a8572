"""ART's implementations of our attacks (Nicolae et al., Adversarial Robustness Toolbox,
https://arxiv.org/abs/1807.01069), with the same settings translated into its arguments; ``supports`` names
what it cannot express. ART works on numpy arrays of the whole batch on the CPU."""

from __future__ import annotations

import contextlib
import copy
import random
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from afsl_bench.attacks.backends import Backend, apgd_checks, first_problem, pgd_checks, translator
from afsl_bench.attacks.ops import attack_loss
from afsl_bench.attacks.vocabulary import Loss, Norm

if TYPE_CHECKING:
    from afsl_bench.attacks.apgd import APGD
    from afsl_bench.attacks.cw import CW
    from afsl_bench.attacks.fgsm import FGSM
    from afsl_bench.attacks.pgd import PGD
    from afsl_bench.attacks.square import Square


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


def art_apgd_supports(attack: APGD) -> str | None:
    return first_problem(*apgd_checks(attack, "ART's APGD"))


@translator("apgd", Backend.ART, supports=art_apgd_supports)
def art_apgd(attack: APGD, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
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


def art_cw_supports(attack: CW) -> str | None:
    return first_problem(
        (
            not attack.abort_early,
            "abort_early=true: ART's CarliniL2Method runs every iteration (set abort_early=false)",
        )
    )


@translator("cw", Backend.ART, supports=art_cw_supports)
def art_cw(attack: CW, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
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


def art_fgsm_supports(attack: FGSM) -> str | None:
    return first_problem(
        (
            attack.step == attack.eps,
            f"step_size={attack.step:.4g}: ART's FastGradientMethod steps by eps (set step_size=eps)",
        )
    )


@translator("fgsm", Backend.ART, supports=art_fgsm_supports)
def art_fgsm(attack: FGSM, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
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


def art_pgd_supports(attack: PGD) -> str | None:
    return first_problem(
        (
            attack.random_start or attack.restarts == 1,
            f"restarts={attack.restarts} with random_start=false: ART's restarts are random starts",
        ),
        *pgd_checks(attack, "ART's ProjectedGradientDescent"),
    )


@translator("pgd", Backend.ART, supports=art_pgd_supports)
def art_pgd(attack: PGD, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
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


def art_square_supports(attack: Square) -> str | None:
    return first_problem(
        (
            attack.queries >= 3 * attack.restarts,
            f"queries={attack.queries}: ART's SquareAttack spends at least 3 forwards per sample and restart",
        )
    )


@translator("square", Backend.ART, supports=art_square_supports)
def art_square(attack: Square, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """ART's SquareAttack (numpy). Per restart it spends 3 forwards per sample to start and 3 per iteration
    (a decision, the current loss and the proposal's loss): ``max_iter = (queries // restarts - 3) // 3``.
    Its loss is minimised: its default is the logit margin z_true - z_other, ``ce`` passes -cross-entropy.
    Its python ``random`` draws (the L2 bump's transposes) are seeded from torch's RNG too."""
    from art.attacks.evasion import SquareAttack

    clf = art_classifier(model, x)
    neg_ce = None
    if Loss(attack.loss) is Loss.CE:

        def neg_ce(x_np: np.ndarray, onehot: np.ndarray) -> np.ndarray:
            logits = torch.from_numpy(clf.predict(x_np, batch_size=len(x_np)))
            return -attack_loss(logits, torch.from_numpy(onehot.argmax(1)), Loss.CE).numpy()

    art = SquareAttack(
        clf,
        norm=ART_NORM[Norm(attack.norm)],
        loss=neg_ce,
        eps=attack.eps,
        max_iter=(attack.queries // attack.restarts - 3) // 3,
        p_init=attack.p_init,
        nb_restarts=attack.restarts,
        batch_size=len(x),
        verbose=False,
    )
    state = random.getstate()
    random.seed(int(torch.randint(2**31, ())))
    try:
        return art_generate(art, x, y)
    finally:
        random.setstate(state)
