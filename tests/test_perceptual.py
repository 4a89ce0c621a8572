"""SSIM and PSNR of the adversarial examples: per sample in the table, summarised in every
record beside the L-inf / L2 figures; checked against scikit-image's implementation of Wang et al. 2004."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from afsl_bench.attacks import ATTACKS
from afsl_bench.core.types import Split
from afsl_bench.detectors import DETECTORS
from afsl_bench.runner.evaluation import perceptual, score_split
from afsl_bench.store.record import perturbation

pytestmark = pytest.mark.usefixtures("one_thread")


def reference(clean: torch.Tensor, adv: torch.Tensor) -> tuple[float, float]:
    """scikit-image's SSIM with the paper's Gaussian window (sigma 1.5, population covariances) and PSNR."""
    a, b = adv.numpy().astype(np.float64), clean.numpy().astype(np.float64)
    ssim = structural_similarity(
        a, b, data_range=1.0, channel_axis=0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
    )
    return ssim, peak_signal_noise_ratio(b, a, data_range=1.0)


def linf_noise(x: torch.Tensor, eps: float, seed: int) -> torch.Tensor:
    torch.manual_seed(seed)
    return (x + eps * torch.sign(torch.randn_like(x))).clamp(0, 1)


@pytest.mark.parametrize("eps", [2 / 255, 8 / 255, 16 / 255])
def test_ssim_and_psnr_match_scikit_image_per_sample(eps):
    torch.manual_seed(0)
    x = torch.rand(4, 3, 48, 48)
    adv = linf_noise(x, eps, seed=1)
    ours = perceptual(x, adv)
    for i in range(len(x)):
        ssim, psnr = reference(x[i], adv[i])
        assert ours["ssim"][i].item() == pytest.approx(ssim, abs=5e-4)
        assert ours["psnr"][i].item() == pytest.approx(psnr, abs=1e-3)


def test_a_clips_values_are_the_means_over_its_frames():
    torch.manual_seed(0)
    clips = torch.rand(2, 3, 3, 32, 32)
    adv = linf_noise(clips, 8 / 255, seed=2)
    ours = perceptual(clips, adv)
    for i in range(2):
        frames = [reference(clips[i, t], adv[i, t]) for t in range(3)]
        assert ours["ssim"][i].item() == pytest.approx(np.mean([s for s, _ in frames]), abs=5e-4)
        assert ours["psnr"][i].item() == pytest.approx(np.mean([p for _, p in frames]), abs=1e-3)


def test_an_unchanged_image_has_ssim_one_and_infinite_psnr_and_tiny_images_have_none():
    x = torch.rand(2, 3, 32, 32)
    same = perceptual(x, x.clone())
    assert torch.allclose(same["ssim"], torch.ones(2)) and torch.isinf(same["psnr"]).all()
    tiny = perceptual(torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8))  # smaller than SSIM's 11 px window
    assert torch.isnan(tiny["ssim"]).all() and torch.isnan(tiny["psnr"]).all()


def test_every_record_summarises_the_changed_attacked_samples():
    """A real evaluation: FGSM on a random tiny-cnn; the summary covers the attacked samples FGSM moved."""
    torch.manual_seed(0)
    images = (torch.rand(12, 3, 32, 32) * 255).round().to(torch.uint8)
    labels = torch.tensor([0, 1] * 6)
    ids = [str(i) for i in range(12)]
    split = Split(images, labels, ids, ids, ["real" if v == 0 else "fake" for v in labels.tolist()])
    model = DETECTORS.build("tiny-cnn").eval()
    table = score_split(model, ATTACKS.build("fgsm", eps=4 / 255), split, batch_size=5, device=torch.device("cpu"),
                     seed=0)  # fmt: skip
    assert {"ssim", "psnr"} <= set(table.columns)
    size = perturbation(table)
    changed = table[table["attacked"] & (table["linf"] > 0)]
    assert size["perceptual_n"] == len(changed) > 0
    assert size["ssim_median"] == pytest.approx(float(changed["ssim"].median()))
    assert size["psnr_mean"] == pytest.approx(float(changed["psnr"].mean()))
    # an L-inf step of 4/255 on every pixel: PSNR = 20 log10(255 / 4) dB unless clipping shortened it
    assert size["psnr_median"] >= 20 * math.log10(255 / 4) - 1e-3
    assert 0 < size["ssim_median"] < 1


def test_tables_from_before_the_columns_keep_their_summary_without_them():
    table = score_split(
        DETECTORS.build("tiny-cnn").eval(),
        ATTACKS.build("fgsm", eps=4 / 255),
        Split(torch.zeros(2, 3, 32, 32, dtype=torch.uint8), torch.tensor([0, 1]), ["a", "b"], ["a", "b"],
              ["real", "fake"]),
        batch_size=2, device=torch.device("cpu"), seed=0,
    )  # fmt: skip
    old = perturbation(table.drop(columns=["ssim", "psnr"]))
    assert "ssim_mean" not in old and old["l2_mean"] > 0
