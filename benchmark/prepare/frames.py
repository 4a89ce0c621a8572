"""Frames of a video, sampled evenly, and the face crop DeepfakeBench uses.

DeepfakeBench (Yan et al., NeurIPS 2023 Datasets and Benchmarks, https://arxiv.org/abs/2307.01426)
preprocesses every data set the same way: N frames evenly spaced over the video (32), the largest face
only, a square crop of 1.3 times the face box around its centre (clipped to the frame), and one fixed
resolution. Videos are decoded with PyAV (its wheels bundle FFmpeg); frames come out as RGB whatever the
pixel format of the file (grey, YUV 4:2:0 / 4:4:4, 10-bit).
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
from PIL import Image

from afsl_bench.prepare.faces import Face


class UnreadableVideo(Exception):
    """A video PyAV cannot open or decode (truncated, not a video, no video stream)."""


def even_indices(total: int, n: int) -> list[int]:
    """``n`` frame numbers evenly spaced over ``total`` frames (all of them when the video is shorter)."""
    if total <= n:
        return list(range(total))
    return sorted({round(i) for i in np.linspace(0, total - 1, n)})


def _count_frames(path: Path) -> int:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return stream.frames or sum(1 for _ in container.decode(stream))


def sample_frames(path: Path, n: int) -> tuple[list[int], np.ndarray]:
    """The frame numbers and RGB frames [T,H,W,3] of ``n`` frames evenly spaced over the video."""
    try:
        wanted = even_indices(_count_frames(path), n)
        if not wanted:
            raise UnreadableVideo("the video holds no frames")
        picked = set(wanted)
        frames, numbers = [], []
        with av.open(str(path)) as container:
            for number, frame in enumerate(container.decode(video=0)):
                if number in picked:
                    frames.append(frame.to_ndarray(format="rgb24"))
                    numbers.append(number)
                if number >= wanted[-1]:
                    break
    except (av.error.FFmpegError, IndexError, OSError, ValueError) as err:
        raise UnreadableVideo(f"{type(err).__name__}: {err}") from None
    if not frames:
        raise UnreadableVideo("no decodable video frames")
    return numbers, np.stack(frames)


def square_around(face: Face, scale: float, height: int, width: int) -> tuple[int, int, int]:
    """(left, top, side) of the square of ``scale`` x the face box's long side, clipped to the frame."""
    side = int(max(face.x1 - face.x0, face.y1 - face.y0) * scale)
    cx, cy = (face.x0 + face.x1) / 2, (face.y0 + face.y1) / 2
    left = min(max(int(cx - side / 2), 0), max(width - 1, 0))
    top = min(max(int(cy - side / 2), 0), max(height - 1, 0))
    side = max(min(side, width - left, height - top), 1)
    return left, top, side


def centre_square(height: int, width: int) -> tuple[int, int, int]:
    """The fallback crop of a frame without a face: its centre square."""
    side = min(height, width)
    return (width - side) // 2, (height - side) // 2, side


def crop(frame: np.ndarray, square: tuple[int, int, int], size: int) -> np.ndarray:
    """uint8 [3,size,size]: the square (left, top, side) of an RGB frame [H,W,3], resized (antialiased)."""
    left, top, side = square
    patch = Image.fromarray(frame[top : top + side, left : left + side])
    return np.asarray(patch.resize((size, size), Image.BILINEAR)).transpose(2, 0, 1)
