"""DETECTORS registry: one file per detector; each takes RGB in [0, 1] and returns two logits (1 = fake)."""

from detectors import (  # noqa: F401  (registration)
    cnn_gru,
    efficientnet,
    meso,
    meso_inception,
    r3d,
    resnet,
    resnet50,
    tiny_cnn,
    xception,
)
from detectors.base import DETECTORS, Detector, Head

__all__ = ["DETECTORS", "Detector", "Head"]
