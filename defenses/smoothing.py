"""Randomized smoothing (Cohen, Rosenfeld & Kolter, "Certified Adversarial Robustness via Randomized
Smoothing", ICML 2019): a certificate, not an attack's estimate.

The smoothed classifier is g(x) = argmax_c P(f(x + e) = c), e ~ N(0, sigma^2 I), with f the detector's own
decision (fake when its margin is above the threshold folded into it, ``core.decision``). If the top class
has probability at least p_A > 1/2, g's decision is the same for every perturbation of L2 norm below
sigma * Phi^-1(p_A) (their Theorem 1, two classes). ``certify`` is the paper's CERTIFY: n0 noisy copies
choose the class, n more estimate p_A, and the one-sided Clopper-Pearson lower bound at level 1 - alpha
replaces p_A; below 1/2 the smoothed classifier abstains. With probability at least 1 - alpha a returned
radius is certified.

Training for it (``smoothing``, the paper's Gaussian data augmentation): cross-entropy on x + e, sigma in
the pixel space [0, 1] of every input here (Cohen et al.'s 0.25 and 0.5 on CIFAR-10's [0, 1] images). The
noisy inputs are not clipped, as in the paper: g is defined with unclipped noise, and so is its certificate.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import beta, norm
from torch import nn

from afsl_bench.core.decision import says_fake
from afsl_bench.core.types import Batch
from afsl_bench.defenses.base import DEFENSES, Defense, TrainContext
from afsl_bench.detectors.base import Detector

#: what ``certify`` returns for a sample the smoothed classifier abstains on
ABSTAIN = -1


@DEFENSES.register("smoothing")
@dataclass(frozen=True)
class GaussianSmoothing(Defense):
    """Gaussian data augmentation (Cohen et al. 2019): cross-entropy on x + N(0, sigma^2 I), the base
    classifier of a smoothed detector certified with ``certify`` at the same sigma."""

    sigma: float = 0.25

    def __post_init__(self) -> None:
        if not self.sigma > 0:
            raise ValueError(
                f"sigma must be > 0 (the noise's standard deviation on [0, 1] pixels), got {self.sigma}"
            )

    def loss(self, model: Detector, batch: Batch, ctx: TrainContext) -> tuple[torch.Tensor, dict[str, float]]:
        noisy = batch.x + self.sigma * torch.randn_like(batch.x)
        loss = F.cross_entropy(model(noisy), batch.y)
        return loss, {"ce_noisy": loss.item()}


def noisy_votes(model: nn.Module, x: torch.Tensor, sigma: float, n: int, batch_size: int) -> torch.Tensor:
    """[N, 2] counts of the base decision ("real", "fake") over ``n`` Gaussian copies of each image,
    ``batch_size`` copies per forward pass through the frozen model."""
    votes = torch.zeros(len(x), 2, dtype=torch.long)
    with torch.inference_mode():
        for i, image in enumerate(x):
            for start in range(0, n, batch_size):
                copies = image.expand(min(batch_size, n - start), *image.shape)
                logits = model(copies + sigma * torch.randn_like(copies))
                fake = int(says_fake(logits[:, 1] - logits[:, 0]).sum())
                votes[i, 1] += fake
                votes[i, 0] += len(copies) - fake
    return votes


def lower_confidence_bound(successes: np.ndarray, n: int, alpha: float) -> np.ndarray:
    """One-sided (1 - alpha) Clopper-Pearson lower bound of a binomial proportion (0 when no success)."""
    k = np.asarray(successes, dtype=float)
    bound = beta.ppf(alpha, np.maximum(k, 1e-12), n - k + 1)
    return np.where(k > 0, bound, 0.0)


def certify(
    model: nn.Module,
    x: torch.Tensor,
    sigma: float,
    *,
    n0: int = 100,
    n: int = 1000,
    alpha: float = 0.001,
    batch_size: int = 200,
) -> tuple[np.ndarray, np.ndarray]:
    """CERTIFY (Cohen et al. 2019, Algorithm 1) for every image of ``x`` ([N, C, H, W] in [0, 1]): (the
    smoothed decision, 1 = fake, 0 = real, ``ABSTAIN``; the certified L2 radius, 0 where it abstains).
    ``model`` must be frozen and in eval mode; its calls are ``n0 + n`` noisy copies per image."""
    if not (sigma > 0 and 0 < alpha < 1 and n0 >= 1 and n >= 1):
        raise ValueError(
            f"certify needs sigma > 0, 0 < alpha < 1, n0 >= 1, n >= 1; got {sigma}, {alpha}, {n0}, {n}"
        )
    chosen = noisy_votes(model, x, sigma, n0, batch_size).argmax(1)
    counts = noisy_votes(model, x, sigma, n, batch_size)
    top = counts.gather(1, chosen[:, None]).squeeze(1).numpy()
    p_lower = lower_confidence_bound(top, n, alpha)
    certified = p_lower > 0.5
    radius = np.where(certified, sigma * norm.ppf(np.clip(p_lower, 0.5, 1 - 1e-16)), 0.0)
    return np.where(certified, chosen.numpy(), ABSTAIN), radius
