"""Distortions (jpeg, blur, noise, resize, color, video-codec) and EOT-PGD: identity at severity 0, the
contract, degradation growing with severity, independent references (PIL, torchvision, the clipped-normal
closed form), no leakage between the samples of a batch, and EOT-PGD surviving a real JPEG round trip where
plain PGD does not (on ``_attack_fixtures``' red-vs-blue detector, which JPEG does affect: see below)."""

from __future__ import annotations

import io
import itertools
import math
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF
from _attack_fixtures import accuracy, make_images
from PIL import Image
from torch import nn

from afsl_bench.attacks import ATTACKS
from afsl_bench.attacks.distortions import BLUR_KERNEL, COLOR_SHIFT, JPEG_QUALITY, NOISE_STD, noise
from afsl_bench.attacks.eot_pgd import TRANSFORMS
from afsl_bench.core.errors import ConfigError

NAMES = ["blur", "color", "jpeg", "noise", "resize", "video-codec"]
NO_GPU = pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU")
DEVICES = ["cpu", pytest.param("cuda", marks=NO_GPU)]

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data() -> tuple[torch.Tensor, torch.Tensor]:
    return make_images(128, seed=123)


def smooth(n: int, height: int = 64, width: int = 64, seed: int = 0) -> torch.Tensor:
    """Smooth random colour images [n,3,H,W] in [0,1] (8x8 random pixels upsampled, fewer when small)."""
    grid = max(2, min(8, height // 8, width // 8))
    coarse = torch.rand(n, 3, grid, grid, generator=torch.Generator().manual_seed(seed))
    return F.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=False)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return 10 * math.log10(1 / (a - b).pow(2).mean().item())


def pil_jpeg(x: torch.Tensor, quality: int) -> torch.Tensor:
    """Reference: PIL's own round trip of each [3,H,W] image."""
    out = []
    for image in x:
        buffer = io.BytesIO()
        array = (image * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
        Image.fromarray(array).save(buffer, format="JPEG", quality=quality)
        out.append(torch.from_numpy(np.array(Image.open(buffer))).permute(2, 0, 1))
    return torch.stack(out).float() / 255


def margin_of(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        logits = model(x)
    return logits[:, 1] - logits[:, 0]


# --- distortions --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(4, 3, 32, 32), (2, 3, 3, 17, 9)])
@pytest.mark.parametrize("name", NAMES)
def test_severity_zero_is_the_identity(name, shape, model):
    x = torch.rand(shape)
    y = torch.ones(shape[0], dtype=torch.long)
    assert torch.equal(TRANSFORMS[name](x, 0), x)
    if len(shape) == 4:
        assert torch.equal(ATTACKS.build(name, severity=0)(model, x, y), x)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("shape, dtype", [((4, 3, 33, 31), torch.float32), ((2, 3, 3, 16, 20), torch.float64)])
@pytest.mark.parametrize("name", NAMES)
def test_contract_shape_dtype_device_range(name, shape, dtype, device):
    x = torch.rand(shape, dtype=dtype, device=device)
    for severity in (1, 5):
        out = TRANSFORMS[name](x, severity)
        assert (out.shape, out.dtype, out.device) == (x.shape, x.dtype, x.device)
        assert out.min() >= 0 and out.max() <= 1
        assert not torch.equal(out, x)


@pytest.mark.parametrize("name", NAMES)
def test_degradation_grows_with_severity(name):
    x = smooth(8)
    values = []
    for severity in range(1, 6):
        torch.manual_seed(0)
        values.append(psnr(TRANSFORMS[name](x, severity), x))
    assert all(b < a for a, b in itertools.pairwise(values)), values


def test_jpeg_matches_pils_own_round_trip():
    x = smooth(4, 40, 24) * 0.8 + 0.1 * torch.rand(4, 3, 40, 24)
    for severity, quality in JPEG_QUALITY.items():
        assert torch.equal(TRANSFORMS["jpeg"](x, severity), pil_jpeg(x, quality))
    assert list(JPEG_QUALITY.values()) == [80, 65, 58, 50, 40]  # CIFAR-10-C's table, as documented


def test_blur_matches_torchvision_gaussian_blur():
    x = torch.rand(3, 3, 40, 37)
    for severity, kernel in BLUR_KERNEL.items():
        reference = TF.gaussian_blur(x, [kernel, kernel], [kernel / 6, kernel / 6])
        torch.testing.assert_close(TRANSFORMS["blur"](x, severity), reference, atol=1e-5, rtol=0)


def test_color_matches_torchvision_adjustments():
    x = torch.rand(3, 3, 20, 24)
    for severity, shift in COLOR_SHIFT.items():
        reference = TF.adjust_brightness(
            TF.adjust_contrast(TF.adjust_saturation(x, shift.saturation), shift.contrast), shift.brightness
        )
        # torchvision's luma weighs red 0.2989, ours (ITU-R 601, DeeperForensics' YCbCr) 0.299
        torch.testing.assert_close(TRANSFORMS["color"](x, severity), reference, atol=2e-4, rtol=0)


def test_resize_matches_pytorch_bilinear_down_up():
    x = smooth(2, 30, 36)
    small = F.interpolate(x, size=(30 // 4, 36 // 4), mode="bilinear")  # severity 3: factor 4
    torch.testing.assert_close(TRANSFORMS["resize"](x, 3), F.interpolate(small, size=(30, 36), mode="bilinear"))


def clipped_normal_std(std: float, bound: float) -> float:
    """Closed form: the std of N(0, std^2) clamped to [-bound, bound]."""
    a = bound / std
    cdf = 0.5 * (1 + math.erf(a / math.sqrt(2)))
    pdf = math.exp(-a * a / 2) / math.sqrt(2 * math.pi)
    return math.sqrt(std**2 * (2 * cdf - 1 - 2 * a * pdf) + 2 * bound**2 * (1 - cdf))


def test_noise_is_seeded_and_its_std_matches_the_table():
    variances = [0.001, 0.002, 0.005, 0.01, 0.05]  # DeeperForensics GNC
    assert [NOISE_STD[s] ** 2 for s in range(1, 6)] == pytest.approx(variances)
    gray = torch.full((16, 3, 64, 64), 0.5)
    for severity, std in NOISE_STD.items():
        torch.manual_seed(7)
        first = ATTACKS.build("noise", severity=severity)(nn.Identity(), gray, torch.ones(16, dtype=torch.long))
        torch.manual_seed(7)
        assert torch.equal(TRANSFORMS["noise"](gray, severity), first)
        measured = (first - gray).std().item()
        assert measured == pytest.approx(clipped_normal_std(std, 0.5), rel=0.01), severity
    same = [noise(gray, 3, torch.Generator().manual_seed(1)) for _ in range(2)]
    assert torch.equal(*same)


# --- video codec --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(4, 3, 33, 31), (3, 4, 3, 17, 9), (2, 3, 1, 1)])
def test_video_codec_images_and_clips_odd_sizes(shape):
    height, width = shape[-2:]
    x = smooth(int(np.prod(shape[:-3])), height, width).view(shape)
    out = TRANSFORMS["video-codec"](x, 1)
    assert out.shape == x.shape
    assert psnr(out, x) > 25
    # odd sizes: the same as encoding the edge-replicated even picture and cropping the padding off
    frames = F.pad(x.reshape(-1, 3, height, width), (0, width % 2, 0, height % 2), mode="replicate")
    even = frames.view(*shape[:-2], height + height % 2, width + width % 2)
    assert torch.equal(out, TRANSFORMS["video-codec"](even, 1)[..., :height, :width])


@pytest.mark.parametrize("shape", [(4, 3, 32, 30), (3, 4, 3, 16, 14)])
def test_video_codec_no_leakage_between_samples(shape):
    """The last sample's output is the same whatever the samples before it (one batch encoded as one video
    would predict it from them; its first frame would not show that)."""
    n, frames = shape[0], int(np.prod(shape[1:-3]))
    x = smooth(n * frames, *shape[-2:], seed=1).view(shape)
    other = x.clone()
    other[:-1] = smooth((n - 1) * frames, *shape[-2:], seed=2).view(n - 1, *shape[1:])
    first, second = TRANSFORMS["video-codec"](x, 3), TRANSFORMS["video-codec"](other, 3)
    assert torch.equal(first[-1], second[-1])
    assert torch.equal(first[-1], TRANSFORMS["video-codec"](x[-1:], 3)[0])
    assert not torch.equal(first[:-1], second[:-1])


def test_video_codec_without_pyav_says_pip_install_av(monkeypatch):
    monkeypatch.setitem(sys.modules, "av", None)  # makes `import av` raise ImportError
    with pytest.raises(ConfigError, match="pip install av"):
        ATTACKS.build("video-codec")
    with pytest.raises(ConfigError, match="pip install av"):
        ATTACKS.build("eot-pgd")  # its default round trips include video-codec
    ATTACKS.build("eot-pgd", round_trips=("jpeg",))


@pytest.mark.parametrize("name", NAMES)
def test_fake_to_real_leaves_reals_untouched(name, model, data):
    x, y = data[0][:16], data[1][:16]
    out = ATTACKS.build(name, direction="fake-to-real")(model, x, y)
    assert torch.equal(out[y == 0], x[y == 0])
    assert (out[y == 1] != x[y == 1]).flatten(1).any(1).all()


@pytest.mark.parametrize("name, params, word", [
    *[(name, {"severity": 6}, "severity") for name in NAMES],
    ("jpeg", {"severity": -1}, "severity"), ("blur", {"severity": 2.5}, "severity"),
    ("noise", {"severity": True}, "severity"), ("color", {"direction": "real-to-fake"}, "direction"),
    ("eot-pgd", {"transforms": ("jpeg", "gif")}, "transforms"),
    ("eot-pgd", {"round_trips": ("webp",)}, "round_trips"), ("eot-pgd", {"transforms": ()}, "transforms"),
    ("eot-pgd", {"max_severity": 6}, "max_severity"), ("eot-pgd", {"round_trip_severity": -1}, "round_trip"),
    ("eot-pgd", {"eot_samples": 0}, "eot_samples"), ("eot-pgd", {"eps": 2.0}, "eps"),
])
def test_bad_parameters_raise_config_error(name, params, word):
    with pytest.raises(ConfigError, match=word) as err:
        ATTACKS.build(name, **params)
    assert name in str(err.value)


def test_unknown_transform_lists_the_valid_names():
    with pytest.raises(ConfigError, match="gif") as err:
        ATTACKS.build("eot-pgd", transforms=("gif",))
    assert all(name in str(err.value) for name in NAMES)


# --- EOT-PGD ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("norm, eps", [("linf", 8 / 255), ("l2", 0.5)])
def test_eot_pgd_stays_in_the_ball_and_in_range(norm, eps, model, data):
    x, y = data[0][:32], data[1][:32]
    torch.manual_seed(0)
    attack = ATTACKS.build("eot-pgd", norm=norm, eps=eps, steps=5, transforms=("jpeg", "blur", "video-codec"),
                           round_trips=(), direction="fake-to-real")
    with torch.no_grad():  # evaluation loops run under no_grad
        x_adv = attack(model, x, y)
    delta = (x_adv - x).flatten(1)
    size = delta.abs().amax(1) if norm == "linf" else delta.norm(dim=1)
    assert size.max() <= eps * (1 + 1e-5)
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert torch.equal(x_adv[y == 0], x[y == 0])
    assert (size[y == 1] > 0).all()


def test_eot_pgd_without_distortions_is_pgd(model, data):
    """max_severity 0 draws only identities: then EOT-PGD is PGD without early stop, step for step."""
    x, y = data
    params = {"eps": 8 / 255, "steps": 5, "random_start": False, "loss": "margin"}
    pgd = ATTACKS.build("pgd", early_stop=False, **params)(model, x, y)
    eot = ATTACKS.build("eot-pgd", max_severity=0, eot_samples=2, round_trips=(), **params)(model, x, y)
    torch.testing.assert_close(eot, pgd)


def test_eot_pgd_survives_a_jpeg_round_trip_where_pgd_does_not(model, data):
    """The red-vs-blue fixture detector is affected by JPEG: clean accuracy is unchanged by quality 58, but
    PGD's high-frequency perturbation is mostly removed by it (about 57% -> 95% accuracy at 8/255 on 256
    samples). EOT-PGD, whose loss sees JPEG (straight through), blur, resize and noise, keeps most of its
    success after the real round trip (about 63%)."""
    x, y = data
    jpeg = TRANSFORMS["jpeg"]
    assert accuracy(model, jpeg(x, 3), y) >= accuracy(model, x, y) - 1 / 128
    torch.manual_seed(0)
    x_pgd = ATTACKS.build("pgd", eps=8 / 255, steps=10)(model, x, y)
    torch.manual_seed(0)
    x_eot = ATTACKS.build("eot-pgd", eps=8 / 255, steps=10, round_trips=())(model, x, y)
    pgd_after, eot_after = accuracy(model, jpeg(x_pgd, 3), y), accuracy(model, jpeg(x_eot, 3), y)
    assert pgd_after > accuracy(model, x_pgd, y) + 0.2, "premise: JPEG undoes much of plain PGD here"
    assert eot_after < pgd_after - 0.15, (eot_after, pgd_after)


def test_round_trip_columns_are_the_margin_after_the_real_round_trip(model, data):
    x, y = data[0][:48], data[1][:48]
    torch.manual_seed(0)
    out = ATTACKS.build("eot-pgd", steps=3, direction="fake-to-real").run(model, x, y)
    assert set(out.info) == {"adv_score_after_jpeg", "adv_score_after_video-codec"}
    column = out.info["adv_score_after_jpeg"]
    assert column.shape == (48,) and column.dtype == torch.float32
    # every row, the ones the direction left alone too; the reference round trip is PIL's at quality 58
    torch.testing.assert_close(column, margin_of(model, pil_jpeg(out.x_adv, 58)))
    after_h264 = out.info["adv_score_after_video-codec"]
    torch.testing.assert_close(after_h264, margin_of(model, TRANSFORMS["video-codec"](out.x_adv, 3)))
    assert not torch.allclose(after_h264, margin_of(model, out.x_adv))
