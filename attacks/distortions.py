"""Common distortions as "attacks": JPEG, Gaussian blur, Gaussian noise, down-then-up resize, colour change.

No model, no gradient: the sample is degraded the way sharing and re-encoding degrade real media, at a
``severity`` 1..5 (0 is the identity and returns the input bit for bit). The levels follow the perturbation
levels of DeeperForensics-1.0 (Jiang et al., CVPR 2020, https://arxiv.org/abs/2001.03024; their code:
https://github.com/EndlessSora/DeeperForensics-1.0/tree/master/perturbation, ``add_distortion_to_video.py``):

==========  ====================================  ==================================  ========================
ours        parameter per severity 1..5            DeeperForensics (level 1..5)        where ours differs
==========  ====================================  ==================================  ========================
blur        kernel 7, 9, 13, 17, 21; sigma k / 6   GB: same kernels, cv2 sigma k / 6   reflect padding (as cv2)
noise       std sqrt(.001 .002 .005 .01 .05)       GNC: variance .001 ... .05          i.i.d. per RGB channel;
            = .032, .045, .071, .100, .224                                              GNC adds it to YCbCr
resize      factor 2, 3, 4, 5, 6 (bilinear down    "JPEG": the same down-up resize     no 8-bit rounding
            to H // f, bilinear back up)           (cv2 INTER_LINEAR), named JPEG
color       saturation .4 .3 .2 .1 0; contrast     CS (chroma scale) and CC (x * c)    composed into one;
            and brightness .85 .725 .6 .475 .35    are two separate types              CC used twice (below)
jpeg        quality 80, 65, 58, 50, 40 (PIL)       none (their "JPEG" is the resize)   CIFAR-10-C's table
==========  ====================================  ==================================  ========================

- ``jpeg``: DeeperForensics has no real JPEG level table, so the qualities are CIFAR-10-C's
  (Hendrycks & Dietterich, ICLR 2019, https://arxiv.org/abs/1903.12261), the table made for small images;
  the codec is PIL's libjpeg with its defaults (4:2:0 chroma subsampling), one image (or frame) at a time.
- ``color`` applies all three adjustments at a severity, in this order: saturation (blend with the ITU-R
  601 luma, which is DeeperForensics' CbCr scaling), contrast (blend with the image's mean luma, as
  torchvision's ``adjust_contrast``) and brightness (``x * c``, which is what DeeperForensics' "contrast"
  CC does). DeeperForensics' CC ladder serves as both the contrast and the brightness factor.
- ``noise`` is drawn from torch's global RNG on ``x.device`` (or an explicit ``generator``), so a seeded
  evaluation is reproducible; values are clamped to [0, 1].
- Sizes are in absolute pixels, as DeeperForensics (which perturbs 1920x1080 frames): on small face crops
  blur and resize are relatively stronger.
- Only ``jpeg`` quantises to 8 bits (the codec needs it); the others stay in floating point and are
  differentiable, which EOT-PGD (``attacks.eot_pgd``) uses. Local block-wise distortion (BW) is not
  included. H.264 video compression (VC) is ``video-codec`` (``attacks.video_codec``).

Every function takes a batch [..., 3, H, W] (images [N,3,H,W] or clips [N,T,3,H,W]) on any device and
returns the same shape, dtype and device, inside [0, 1].

Arguments (defaults), each attack: severity 3 (0..5, 0 = identity), direction both.

Example::

    x_jpeg = JPEG(severity=3)(model, x, y)       # quality 58; the model is not used
    x_blur = blur(x, 2)                          # the function behind ``blur``: kernel 9, sigma 1.5
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from afsl_bench.attacks.base import ATTACKS, Attack
from afsl_bench.attacks.ops import check_vocabulary
from afsl_bench.attacks.vocabulary import Direction

#: severities above 0; 0 is the identity
LEVELS = range(1, 6)

#: JPEG quality per severity (CIFAR-10-C, Hendrycks & Dietterich 2019)
JPEG_QUALITY = dict(zip(LEVELS, (80, 65, 58, 50, 40), strict=True))
#: Gaussian kernel size per severity (DeeperForensics GB); sigma = size / 6, as their cv2.GaussianBlur call
BLUR_KERNEL = dict(zip(LEVELS, (7, 9, 13, 17, 21), strict=True))
#: noise standard deviation per severity, in [0,1] pixel units: the square roots of DeeperForensics' GNC
#: variances (0.001, 0.002, 0.005, 0.01, 0.05)
NOISE_STD = {s: math.sqrt(v) for s, v in zip(LEVELS, (0.001, 0.002, 0.005, 0.01, 0.05), strict=True)}
#: down-sizing factor per severity (DeeperForensics' "JPEG", which is a down-then-up resize)
RESIZE_FACTOR = dict(zip(LEVELS, (2, 3, 4, 5, 6), strict=True))


@dataclass(frozen=True)
class ColorShift:
    """Factors of one ``color`` severity; 1.0 leaves the image unchanged, 0.0 removes the property."""

    saturation: float
    contrast: float
    brightness: float


#: (DeeperForensics CS, CC, CC) per severity
COLOR_SHIFT = {
    s: ColorShift(saturation=cs, contrast=cc, brightness=cc)
    for s, cs, cc in zip(LEVELS, (0.4, 0.3, 0.2, 0.1, 0.0), (0.85, 0.725, 0.6, 0.475, 0.35), strict=True)
}

#: ITU-R BT.601 luma weights (torchvision's ``rgb_to_grayscale``, DeeperForensics' YCbCr)
LUMA = (0.299, 0.587, 0.114)


def check_severity(value: int, name: str = "severity") -> None:
    """``severity=6`` -> ValueError naming ``severity`` (or ``name``)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 5:
        raise ValueError(f"{name} must be an integer in 0..5 (0 = identity, 5 = strongest), got {value!r}")


# --- the distortions: f(x, severity, generator=None) -> x, and the parametric form behind each -----------


def jpeg(x: torch.Tensor, level: int, generator: torch.Generator | None = None) -> torch.Tensor:
    return x if level == 0 else jpeg_at(x, JPEG_QUALITY[level])


def blur(x: torch.Tensor, level: int, generator: torch.Generator | None = None) -> torch.Tensor:
    return x if level == 0 else blur_at(x, BLUR_KERNEL[level], BLUR_KERNEL[level] / 6)


def noise(x: torch.Tensor, level: int, generator: torch.Generator | None = None) -> torch.Tensor:
    return x if level == 0 else noise_at(x, NOISE_STD[level], generator)


def resize(x: torch.Tensor, level: int, generator: torch.Generator | None = None) -> torch.Tensor:
    return x if level == 0 else resize_at(x, RESIZE_FACTOR[level])


def color(x: torch.Tensor, level: int, generator: torch.Generator | None = None) -> torch.Tensor:
    return x if level == 0 else color_at(x, COLOR_SHIFT[level])


def jpeg_at(x: torch.Tensor, quality: int) -> torch.Tensor:
    """PIL (libjpeg) encode + decode of every image / frame on its own; no gradient (8-bit codec)."""
    pixels = to_uint8_hwc(x.reshape(-1, *x.shape[-3:]))
    decoded = np.stack([_pil_jpeg(image, quality) for image in pixels])
    return from_uint8_hwc(decoded, x).reshape(x.shape)


def _pil_jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
    return np.asarray(Image.open(buffer).convert("RGB"))


def blur_at(x: torch.Tensor, kernel: int, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur, reflect padding (cv2's default border; replicate on images too small)."""
    frames = x.reshape(-1, *x.shape[-3:])
    half = kernel // 2
    taps = torch.arange(kernel, dtype=torch.float64) - half
    weights = torch.exp(-0.5 * (taps / sigma) ** 2)
    weights = (weights / weights.sum()).tolist()
    mode = "reflect" if half < min(x.shape[-2:]) else "replicate"
    return _filter_rows(_filter_rows(frames, weights, mode).mT, weights, mode).mT.reshape(x.shape)


def _filter_rows(frames: torch.Tensor, weights: list[float], mode: str) -> torch.Tensor:
    """1-D filter along the last axis as a weighted sum of shifted copies: for kernels this small, faster
    forward and backward on the CPU than a one-channel conv2d."""
    width, half = frames.shape[-1], len(weights) // 2
    padded = F.pad(frames, (half, half, 0, 0), mode=mode)
    out = weights[0] * padded[..., :width]
    for shift, weight in enumerate(weights[1:], start=1):
        out = out + weight * padded[..., shift : shift + width]
    return out


def noise_at(x: torch.Tensor, std: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Additive white Gaussian noise, i.i.d. per pixel and channel, clamped to [0, 1]."""
    draw = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return (x + std * draw).clamp(0, 1)


def resize_at(x: torch.Tensor, factor: int) -> torch.Tensor:
    """Bilinear down-sizing to (H // factor, W // factor) and bilinear up-sizing back (no antialiasing,
    as cv2's INTER_LINEAR)."""
    frames = x.reshape(-1, *x.shape[-3:])
    height, width = x.shape[-2:]
    small = F.interpolate(
        frames, size=(max(1, height // factor), max(1, width // factor)), mode="bilinear", align_corners=False
    )
    return F.interpolate(small, size=(height, width), mode="bilinear", align_corners=False).view(x.shape)


def color_at(x: torch.Tensor, shift: ColorShift) -> torch.Tensor:
    """Saturation, then contrast, then brightness (torchvision's ``adjust_*`` semantics)."""
    x = blend(x, luma(x), shift.saturation)
    x = blend(x, luma(x).mean((-3, -2, -1), keepdim=True), shift.contrast)
    return (x * shift.brightness).clamp(0, 1)


def luma(x: torch.Tensor) -> torch.Tensor:
    weights = torch.tensor(LUMA, device=x.device, dtype=x.dtype).view(3, 1, 1)
    return (x * weights).sum(-3, keepdim=True)


def blend(x: torch.Tensor, towards: torch.Tensor, factor: float) -> torch.Tensor:
    """``factor`` * x + (1 - factor) * towards, in [0, 1]."""
    return (factor * x + (1 - factor) * towards).clamp(0, 1)


def to_uint8_hwc(frames: torch.Tensor) -> np.ndarray:
    """[B,3,H,W] in [0,1] -> [B,H,W,3] uint8 on the CPU (rounded)."""
    pixels = frames.detach().mul(255).round_().clamp_(0, 255).to(torch.uint8)
    return pixels.permute(0, 2, 3, 1).cpu().numpy()


def from_uint8_hwc(pixels: np.ndarray, like: torch.Tensor) -> torch.Tensor:
    """[..., H,W,3] uint8 -> [..., 3,H,W] in [0,1] with ``like``'s device and dtype."""
    out = torch.from_numpy(np.ascontiguousarray(pixels)).to(like.device)
    return out.movedim(-1, -3).to(like.dtype).div_(255)


#: name -> f(x, severity, generator=None); ``attacks.video_codec`` adds nothing here (EOT-PGD joins both)
DISTORTIONS: dict[str, Callable[..., torch.Tensor]] = {
    "blur": blur,
    "color": color,
    "jpeg": jpeg,
    "noise": noise,
    "resize": resize,
}
#: distortions without a useful gradient (8-bit codecs): EOT-PGD passes them straight through (BPDA)
NON_DIFFERENTIABLE = frozenset({"jpeg"})


# --- the attacks --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DistortionAttack(Attack):
    """Base of the distortions: ``distortion(x, severity)`` on the samples the direction targets."""

    requires_grad: ClassVar[bool] = False
    distortion: ClassVar[Callable[..., torch.Tensor]]

    severity: int = 3
    direction: Direction = Direction.BOTH

    def __post_init__(self) -> None:
        check_severity(self.severity)
        check_vocabulary(direction=self.direction)

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return type(self).distortion(x, self.severity)


@ATTACKS.register("jpeg")
@dataclass(frozen=True)
class JPEG(DistortionAttack):
    """JPEG compression (PIL) at quality 80, 65, 58, 50, 40 for severity 1..5 (CIFAR-10-C's table)."""

    distortion: ClassVar[Callable[..., torch.Tensor]] = staticmethod(jpeg)


@ATTACKS.register("blur")
@dataclass(frozen=True)
class Blur(DistortionAttack):
    """Gaussian blur, kernel 7, 9, 13, 17, 21 and sigma kernel / 6 for severity 1..5 (DeeperForensics GB)."""

    distortion: ClassVar[Callable[..., torch.Tensor]] = staticmethod(blur)


@ATTACKS.register("noise")
@dataclass(frozen=True)
class Noise(DistortionAttack):
    """White Gaussian noise, std .032 .. .224 for severity 1..5 (DeeperForensics GNC variances)."""

    distortion: ClassVar[Callable[..., torch.Tensor]] = staticmethod(noise)


@ATTACKS.register("resize")
@dataclass(frozen=True)
class Resize(DistortionAttack):
    """Bilinear down-sizing by 2, 3, 4, 5, 6 and back up for severity 1..5 (DeeperForensics' "JPEG")."""

    distortion: ClassVar[Callable[..., torch.Tensor]] = staticmethod(resize)


@ATTACKS.register("color")
@dataclass(frozen=True)
class Color(DistortionAttack):
    """Saturation, contrast and brightness lowered together (DeeperForensics CS and CC levels)."""

    distortion: ClassVar[Callable[..., torch.Tensor]] = staticmethod(color)
