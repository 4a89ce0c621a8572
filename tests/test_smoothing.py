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


SMALL = ["data.n_identities=20", "data.images_per_identity=6", "data.resolution=32", "train.epochs=4"]


@pytest.fixture(scope="module")
def certified(tmp_path_factory):
    """A tiny-cnn trained with Gaussian noise (sigma 0.25), certified on 24 test images."""
    from afsl_bench.runner.cell import RunOptions, trained_model
    from afsl_bench.runner.certification import CertifySettings, certify_model
    from afsl_bench.runner.plan import plan_training

    training = plan_training("tiny-cnn", "smoothing", "synthetic", SMALL)
    options = RunOptions(results_dir=tmp_path_factory.mktemp("certified"), device="cpu")
    settings = CertifySettings(sigma=0.25, n0=50, n=500, samples=24)
    result = certify_model(training, settings, options)
    model, bundle = trained_model(training, options)
    return training, settings, options, result, model, bundle


def test_a_certification_is_stored_once_and_reads_as_its_parts(certified, monkeypatch) -> None:
    from afsl_bench.runner import certification

    training, settings, options, result, _, _ = certified
    acc = result["certified_acc"]
    radii = list(acc)
    assert radii[:4] == ["0", "0.25", "0.5", "1"] and float(radii[4]) == pytest.approx(1.739, abs=5e-4)
    assert result["linf_ball"]["l2_radius"] == pytest.approx(8 / 255 * math.sqrt(3 * 32 * 32))
    assert all(a >= b for a, b in zip(acc.values(), list(acc.values())[1:])), (
        "certified accuracy falls with the radius"
    )
    for radius in radii:  # the total is the class-weighted mean
        total = (result["certified_acc_real"][radius] * result["n_reals"]
                 + result["certified_acc_fake"][radius] * result["n_fakes"]) / result["n_samples"]  # fmt: skip
        assert acc[radius] == pytest.approx(total)
    assert 0 <= result["abstain"] <= 1 and result["throughput"]["noisy_images_per_s"] > 0
    monkeypatch.setattr(certification, "certify", lambda *a, **k: pytest.fail("recomputed a stored result"))
    assert certification.certify_model(training, settings, options)["certify_id"] == result["certify_id"]


def test_an_attack_on_the_smoothed_detector_never_beats_a_certificate(certified) -> None:
    """L2 PGD with expectation over the noise (the attack on the smoothed classifier of Salman et al. 2019)
    at eps = 0.3: every image certified beyond eps (with a 0.1 margin, so that the Monte Carlo vote at the
    adversarial point is not a coin toss) keeps its smoothed decision."""
    from afsl_bench.defenses.smoothing import noisy_votes
    from afsl_bench.runner.cell import subset_test

    _, settings, _, _, model, bundle = certified
    test = subset_test(bundle, settings.samples).test
    x = next(iter(test.batches(len(test)))).x
    torch.manual_seed(1)
    decision, radius = certify(model, x, settings.sigma, n0=50, n=500, alpha=settings.alpha)
    eps, sure = 0.3, radius > 0.4
    assert sure.sum() >= 3, "the test needs some images certified well beyond eps"
    target = torch.as_tensor(decision).clamp(min=0)
    delta = torch.zeros_like(x, requires_grad=True)
    for _ in range(30):  # L2 PGD on E_noise[CE], 16 noise samples per step
        noisy = (x + delta).repeat(16, 1, 1, 1)
        loss = torch.nn.functional.cross_entropy(
            model(noisy + settings.sigma * torch.randn_like(noisy)), target.repeat(16)
        )
        (grad,) = torch.autograd.grad(loss, delta)
        step = grad / grad.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
        with torch.no_grad():
            delta += 0.05 * step
            norms = delta.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
            delta *= (eps / norms).clamp(max=1.0)
    votes = noisy_votes(model, (x + delta).detach(), settings.sigma, 500, batch_size=500).argmax(1).numpy()
    assert np.all(votes[sure] == decision[sure])
    assert (votes != decision).any(), "the attack has teeth: it moves some image not certified that far"


def test_the_command_prints_the_table_and_refuses_bad_settings(tmp_path) -> None:
    from typer.testing import CliRunner

    from afsl_bench.cli import app

    base = ["certify", *[a for s in SMALL for a in ("--set", s)], "--n", "100", "--n0", "10", "--samples", "8",
            "--results-dir", str(tmp_path), "--device", "cpu"]  # fmt: skip
    outcome = CliRunner().invoke(app, base)
    assert outcome.exit_code == 0, outcome.output
    text = " ".join(outcome.output.split())  # a title wraps at the terminal's width
    assert "certified accuracy (randomized smoothing, sigma 0.25" in text and "L2 radius" in text
    assert "abstained on" in outcome.output and len(list((tmp_path / "certified").glob("*.json"))) == 1
    bad = CliRunner().invoke(app, [*base, "--sigma", "0"])
    assert bad.exit_code == 2 and "sigma=0.0" in bad.output


@pytest.mark.reference
def test_radii_agree_with_arts_randomized_smoothing() -> None:
    """ART's ``PyTorchRandomizedSmoothing.certify`` is Cohen et al.'s CERTIFY too (numpy noise, its own
    Clopper-Pearson bound): on the same linear detector both radii estimate the same distance."""
    pytest.importorskip("art")
    from art.estimators.certification.randomized_smoothing import PyTorchRandomizedSmoothing

    torch.manual_seed(0)
    np.random.seed(0)
    w = torch.randn(3 * 4 * 4)
    model, sigma, n = Linear(w, 0.0), 0.25, 20_000
    distances = torch.tensor([0.40, 0.15, -0.30])
    x = (distances[:, None] * w / w.norm()).view(3, 3, 4, 4)
    reference = PyTorchRandomizedSmoothing(
        model, torch.nn.CrossEntropyLoss(), input_shape=(3, 4, 4), nb_classes=2, device_type="cpu",
        sample_size=100, scale=sigma, alpha=0.001,
    )  # fmt: skip
    art_class, art_radius = reference.certify(x.numpy(), n=n, batch_size=5_000)
    ours_class, ours_radius = certify(model, x, sigma, n0=100, n=n, alpha=0.001, batch_size=5_000)
    assert list(ours_class) == list(art_class) == [1, 1, 0]
    assert np.abs(ours_radius - art_radius).max() < 0.02, (ours_radius, art_radius)
