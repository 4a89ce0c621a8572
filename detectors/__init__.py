"""DETECTORS registry: one file per detector; each takes RGB in [0, 1] and returns two logits (1 = fake)."""

from detectors.base import DETECTORS, Detector, Head

from detectors import meso, resnet, tiny_cnn  # noqa: F401  (registration)

__all__ = ["DETECTORS", "Detector", "Head"]
