"""Randomized smoothing (``defenses/smoothing.py``) against its closed form: for a linear base classifier
f(x) = [w.x + b > 0] the smoothed classifier is exact, P(f(x + e) = fake) = Phi((w.x + b) / (sigma |w|)), and
the certified radius of an exact p_A is the distance to the hyperplane |w.x + b| / |w| (Cohen et al. 2019,
their linear example). CERTIFY's Clopper-Pearson bound must stay below it and close to it."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import norm
from torch import nn

from afsl_bench.defenses.smoothing import ABSTAIN, certify, lower_confidence_bound


class Linear(nn.Module):
    """Two logits [0, w.x + b]: "fake" exactly when w.x + b > 0."""

    def __init__(self, w: torch.Tensor, b: float) -> None:
        super().__init__()
        self.w, self.b = w, b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = x.flatten(1) @ self.w + self.b
        return torch.stack([torch.zeros_like(z), z], dim=1)


def test_the_certified_radius_is_the_distance_to_the_hyperplane_within_the_monte_carlo_bound() -> None:
    torch.manual_seed(0)
    w = torch.randn(3 * 4 * 4)
    model, sigma, n, alpha = Linear(w, 0.0), 0.25, 20_000, 0.001
    distances = torch.tensor([0.40, 0.15, -0.30, 0.02])  # signed distances to the hyperplane
    x = (distances[:, None] * w / w.norm()).view(4, 3, 4, 4)
    decision, radius = certify(model, x, sigma, n0=100, n=n, alpha=alpha, batch_size=5_000)
    for d, g, r in zip(distances.tolist(), decision, radius, strict=True):
        p = norm.cdf(abs(d) / sigma)  # the exact probability of the top class
        if abs(d) < 0.05:  # p close to 1/2: abstain or a tiny radius
            assert g == ABSTAIN or r < 0.05
            continue
        assert g == (1 if d > 0 else 0)
        worst = sigma * norm.ppf(p - 5 * math.sqrt(p * (1 - p) / n))  # far below any plausible estimate
        assert worst < r <= abs(d) + 1e-6, (d, r)


def test_the_clopper_pearson_bound_matches_its_closed_forms() -> None:
    n, alpha = 1000, 0.001
    assert lower_confidence_bound(np.array([n]), n, alpha)[0] == pytest.approx(alpha ** (1 / n))  # k = n
    assert lower_confidence_bound(np.array([0]), n, alpha)[0] == 0.0
    k = np.array([600, 900, 990])
    bounds = lower_confidence_bound(k, n, alpha)
    assert np.all(bounds < k / n) and np.all(np.diff(bounds) > 0)


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="sigma > 0"):
        certify(Linear(torch.ones(3), 0.0), torch.zeros(1, 3, 1, 1), 0.0)
