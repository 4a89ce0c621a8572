"""Sanity checks on a robustness evaluation: the flags recorded in every record (explained in docs/checks.md).

After auto-attack's ``checks.py`` (Croce & Hein, https://github.com/fra31/auto-attack) and the signs of
gradient masking listed by Athalye et al., ICML 2018 (https://arxiv.org/abs/1802.00420) and Carlini et al.
2019, "On evaluating adversarial robustness" (https://arxiv.org/abs/1902.06705). A raised flag does not
change a number; it says the number may overstate robustness and why.

Per cell, on a probe of ``ProbeSettings.samples`` attacked test samples (a seeded choice):

- ``zero_gradients``: the input gradient of the logit margin is exactly zero (or absent) at some clean
  point: a non-differentiable front end (quantisation, JPEG) or a saturated model; gradient attacks are blind.
- ``ce_saturated``: cross-entropy's gradient vanishes where the margin's does not: use ``loss=margin``.
- ``randomised_forward``: two forward passes of the same input differ: use EOT (``eot-pgd``).
- ``black_box_stronger``: at the same budget a score-based attack (Square) breaks probe samples the cell's
  white-box attack left robust, or a white-box APGD breaks fewer than the cell's black-box / transfer attack.
- ``not_monotone_in_eps``: PGD's robust accuracy rises as eps grows (it can only fall for a sound attack).
- ``large_eps_robust``: PGD at a huge budget (L-inf 0.5) leaves probe samples robust; any honest detector
  is broken there.

Across cells (``store_flags``): the same comparisons between records of one trained model and evaluation
set: a black-box record below the best white-box record at the same budget, and robust accuracy that rises
with eps for one attack.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Iterable, MutableMapping
from dataclasses import dataclass
from typing import Any

import pandas as pd
import torch
from torch import nn

from afsl_bench.attacks import ATTACKS, Attack
from afsl_bench.attacks.ops import attack_loss, attacked_mask, exact, frozen
from afsl_bench.attacks.vocabulary import Loss, Norm
from afsl_bench.store.record import Record

#: logits of two passes over the same input closer than this are "the same" (GPU kernels are not bitwise
#: deterministic; a randomised front end moves logits by far more)
SAME_LOGITS = 1e-3
#: huge budgets no honest detector survives: L-inf 0.5 lets every pixel reach mid-grey
LARGE_EPS = {Norm.LINF: 0.5, Norm.L2: 0.5}  # L2: per pixel value, scaled by sqrt(dims) below


@dataclass(frozen=True)
class ProbeSettings:
    """How much work the per-cell checks do (not part of the cell id; recorded with the flags)."""

    samples: int = 64
    #: Square's query budget for the black-box comparison
    queries: int = 300
    #: steps of the white-box APGD / PGD probes
    steps: int = 10
    #: eps multipliers of the monotonicity probe
    eps_factors: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0)
    #: PGD steps at the huge budget: with 10 steps of 2.5 * 0.5 / 10 each, PGD overshoots and left 23 % of a
    #: meso4 + AT probe robust at L-inf 0.5, where 50 steps break every sample (a probe artefact, not masking)
    large_eps_steps: int = 50
    #: robust-accuracy tolerance of the comparisons, in samples
    tolerance_samples: int = 2


def flag(raised: bool, value: Any, detail: str) -> dict[str, Any]:
    return {"raised": bool(raised), "value": value, "detail": detail}


def skipped(why: str) -> dict[str, Any]:
    return {"raised": False, "value": None, "detail": f"skipped: {why}"}


def run_checks(
    model: nn.Module,
    attack: Attack,
    x: torch.Tensor,
    y: torch.Tensor,
    adv_correct: torch.Tensor,
    settings: ProbeSettings = ProbeSettings(),
    *,
    seed: int = 0,
    memo: MutableMapping[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """All per-cell flags. ``x, y`` are the probe samples (on the model's device) and ``adv_correct`` whether
    the cell's attack left each of them correctly classified (from the per-sample table).

    The checks of the model alone (gradients, randomness, PGD across budgets) do not depend on the cell's
    attack beyond its budget and direction: they are seeded on their own and, given a ``memo`` (the runner
    passes one per trained model and evaluation set), computed once and reused by the model's other cells.
    Only ``black_box_stronger`` compares with the cell's attack."""
    mask = attacked_mask(y, getattr(attack, "direction", "both"))
    x, y, adv_correct = x[mask], y[mask], adv_correct[mask]
    if len(x) == 0:
        return {"samples": 0, "raised": [], "checks": {}}
    tol = settings.tolerance_samples / len(x)
    eps, norm = budget_of(attack)
    with frozen(model):
        rows = mask.nonzero().flatten().tolist()
        key = _key({"eps": eps, "norm": norm, "rows": rows, "seed": seed, "probe": vars(settings)})
        if memo is None or key not in memo:
            torch.manual_seed(seed)
            found = model_checks(model, x, y, eps, norm, settings, tol)
            if memo is not None:
                memo[key] = found
        checks = dict(memo[key] if memo is not None else found)
        if checks["zero_gradients"]["value"] is None:
            checks["black_box_stronger"] = skipped("the detector has no input gradient")
        elif eps is None:
            checks["black_box_stronger"] = skipped("the attack has no eps budget")
        else:
            torch.manual_seed(seed)
            checks["black_box_stronger"] = black_box_check(model, attack, x, y, adv_correct, eps, norm, settings, tol)
    return {
        "samples": len(x),
        "settings": {k: list(v) if isinstance(v, tuple) else v for k, v in vars(settings).items()},
        "raised": sorted(name for name, c in checks.items() if c["raised"]),
        "checks": checks,
    }


def model_checks(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float | None,
    norm: Norm,
    settings: ProbeSettings,
    tol: float,
) -> dict[str, Any]:
    """The checks of the model alone at a budget: gradients, randomness, PGD across budgets."""
    checks = gradient_checks(model, x, y)
    checks["randomised_forward"] = randomness_check(model, x)
    if checks["zero_gradients"]["value"] is None:
        reason = "the detector has no input gradient"
        return checks | {"not_monotone_in_eps": skipped(reason), "large_eps_robust": skipped(reason)}
    probe_eps, probe_norm = (eps, norm) if eps is not None else (8 / 255, Norm.LINF)
    return checks | eps_checks(model, x, y, probe_eps, probe_norm, settings, tol)


def budget_of(attack: Attack) -> tuple[float | None, Norm]:
    """The attack's (eps, norm), or (None, norm) when it has no budget (distortions, unbounded C&W)."""
    eps = getattr(attack, "eps", None)
    norm = Norm(getattr(attack, "norm", Norm.LINF))
    inner = getattr(attack, "inner", None)  # a bound transfer attack carries its budget in the inner attack
    if eps is None and isinstance(inner, Attack):
        return budget_of(inner)
    return eps, norm


def input_gradient(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss: Loss) -> torch.Tensor | None:
    """The loss's input gradient in float32 (``exact``: a flag must not depend on ``--precision``)."""
    with torch.enable_grad():
        x = x.detach().clone().requires_grad_(True)
        logits = exact(model)(x)
        if getattr(model, "differentiable", True) is False or not logits.requires_grad:
            return None
        (grad,) = torch.autograd.grad(attack_loss(logits, y, loss).sum(), x, allow_unused=True)
    return torch.zeros_like(x) if grad is None else grad


def gradient_checks(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, Any]:
    margin = input_gradient(model, x, y, Loss.MARGIN)
    if margin is None:
        detail = "the detector's output has no gradient w.r.t. its input"
        return {"zero_gradients": flag(True, None, detail), "ce_saturated": skipped(detail)}
    zero_margin = margin.flatten(1).abs().amax(1) == 0
    ce = input_gradient(model, x, y, Loss.CE)
    zero_ce = (ce.flatten(1).abs().amax(1) == 0) & ~zero_margin
    return {
        "zero_gradients": flag(
            zero_margin.any(),
            float(zero_margin.float().mean()),
            "fraction of probe samples whose margin-loss input gradient is exactly zero",
        ),
        "ce_saturated": flag(
            zero_ce.any(),
            float(zero_ce.float().mean()),
            "fraction whose cross-entropy gradient underflows to zero while the margin's does not",
        ),
    }


def randomness_check(model: nn.Module, x: torch.Tensor) -> dict[str, Any]:
    with torch.no_grad():
        gap = float((exact(model)(x) - exact(model)(x)).abs().max())
    return flag(gap > SAME_LOGITS, gap, "largest logit difference between two passes over the same input")


def robust_accuracy(model: nn.Module, attack: Attack, x: torch.Tensor, y: torch.Tensor) -> float:
    x_adv = attack(model, x, y)
    with torch.no_grad():
        return float((exact(model)(x_adv).argmax(1) == y).float().mean())


def black_box_check(
    model: nn.Module,
    attack: Attack,
    x: torch.Tensor,
    y: torch.Tensor,
    adv_correct: torch.Tensor,
    eps: float,
    norm: Norm,
    settings: ProbeSettings,
    tol: float,
) -> dict[str, Any]:
    """A white-box cell: Square runs on the probe samples the cell's attack left robust (as AutoAttack's
    later members do) and the flag is raised when it breaks more than the tolerance of them. A black-box or
    transfer cell: APGD-margin runs on the whole probe and the flag is raised when the cell's attack left
    fewer samples robust than APGD did."""
    ours = float(adv_correct.float().mean())
    if attack.requires_grad:
        robust = adv_correct.nonzero().squeeze(1)
        square = ATTACKS.build("square", eps=eps, norm=norm, queries=settings.queries)
        extra = 0.0
        if len(robust):
            extra = (1 - robust_accuracy(model, square, x[robust], y[robust])) * len(robust) / len(x)
        return flag(
            extra > tol,
            {
                "white_box_robust_acc": ours,
                "black_box_extra_breaks": extra,
                "combined_robust_acc": ours - extra,
            },
            f"fraction of the probe Square ({settings.queries} queries) breaks among the samples the cell's "
            "attack left robust, at the same budget",
        )
    apgd = ATTACKS.build("apgd", eps=eps, norm=norm, steps=settings.steps, loss=Loss.MARGIN)
    white = robust_accuracy(model, apgd, x, y)
    return flag(
        ours < white - tol,
        {"black_box_robust_acc": ours, "white_box_robust_acc": white},
        f"robust accuracy on the probe: the cell's attack vs APGD-margin ({settings.steps} steps)",
    )


def eps_checks(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    norm: Norm,
    settings: ProbeSettings,
    tol: float,
) -> dict[str, Any]:
    """PGD-margin at growing budgets: robust accuracy must not rise, and must reach ~0 at a huge budget."""
    budgets = [eps * f for f in settings.eps_factors]
    large = LARGE_EPS[norm] * (math.sqrt(x[0].numel()) if norm is Norm.L2 else 1.0)
    budgets = [b for b in budgets if b < large] + [large]
    steps = [settings.steps] * (len(budgets) - 1) + [settings.large_eps_steps]
    accs = [
        robust_accuracy(model, ATTACKS.build("pgd", eps=b, norm=norm, steps=n, loss=Loss.MARGIN), x, y)
        for b, n in zip(budgets, steps, strict=True)
    ]
    curve = {f"{b:.6g}": a for b, a in zip(budgets, accs, strict=True)}
    rises = any(later > earlier + tol for earlier, later in itertools.pairwise(accs))
    return {
        "not_monotone_in_eps": flag(
            rises, curve,
            f"PGD-{settings.steps} (margin) robust accuracy per eps; PGD-{settings.large_eps_steps} at the last",
        ),
        "large_eps_robust": flag(
            accs[-1] > tol, accs[-1], f"PGD-{settings.large_eps_steps} robust accuracy at eps={large:.4g} ({norm})"
        ),
    }


def probe_indices(n: int, samples: int, seed: int) -> torch.Tensor:
    """A seeded choice of probe rows of the evaluation split."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randperm(n, generator=gen)[: min(samples, n)].sort().values


# --- across records -----------------------------------------------------------------------------------------


def store_flags(records: Iterable[Record], tolerance: float = 0.01) -> list[dict[str, Any]]:
    """Flags between records of the same trained model and evaluation set: a black-box or transfer attack
    below the best white-box one at the same (eps, norm, direction), and robust accuracy rising with eps for
    one attack with otherwise equal parameters."""
    rows = []
    for r in records:
        params = r.spec["attack"]["params"]
        if params.get("eps") is None:
            continue
        rows.append(
            {
                "cell_id": r.cell_id,
                "group": (r.train_id, _key(r.spec["eval_data"])),
                "attack": r.attack_name,
                "others": _key({k: v for k, v in params.items() if k != "eps"}),
                "eps": float(params["eps"]),
                "norm": params.get("norm", "linf"),
                "direction": params.get("direction", "both"),
                "white_box": ATTACKS.get(r.attack_name).requires_grad if r.attack_name in ATTACKS else True,
                "robust_acc": r.metric("robust_acc"),
            }
        )
    if not rows:
        return []
    table = pd.DataFrame(rows)
    found = []
    for _, same in table.groupby(["group", "eps", "norm", "direction"]):
        white, black = same[same["white_box"]], same[~same["white_box"]]
        if len(white) and len(black) and black["robust_acc"].min() < white["robust_acc"].min() - tolerance:
            worst = black.loc[black["robust_acc"].idxmin()]
            found.append(
                {
                    "flag": "black_box_stronger",
                    "cells": [worst["cell_id"], *white["cell_id"]],
                    "detail": f"{worst['attack']} {worst['robust_acc']:.3f} < best white-box "
                    f"{white['robust_acc'].min():.3f} at eps {worst['eps']:.4g} ({worst['norm']})",
                }
            )
    for _, same in table.groupby(["group", "attack", "others"]):
        curve = same.sort_values("eps")
        accs = curve["robust_acc"].to_numpy()
        if (accs[1:] > accs[:-1] + tolerance).any():
            found.append(
                {
                    "flag": "not_monotone_in_eps",
                    "cells": list(curve["cell_id"]),
                    "detail": f"{curve['attack'].iloc[0]}: robust accuracy by eps "
                    + ", ".join(f"{e:.4g}: {a:.3f}" for e, a in zip(curve["eps"], accs, strict=True)),
                }
            )
    return found


def _key(value: Any) -> str:
    return json.dumps(value, sort_keys=True)
