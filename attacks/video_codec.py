"""H.264 video compression as an "attack": a libx264 encode + decode round trip through PyAV (FFmpeg).

The video-compression perturbation of DeeperForensics-1.0 (Jiang et al., CVPR 2020,
https://arxiv.org/abs/2001.03024; their ``add_distortion_to_video.py`` runs ``ffmpeg -i in -crf C out``,
https://github.com/EndlessSora/DeeperForensics-1.0/tree/master/perturbation), with their level table:
constant rate factor 30, 32, 35, 38, 40 for severity 1..5 (0 is the identity and returns the input bit for
bit). Encoder settings are FFmpeg's libx264 defaults, as their command line: preset ``medium``, yuv420p.

- Images [N,3,H,W]: each image is encoded as its own one-frame video (an intra frame), so nothing leaks
  between unrelated samples of a batch.
- Clips [N,T,3,H,W]: each clip is encoded as one T-frame video (inter-frame prediction within the clip).
- yuv420p needs an even width and height: odd sizes are padded by edge replication and cropped back.
- Encoder and decoder run on one thread each: libx264's sliced threads cut a picture into one slice per
  thread, so with FFmpeg's automatic thread count the output of a 224-px image depended on the machine's
  core count (and a CI run once saw a clip's first frame differ between two identical calls). One thread
  makes the round trip a function of its input alone, on any machine.
- Pixels are rounded to 8 bits and converted RGB -> YUV 4:2:0 -> RGB by FFmpeg's swscale, which loses a
  little even at a low CRF. No gradient: EOT-PGD passes the codec straight through (BPDA).

PyAV (``av``, wheels with FFmpeg and libx264) is a dependency of afsl-bench; a clear error says
``pip install av`` where it is missing.

Arguments (defaults): severity 3 (CRF 35), direction both.

Example::

    x_h264 = VideoCodec(severity=3)(model, x, y)   # the model is not used
    clips = h264(clips, 5)                         # the function: [N,T,3,H,W] at CRF 40
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from types import ModuleType
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from afsl_bench.attacks.base import ATTACKS, Attack
from afsl_bench.attacks.distortions import LEVELS, check_severity, from_uint8_hwc, to_uint8_hwc
from afsl_bench.attacks.ops import check_vocabulary
from afsl_bench.attacks.vocabulary import Direction
from afsl_bench.core.errors import ConfigError

#: x264 constant rate factor per severity (DeeperForensics VC); larger is worse, 23 is FFmpeg's default
CRF = dict(zip(LEVELS, (30, 32, 35, 38, 40), strict=True))
#: FFmpeg's default libx264 preset, which DeeperForensics' command line used
PRESET = "medium"


def require_av() -> ModuleType:
    """PyAV, or a ConfigError saying how to install it."""
    try:
        import av
    except ImportError as err:
        raise ConfigError(
            f"video-codec needs PyAV (FFmpeg bindings), which is not installed ({err}); pip install av"
        ) from err
    return av


def h264(x: torch.Tensor, level: int, generator: torch.Generator | None = None) -> torch.Tensor:
    return x if level == 0 else h264_at(x, CRF[level])


def h264_at(x: torch.Tensor, crf: int) -> torch.Tensor:
    """libx264 round trip of [N,3,H,W] (one video per image) or [N,T,3,H,W] (one video per clip)."""
    if x.dim() not in (4, 5) or x.shape[-3] != 3:
        raise ValueError(f"video-codec expects [N,3,H,W] images or [N,T,3,H,W] clips, got {tuple(x.shape)}")
    clips = x if x.dim() == 5 else x.unsqueeze(1)
    n, t, _, height, width = clips.shape
    pixels = to_uint8_hwc(clips.reshape(n * t, 3, height, width)).reshape(n, t, height, width, 3)
    # yuv420p halves the chroma resolution: pad to even sizes by edge replication, crop back afterwards
    pixels = np.pad(pixels, ((0, 0), (0, 0), (0, height % 2), (0, width % 2), (0, 0)), mode="edge")
    decoded = np.stack([round_trip(clip, crf) for clip in pixels])[:, :, :height, :width]
    return from_uint8_hwc(decoded, x).reshape(x.shape)


def round_trip(frames: np.ndarray, crf: int) -> np.ndarray:
    """Encode [T,H,W,3] uint8 RGB frames as one H.264 stream and decode it back (even H and W)."""
    av = require_av()
    encoder = av.CodecContext.create("libx264", "w")
    encoder.thread_count = 1  # one slice: the bitstream must not depend on the machine's core count
    encoder.width, encoder.height, encoder.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
    encoder.time_base = Fraction(1, 25)
    encoder.options = {"crf": str(crf), "preset": PRESET}
    packets = []
    for index, image in enumerate(frames):
        frame = av.VideoFrame.from_ndarray(image, format="rgb24")
        frame.pts = index
        packets += encoder.encode(frame)  # PyAV converts rgb24 to the encoder's yuv420p
    packets += encoder.encode(None)  # flush the frames the encoder buffered (look-ahead, B-frames)
    decoder = av.CodecContext.create("h264", "r")
    decoder.thread_count = 1
    decoded = [f for packet in [*packets, None] for f in decoder.decode(packet)]
    if len(decoded) != len(frames):
        raise RuntimeError(f"H.264 round trip returned {len(decoded)} frames for {len(frames)}")
    return np.stack([f.to_ndarray(format="rgb24") for f in decoded])


@ATTACKS.register("video-codec")
@dataclass(frozen=True)
class VideoCodec(Attack):
    """H.264 (libx264) round trip at CRF 30, 32, 35, 38, 40 for severity 1..5 (DeeperForensics VC)."""

    requires_grad: ClassVar[bool] = False

    severity: int = 3
    direction: Direction = Direction.BOTH

    def __post_init__(self) -> None:
        check_severity(self.severity)
        check_vocabulary(direction=self.direction)
        require_av()  # fail at construction, not after the first batch

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return h264(x, self.severity)
