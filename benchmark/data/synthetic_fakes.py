"""Face manipulations of the embedded ``synthetic`` data set, each mirroring a real forgery family.

Every manipulation takes captured frames (camera noise included) with their scene parameters, which play
the part of the landmarks a real pipeline detects, and returns the forged frames. The traces they leave are
the ones the real methods are known for: blending seams and colour mismatch (identity swaps), resampling
of a warped region (re-enactment), over-smooth re-rendered texture (NeuralTextures), up-sampling patterns
(GAN generators) and self-blending boundaries (SBI). ``Style`` sets how crude the forger is: FF++-like
(visible seams) or Celeb-DF-like (soft masks, matched colour and grain).

In clips, per-clip choices repeat over the clip's frames and the blend jitters from frame to frame by
``Style.flicker``: the temporal flicker that per-frame face swapping is known for.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from afsl_bench.data.synthetic_faces import Canvas, Params, landmark_mask, render


@dataclass(frozen=True)
class Style:
    """How carefully fakes are made; each range is sampled per clip (or image)."""

    feather: tuple[float, float]  # blend-mask edge width, pixels
    colour_match: tuple[float, float]  # fraction of the donor/target colour gap that is corrected
    regrain: tuple[float, float]  # fraction of the camera noise re-added to synthesised pixels
    synth_scale: tuple[float, float]  # resolution of synthesised faces relative to the frame
    artifact: float  # scale of method-specific traces (warp size, checkerboard, texture noise)
    flicker: float  # frame-to-frame jitter of the blend in clips
    camera_noise: tuple[float, float]  # standard deviation of the real camera's noise


#: FaceForensics++-like: 2019-era tools with visible seams, colour mismatch and blurry synthesis
FFPP_STYLE = Style((0.8, 2.5), (0.35, 0.85), (0.0, 0.4), (0.5, 0.75), 1.0, 1.0, (0.006, 0.03))
#: Celeb-DF-like (Li et al., CVPR 2020): softer masks, colour transfer, sharper synthesis, less flicker
HQ_STYLE = Style((2.5, 4.5), (0.9, 1.0), (0.9, 1.05), (0.95, 1.0), 0.4, 0.3, (0.004, 0.018))


@dataclass(frozen=True)
class FakeInputs:
    """What a manipulation sees. Frames of one clip are consecutive; ``frames`` is the clip length."""

    image: Tensor  # captured target frames [N,3,H,W] in [0,1]
    scene: Params  # their scene parameters (stand-in for detected landmarks)
    style: Style
    generator: torch.Generator
    donor: Params | None = None  # another identity in the target's pose and lighting (identity swaps)
    frames: int = 1

    @property
    def res(self) -> int:
        return self.image.shape[-1]

    def draw(self, lo: float, hi: float, flicker: float = 0.0) -> Tensor:
        """Uniform [lo, hi] per clip, repeated over its frames, plus per-frame jitter in clips."""
        n = len(self.image) // self.frames
        value = lo + (hi - lo) * torch.rand(n, generator=self.generator)
        value = value.repeat_interleave(self.frames)
        if self.frames > 1 and flicker > 0:
            jitter = torch.randn(len(value), generator=self.generator)
            value = value + flicker * self.style.flicker * (hi - lo) * jitter
        return value.to(self.image.device)


def _c(t: Tensor) -> Tensor:
    return t.reshape(-1, 1, 1, 1)


def _blend(target: Tensor, source: Tensor, mask: Tensor) -> Tensor:
    return (target + mask * (source - target)).clamp(0, 1)


def _colour_match(source: Tensor, target: Tensor, mask: Tensor, amount: Tensor) -> Tensor:
    """Shift the source's mean colour under ``mask`` towards the target's by the fraction ``amount``."""
    weight = mask / mask.sum(dim=(2, 3), keepdim=True).clamp(min=1e-6)
    gap = ((target - source) * weight).sum(dim=(2, 3), keepdim=True)
    return source + _c(amount) * gap


def _regrain(inp: FakeInputs, img: Tensor, amount: Tensor) -> Tensor:
    """Re-add a fraction of the camera's noise to synthesised (noise-free) pixels."""
    noise = torch.randn(img.shape, generator=inp.generator).to(img.device)
    return img + _c(amount * inp.scene["noise"]) * noise


def _synth_resolution(img: Tensor, scale: Tensor) -> Tensor:
    """Resample each image through a lower resolution (a generator's output size), 4-pixel steps."""
    res = img.shape[-1]
    sizes = (scale * res / 4).round().clamp(min=2) * 4
    out = img.clone()
    for size in sizes.unique().tolist():
        pick = sizes == size
        low = F.interpolate(img[pick], size=int(size), mode="bilinear", antialias=True, align_corners=False)
        out[pick] = F.interpolate(low, size=res, mode="bilinear", align_corners=False)
    return out


def _warp(img: Tensor, flow: Tensor) -> Tensor:
    """out(p) = img(p - flow(p)); ``flow`` [N,2,H,W] in image units (the image spans [-1, 1])."""
    res = img.shape[-1]
    lin = (torch.arange(res, device=img.device, dtype=img.dtype) + 0.5) * (2.0 / res) - 1.0
    gy, gx = torch.meshgrid(lin, lin, indexing="ij")
    grid = torch.stack([gx - flow[:, 0], gy - flow[:, 1]], dim=-1)
    return F.grid_sample(img, grid, mode="bilinear", padding_mode="border", align_corners=False)


def deepfakes(inp: FakeInputs) -> Tensor:
    """DeepFakes (github.com/deepfakes/faceswap, as in FF++: Rossler et al., ICCV 2019,
    https://arxiv.org/abs/1901.08971): an autoencoder re-draws the donor's face in the target's pose at low
    resolution; it is colour-corrected and pasted with a feathered ellipse.

    Traces: blurry, noise-free inner face, residual colour gap, a soft seam around the ellipse.
    """
    s = inp.style
    donor = _synth_resolution(render(inp.donor, inp.res), inp.draw(*s.synth_scale))
    feather, grow = 1.5 * inp.draw(*s.feather, 0.5), inp.draw(1.0, 1.15, 0.3)
    mask = landmark_mask(inp.scene, inp.res, "inner", feather, grow)
    donor = _colour_match(donor, inp.image, mask, inp.draw(*s.colour_match, 0.3).clamp(0, 1))
    return _blend(inp.image, _regrain(inp, donor, inp.draw(*s.regrain)), mask)


def faceswap(inp: FakeInputs) -> Tensor:
    """FaceSwap (github.com/MarekKowalski/FaceSwap, as in FF++: https://arxiv.org/abs/1901.08971): a
    graphics method that fits a 3-D model to landmarks and projects the donor's texture, pasted inside the
    landmarks' convex hull.

    Traces: sharper, boxier seam, weaker colour correction, a small misregistration of the pasted face.
    """
    s = inp.style
    donor = _synth_resolution(render(inp.donor, inp.res), inp.draw(0.75, 1.0))
    shift = torch.stack([inp.draw(-1.0, 1.0, 0.5), inp.draw(-1.0, 1.0, 0.5)], dim=1) * (2.0 / inp.res)
    donor = _warp(donor, shift[:, :, None, None].expand(-1, -1, inp.res, inp.res))
    feather, grow = inp.draw(*s.feather, 0.5), inp.draw(0.95, 1.1, 0.3)
    mask = landmark_mask(inp.scene, inp.res, "inner", feather, grow, power=4.0)
    donor = _colour_match(donor, inp.image, mask, 0.6 * inp.draw(*s.colour_match, 0.3).clamp(0, 1))
    return _blend(inp.image, _regrain(inp, donor, inp.draw(*s.regrain)), mask)


def _gauss(cv: Canvas, cu: Tensor, cvv: Tensor, ru: Tensor, rv: Tensor) -> Tensor:
    return torch.exp(-0.5 * (((cv.u - cu) / ru) ** 2 + ((cv.v - cvv) / rv) ** 2))


def face2face(inp: FakeInputs) -> Tensor:
    """Face2Face (Thies et al., CVPR 2016, https://arxiv.org/abs/2007.14808): re-enacts a source actor's
    expression on the target by deforming the target's own face; here a smooth warp (``grid_sample``) opens
    or closes the mouth, lifts its corners and narrows the eyes.

    Traces: resampled (locally smoothed) pixels and camera noise where the warp acts, only inside the face.
    """
    cv, s, a = Canvas(inp.scene, inp.res), inp.scene, inp.style.artifact
    du, dv = torch.zeros_like(cv.u), torch.zeros_like(cv.u)
    mouth = _gauss(cv, _c(s["yaw"] * 0.25), _c(s["mouth_y"]), _c(s["mouth_rx"]), _c(s["mouth_rx"] * 0.8))
    dv = dv + mouth * (cv.v - _c(s["mouth_y"])) * _c(a * inp.draw(-1.5, 1.5, 0.1))  # open / close
    dv = dv - mouth * (cv.uf / _c(s["mouth_rx"])) ** 2 * _c(a * inp.draw(-0.1, 0.1, 0.1))  # smile
    du = du + mouth * cv.uf * _c(a * inp.draw(-0.6, 0.6, 0.1))  # widen / narrow
    eyes = torch.exp(
        -0.5
        * (
            ((cv.uf.abs() - _c(s["eye_dx"])) / _c(s["eye_rx"])) ** 2
            + ((cv.v - _c(s["eye_y"])) / _c(s["eye_rx"] * 0.7)) ** 2
        )
    )
    dv = dv + eyes * (cv.v - _c(s["eye_y"])) * _c(a * inp.draw(-0.8, 0.4, 0.1))
    cos, sin = torch.cos(_c(s["roll"])), torch.sin(_c(s["roll"]))
    flow = torch.cat([cos * du - sin * dv, sin * du + cos * dv], dim=1) * cv.size  # face -> image units
    return _warp(inp.image, flow).clamp(0, 1)


def neuraltextures(inp: FakeInputs) -> Tensor:
    """NeuralTextures (Thies et al., SIGGRAPH 2019, https://arxiv.org/abs/1904.12356): the mouth region is
    re-rendered by a neural renderer from a learned texture with the new expression, then blended in.

    Traces: a smoothed mouth with a faint high-frequency texture pattern and no camera noise.
    """
    s, a = inp.style, inp.style.artifact
    scene = dict(inp.scene)
    scene["mouth_open"] = inp.draw(0.0, 0.8, 0.2)
    scene["smile"] = inp.draw(-0.3, 1.0, 0.2)
    mouth = _synth_resolution(render(scene, inp.res), inp.draw(*s.synth_scale))
    texture = torch.randn(len(mouth), 3, inp.res // 2, inp.res // 2, generator=inp.generator).to(mouth.device)
    mouth = mouth + a * 0.05 * F.interpolate(texture, scale_factor=2, mode="nearest")
    mask = landmark_mask(inp.scene, inp.res, "mouth", inp.draw(*s.feather, 0.5), inp.draw(0.9, 1.1, 0.3))
    return _blend(inp.image, _regrain(inp, mouth, inp.draw(*s.regrain)), mask)


def _checkerboard(low: Tensor, strength: Tensor) -> Tensor:
    """2x up-sampling by a stride-2 transposed convolution with a 3-tap kernel whose taps overlap unevenly
    (Odena et al., Distill 2016, https://distill.pub/2016/deconv-checkerboard/): the gain alternates
    between odd and even pixels, a period-2 checkerboard on top of bilinear interpolation."""
    up = F.interpolate(low, scale_factor=2, mode="bilinear", align_corners=False)
    res = up.shape[-1]
    odd = (torch.arange(res, device=up.device) % 2).to(up.dtype)
    gain = 1 + _c(strength) * odd.view(1, 1, -1, 1)
    return up * gain * (1 + _c(strength) * odd.view(1, 1, 1, -1))


def gan_upsample(inp: FakeInputs) -> Tensor:
    """GAN-synthesised face (e.g. StyleGAN-era face generators; Karras et al., CVPR 2019,
    https://arxiv.org/abs/1812.04948): the face is generated at half resolution and up-sampled by nearest
    neighbour or a transposed convolution, then blended into the frame.

    Traces: blocky or checkerboard periodic patterns and no camera noise inside the face.
    """
    s = inp.style
    full = render(inp.scene, inp.res)
    low = F.avg_pool2d(full, 2)
    nearest = F.interpolate(low, scale_factor=2, mode="nearest")
    face = torch.where(_c(inp.draw(0.0, 1.0) < 0.5), nearest, _checkerboard(low, inp.draw(0.04, 0.12, 0.3)))
    face = torch.lerp(full, face, s.artifact)  # a better generator: fewer up-sampling traces
    mask = landmark_mask(inp.scene, inp.res, "face", inp.draw(*s.feather, 0.5), inp.draw(0.9, 1.0, 0.3))
    return _blend(inp.image, _regrain(inp, face, inp.draw(*s.regrain)), mask)


def sbi(inp: FakeInputs) -> Tensor:
    """Self-blended images (Shiohara & Yamasaki, CVPR 2022, https://arxiv.org/abs/2204.08376): a colour-,
    sharpness- and scale-jittered copy of the frame is blended onto itself through a deformed face mask.

    Traces: blending boundaries and small colour/scale inconsistencies, with no foreign identity.
    """
    a, img = inp.style.artifact, inp.image
    gain = torch.stack([1 + a * inp.draw(-0.08, 0.08) for _ in range(3)], dim=1)[:, :, None, None]
    src = (img * gain + _c(a * inp.draw(-0.04, 0.04))).clamp(0, 1)
    src = torch.lerp(src, F.avg_pool2d(src, 3, 1, 1, count_include_pad=False), _c(a * inp.draw(0.0, 1.0)))
    scale = _c(1 + a * inp.draw(-0.04, 0.04))
    shift = torch.stack([inp.draw(-0.03, 0.03), inp.draw(-0.03, 0.03)], dim=1)[:, :, None, None] * a
    cv = Canvas(inp.scene, inp.res)
    flow = torch.cat([cv.x.expand_as(cv.u), cv.y.expand_as(cv.u)], dim=1) * (1 - 1 / scale) + shift
    src = _warp(src, flow)
    coarse = torch.randn(len(img), 1, 4, 4, generator=inp.generator).to(img.device)
    deform = F.interpolate(coarse, size=inp.res, mode="bilinear", align_corners=False)  # elastic mask edge
    mask = landmark_mask(inp.scene, inp.res, "face", inp.draw(1.0, 5.0, 0.3), inp.draw(0.8, 1.0, 0.3))
    # SBI draws the blend ratio from {0.25, 0.5, 0.75, 1, 1, 1}
    ratio = (inp.draw(0.0, 6.0).floor().clamp(max=5) * 0.25 + 0.25).clamp(max=1.0)
    return _blend(img, src, (mask * (1 + 0.15 * deform)).clamp(0, 1) * _c(ratio))


#: manipulation name (as used in ``methods``) -> function
METHODS: dict[str, Callable[[FakeInputs], Tensor]] = {
    "deepfakes": deepfakes,
    "faceswap": faceswap,
    "face2face": face2face,
    "neuraltextures": neuraltextures,
    "gan-upsample": gan_upsample,
    "sbi": sbi,
}
#: the methods that paste another identity's face and so need a donor scene
NEEDS_DONOR = frozenset({"deepfakes", "faceswap"})
