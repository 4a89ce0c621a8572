"""Offline face detectors for ``afsl-bench prepare``, and the face track kept of their detections.

Both ship their models inside a PyPI wheel, so they work without a download:

- ``haar``: the Viola-Jones cascade (Viola and Jones, CVPR 2001,
  https://doi.org/10.1109/CVPR.2001.990517) of ``opencv-python-headless<5`` (``cv2.data.haarcascades``;
  OpenCV 5's headless wheel no longer ships the cascades). Fast, frontal faces only.
- ``mtcnn``: MTCNN (Zhang et al., IEEE SPL 2016, https://arxiv.org/abs/1604.02878) from facenet-pytorch
  2.6.0, whose metadata pins an old torch: install it with ``pip install --no-deps facenet-pytorch==2.6.0``.
  Slower, more robust to pose; its score is a probability.

A detector takes RGB uint8 frames [T,H,W,3] of one video and returns every candidate ``Face`` of each frame.
Large frames are searched at most ``DETECT_SIDE`` pixels on their long side (faces in FF++ / Celeb-DF
fill a good part of the frame), and the box is scaled back to the frame's pixels. ``track`` then keeps one
face per frame as real pipelines do: candidates below the detector's confidence threshold are dropped, and
the kept boxes follow one face through the video (FaceForensics++ tracks the largest face; a box far from
the previous frame's face, such as a background patch, is refused and the frame counts as having no face).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from afsl_bench.core.errors import ConfigError
from afsl_bench.core.registry import Registry

#: long side of the image the detectors search (speed; boxes are mapped back to full resolution)
DETECT_SIDE = 640

FaceFinder = Callable[[np.ndarray], list[list["Face"]]]
FACE_DETECTORS: Registry = Registry("face detector")
#: the default confidence below which a detection is not a face, per detector. MTCNN's score is a
#: probability (0.9 is the usual cut, e.g. in RetinaFace and DeepfakeBench-style pipelines); the Haar
#: cascade's is its last stage's level weight, where 1.0 drops the weakest accepted windows (a large
#: background patch the cascade accepted weakly scored 0.24: tests/test_prepare.py). Neither was tuned on real videos here (none can be downloaded): set
#: ``--min-score`` for your data.
MIN_SCORE = {"haar": 1.0, "mtcnn": 0.9}
#: the largest distance between a face's centre and the previous kept face's, in that face's widths
MAX_JUMP = 1.0


@dataclass(frozen=True)
class Face:
    """A face box in frame pixels (x0, y0) - (x1, y1) and the detector's confidence."""

    x0: float
    y0: float
    x1: float
    y1: float
    score: float

    @property
    def area(self) -> float:
        return max(self.x1 - self.x0, 0.0) * max(self.y1 - self.y0, 0.0)

    def scaled(self, factor: float) -> Face:
        return Face(self.x0 * factor, self.y0 * factor, self.x1 * factor, self.y1 * factor, self.score)


def largest(faces: list[Face]) -> Face | None:
    return max(faces, key=lambda f: f.area, default=None)


def _jump(face: Face, previous: Face) -> float:
    """Centre distance between two boxes in widths of ``previous``."""
    dx = (face.x0 + face.x1 - previous.x0 - previous.x1) / 2
    dy = (face.y0 + face.y1 - previous.y0 - previous.y1) / 2
    return float(np.hypot(dx, dy)) / max(previous.x1 - previous.x0, 1e-6)


def track(candidates: list[list[Face]], min_score: float, max_jump: float = MAX_JUMP) -> list[Face | None]:
    """One face per frame, or None: the confident candidates (score >= ``min_score``), followed from the
    anchor (the most confident of the frames' largest faces) forwards and backwards through the video,
    taking in each frame the candidate nearest the last kept face if it lies within ``max_jump`` of its
    width; other frames have no face."""
    confident = [[f for f in frame if f.score >= min_score] for frame in candidates]
    firsts = [(largest(frame), t) for t, frame in enumerate(confident) if frame]
    if not firsts:
        return [None] * len(candidates)
    anchor, start = max(firsts, key=lambda pair: pair[0].score)
    kept: list[Face | None] = [None] * len(candidates)
    kept[start] = anchor
    for order in (range(start + 1, len(candidates)), range(start - 1, -1, -1)):
        previous = anchor
        for t in order:
            near = min(confident[t], key=lambda f: _jump(f, previous), default=None)
            if near is not None and _jump(near, previous) <= max_jump:
                kept[t] = previous = near
    return kept


def shrink(frames: np.ndarray) -> tuple[np.ndarray, float]:
    """Frames resized so their long side is at most DETECT_SIDE, and the factor back to full size."""
    long_side = max(frames.shape[1:3])
    if long_side <= DETECT_SIDE:
        return frames, 1.0
    from PIL import Image

    factor = long_side / DETECT_SIDE
    size = (round(frames.shape[2] / factor), round(frames.shape[1] / factor))
    small = np.stack([np.asarray(Image.fromarray(f).resize(size, Image.BILINEAR)) for f in frames])
    return small, factor


def _missing(package: str, install: str) -> ConfigError:
    return ConfigError(f"the face detector needs {package}, which is not installed: {install}")


@functools.cache
def _haar_cascade():
    try:
        import cv2
    except ImportError:
        raise _missing("OpenCV", "pip install 'opencv-python-headless<5'") from None
    data = getattr(cv2, "data", None)
    if data is None:
        raise ConfigError(
            "this OpenCV has no cv2.data.haarcascades (OpenCV 5): pip install 'opencv-python-headless<5'"
        )
    return cv2, cv2.CascadeClassifier(data.haarcascades + "haarcascade_frontalface_default.xml")


@FACE_DETECTORS.register("haar")
def haar(frames: np.ndarray) -> list[list[Face]]:
    """OpenCV's frontal-face Haar cascade (Viola and Jones 2001); score: the cascade's level weight."""
    cv2, cascade = _haar_cascade()
    small, factor = shrink(frames)
    found: list[list[Face]] = []
    for frame in small:
        grey = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)  # histogram equalisation found fewer faces
        side = max(24, min(grey.shape) // 10)
        boxes, _, weights = cascade.detectMultiScale3(
            grey, scaleFactor=1.1, minNeighbors=4, minSize=(side, side), outputRejectLevels=True
        )
        faces = [Face(x, y, x + w, y + h, float(s)) for (x, y, w, h), s in zip(boxes, np.ravel(weights))]
        found.append([face.scaled(factor) for face in faces])
    return found


@functools.cache
def _mtcnn():
    try:
        from facenet_pytorch import MTCNN
    except ImportError:
        raise _missing("facenet-pytorch", "pip install --no-deps facenet-pytorch==2.6.0") from None
    return MTCNN(keep_all=True, device="cpu")


@FACE_DETECTORS.register("mtcnn")
def mtcnn(frames: np.ndarray) -> list[list[Face]]:
    """MTCNN (Zhang et al. 2016) from facenet-pytorch 2.6.0, on the CPU; score: face probability."""
    small, factor = shrink(frames)
    boxes, probs = _mtcnn().detect(list(small))
    found: list[list[Face]] = []
    for frame_boxes, frame_probs in zip(boxes, probs):
        faces = (
            []
            if frame_boxes is None
            else [Face(*map(float, b), float(p)) for b, p in zip(frame_boxes, frame_probs)]
        )
        found.append([face.scaled(factor) for face in faces])
    return found
