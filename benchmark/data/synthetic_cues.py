"""Forgery cues with a guaranteed amplitude, and their benign look-alikes on real frames (data version 2).

A fake of data version 2 is its own real frame forged (FF++'s pairing: same identity, pose and camera),
carrying at least two cues of different kinds, each with an amplitude bounded below:

- ``resampling_trace``: the generator's up-sampling pattern over the regenerated face crop, a square wave
  of period ``PERIODS`` (2 pixels) with a random phase per axis (Odena et al., Distill 2016; the spectral peaks
  of Durall et al., CVPR 2020), amplitude ``Cues.trace`` (a texture cue);
- ``colour_mismatch``: the pasted face's colour differs from the frame's (identity swaps, Li et al.,
  "Face X-ray", CVPR 2020): a constant shift of the inner face along a random colour direction, amplitude
  ``Cues.colour`` in its largest channel (a low-frequency cue);

Real frames carry the cheap statistics' look-alikes, from the camera, before any forgery: its own
resampling pattern over the whole frame (a scaler or demosaicing; random period and phase, amplitude
``Cues.camera_trace``) and sharpening (``Cues.sharpen``), so that "has a periodic pattern" or "is sharp" is
no label. Where the bounds keep the two classes apart is ``docs/data-design.md``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from afsl_bench.data.synthetic_faces import landmark_mask

#: periods (pixels) of the resampling patterns: the 2x up-sampling of a generator's decoder. Periods 3 and 4
#: were tried: PGD-AT 8/255 did not learn a trace of random period {2, 3, 4} (nor {2, 4}) within 16 epochs
#: on the `synthetic` preview's draw (clean 50 %, always "fake"), where period 2 alone was learnt by epoch 4
#: (docs/data-design.md); the phase stays random (the pattern's sign)
PERIODS = (2,)


@dataclass(frozen=True)
class Cues:
    """Amplitude ranges (pixel units in [0, 1]); each sample draws uniformly from its range."""

    trace: tuple[float, float]  # the forger's resampling trace over the face crop
    colour: tuple[float, float]  # the inner face's colour shift (largest channel)
    camera_trace: tuple[float, float]  # the camera's resampling pattern over every frame (reals and fakes)
    sharpen: tuple[float, float]  # the camera's unsharp-mask amount


def _c(t: Tensor) -> Tensor:
    return t.reshape(-1, 1, 1, 1)


def _draw(n: int, lo: float, hi: float, g: torch.Generator, frames: int = 1) -> Tensor:
    """Uniform [lo, hi], one draw per clip of ``frames`` consecutive rows, repeated over its frames."""
    return (lo + (hi - lo) * torch.rand(n // frames, generator=g)).repeat_interleave(frames)


def square_wave(n: int, res: int, g: torch.Generator, frames: int = 1) -> Tensor:
    """[N,1,res,res] separable +-1 patterns, each of a random period in ``PERIODS`` and random phases (one
    pattern per clip of ``frames`` consecutive rows)."""
    n //= frames
    period = torch.tensor(PERIODS)[torch.randint(len(PERIODS), (n,), generator=g)]
    phase = torch.randint(0, 4, (n, 2), generator=g) % period[:, None]
    pos = torch.arange(res)
    rows = (((pos[None] + phase[:, :1]) % period[:, None]) * 2 < period[:, None]).float() * 2 - 1
    cols = (((pos[None] + phase[:, 1:]) % period[:, None]) * 2 < period[:, None]).float() * 2 - 1
    return (rows[:, None, :, None] * cols[:, None, None, :]).repeat_interleave(frames, dim=0).contiguous()


def face_box(scene: dict[str, Tensor], res: int) -> Tensor:
    """[N,1,res,res] 0/1 mask of the face's bounding box: the aligned crop a swap pipeline regenerates."""
    box = landmark_mask(scene, res, "face", 0.5, 1.0) > 0.5
    return (box.any(dim=3, keepdim=True) & box.any(dim=2, keepdim=True)).float()


def camera(img: Tensor, cues: Cues, g: torch.Generator, frames: int = 1) -> Tensor:
    """The camera's look-alikes of the cheap cues on a captured frame: sharpening, then resampling (the
    same camera over a clip of ``frames`` consecutive rows)."""
    n, res = len(img), img.shape[-1]
    blurred = F.avg_pool2d(img, 3, 1, 1, count_include_pad=False)
    img = img + _c(_draw(n, *cues.sharpen, g, frames)) * (img - blurred)
    return (img + _c(_draw(n, *cues.camera_trace, g, frames)) * square_wave(n, res, g, frames)).clamp(0, 1)


def resampling_trace(img: Tensor, scene: dict[str, Tensor], cues: Cues, g: torch.Generator,
                     frames: int = 1) -> Tensor:  # fmt: skip
    """The forger's up-sampling pattern over the regenerated face crop (replacing the camera's there)."""
    n, res = len(img), img.shape[-1]
    amplitude = _c(_draw(n, *cues.trace, g, frames))
    return (img + amplitude * square_wave(n, res, g, frames) * face_box(scene, res)).clamp(0, 1)


def colour_mismatch(img: Tensor, scene: dict[str, Tensor], cues: Cues, g: torch.Generator,
                    frames: int = 1) -> Tensor:  # fmt: skip
    """A constant colour shift of the inner face: a random direction scaled so its largest channel has the
    drawn amplitude (a soft one-pixel mask edge, as a paste); one shift per clip."""
    n, res = len(img), img.shape[-1]
    direction = torch.randn(n // frames, 3, generator=g).repeat_interleave(frames, dim=0)
    direction = direction / direction.abs().amax(dim=1, keepdim=True)
    shift = (direction * _draw(n, *cues.colour, g, frames)[:, None]).view(n, 3, 1, 1)
    mask = landmark_mask(scene, res, "inner", 1.0, 1.0)
    return (img + shift * mask).clamp(0, 1)


#: FaceForensics++-like forgers: a strong trace (2 to 3 x 2 eps at 8/255), a clear colour gap, and a camera
#: whose own pattern stays below the fakes' lower bound by more than 2 x 8/255
FFPP_CUES = Cues(
    trace=(32 / 255, 48 / 255), colour=(16 / 255, 32 / 255), camera_trace=(0.0, 12 / 255), sharpen=(0.0, 0.5)
)
#: Celeb-DF-like forgers: the same families rendered more carefully (weaker trace and gap, still above 2 eps)
HQ_CUES = Cues(
    trace=(20 / 255, 32 / 255), colour=(10 / 255, 20 / 255), camera_trace=(0.0, 8 / 255), sharpen=(0.0, 0.3)
)
