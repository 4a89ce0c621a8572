"""torchattacks' implementations of our attacks (Kim, torchattacks, https://arxiv.org/abs/2010.01950), with
the same settings translated into its arguments; ``supports`` names what it cannot express."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from afsl_bench.attacks.backends import Backend, apgd_checks, first_problem, pgd_checks, translator
from afsl_bench.attacks.vocabulary import Loss, Norm

if TYPE_CHECKING:
    from afsl_bench.attacks.apgd import APGD
    from afsl_bench.attacks.cw import CW
    from afsl_bench.attacks.fab import FAB
    from afsl_bench.attacks.fgsm import FGSM
    from afsl_bench.attacks.pgd import PGD
    from afsl_bench.attacks.square import Square


def ta_seed() -> int:
    """A seed for a library that reseeds torch's global RNG (torchattacks' APGD and Square): drawn from that
    RNG, so a seeded run stays reproducible."""
    return int(torch.randint(2**31, ()))


TA_NORM = {Norm.LINF: "Linf", Norm.L2: "L2"}


def ta_apgd_supports(attack: APGD) -> str | None:
    return first_problem(
        (
            Loss(attack.loss) is Loss.CE,
            f"loss={attack.loss!r}: torchattacks' APGD has ce and dlr (which needs three logits) only",
        ),
        *apgd_checks(attack, "torchattacks' APGD"),
    )


@translator("apgd", Backend.TORCHATTACKS, supports=ta_apgd_supports)
def torchattacks_apgd(attack: APGD, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
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


def ta_cw_supports(attack: CW) -> str | None:
    return first_problem(
        (
            attack.search_steps == 1,
            f"search_steps={attack.search_steps}: torchattacks' CW has no binary search (set search_steps=1)",
        ),
        (attack.abort_early, "abort_early=false: torchattacks' CW always aborts when its loss stops falling"),
    )


@translator("cw", Backend.TORCHATTACKS, supports=ta_cw_supports)
def torchattacks_cw(attack: CW, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """torchattacks.CW: one constant c = initial_const, Adam. Caveat: its f takes max((1 - onehot) * z) as
    the other class's logit, so with two logits that are both negative f is 0 and the attack has no
    classification gradient (it is not binary-safe, though it does not crash)."""
    import torchattacks

    return torchattacks.CW(
        model, c=attack.initial_const, kappa=attack.confidence, steps=attack.steps, lr=attack.lr
    )(x, y)


@translator("fab", Backend.TORCHATTACKS)
def torchattacks_fab(attack: FAB, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """torchattacks.FAB, untargeted, with two classes."""
    import torchattacks

    ta = torchattacks.FAB(
        model,
        norm=TA_NORM[Norm(attack.norm)],
        eps=attack.eps,
        steps=attack.steps,
        n_restarts=attack.restarts,
        alpha_max=attack.alpha_max,
        eta=attack.eta,
        beta=attack.beta,
        seed=ta_seed(),
        multi_targeted=False,
        n_classes=2,
    )
    with torch.random.fork_rng(devices=[x.device] if x.is_cuda else []):
        return ta(x, y)


def ta_fgsm_supports(attack: FGSM) -> str | None:
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


@translator("fgsm", Backend.TORCHATTACKS, supports=ta_fgsm_supports)
def torchattacks_fgsm(attack: FGSM, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """torchattacks.FGSM; with a random start its FFGSM (Wong et al. 2020), the same algorithm as ours."""
    import torchattacks

    if attack.random_start:
        return torchattacks.FFGSM(model, eps=attack.eps, alpha=attack.step)(x, y)
    return torchattacks.FGSM(model, eps=attack.eps)(x, y)


def ta_pgd_supports(attack: PGD) -> str | None:
    return first_problem(
        (
            Loss(attack.loss) is Loss.CE,
            f"loss={attack.loss!r}: torchattacks' PGD maximises cross-entropy only",
        ),
        (attack.restarts == 1, f"restarts={attack.restarts}: torchattacks' PGD has no restarts"),
        *pgd_checks(attack, "torchattacks' PGD"),
    )


@translator("pgd", Backend.TORCHATTACKS, supports=ta_pgd_supports)
def torchattacks_pgd(attack: PGD, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
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


def ta_square_supports(attack: Square) -> str | None:
    return first_problem(
        (
            attack.queries >= 1 + 2 * attack.restarts,
            (
                f"queries={attack.queries}: torchattacks' Square spends at least 1 + 2 * restarts forwards per "
                "sample (a clean check, then a start and a final check per restart)"
            ),
        )
    )


@translator("square", Backend.TORCHATTACKS, supports=ta_square_supports)
def torchattacks_square(attack: Square, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """torchattacks.Square spends, per sample, 1 clean forward and per restart its start, ``n_queries``
    iterations and a final check: ``n_queries = (queries - 1) // restarts - 2`` keeps it within budget. It
    draws one window and one sign per batch (ours: per sample), the same law per sample."""
    import torchattacks

    ta = torchattacks.Square(
        model,
        norm=TA_NORM[Norm(attack.norm)],
        eps=attack.eps,
        n_queries=(attack.queries - 1) // attack.restarts - 2,
        n_restarts=attack.restarts,
        p_init=attack.p_init,
        loss=Loss(attack.loss).value,
        seed=ta_seed(),
    )
    ta.set_device(x.device)
    # it reseeds torch's global RNG: fork it so that ours goes on where the seed draw left it; no_grad because
    # its clean check runs outside it
    with torch.random.fork_rng(devices=[x.device] if x.is_cuda else []), torch.no_grad():
        return ta(x, y)
