"""DETECTORS registry: one file per detector (the timm backbones: one table in ``timm_models``); each takes
RGB in [0, 1] and returns two logits (1 = fake)."""

from afsl_bench.detectors import (  # noqa: F401  (registration)
    cnn_gru,
    meso,
    meso_inception,
    r3d,
    resnet,
    timm_models,
    tiny_cnn,
)
from afsl_bench.detectors.base import DETECTORS, Detector, Head

__all__ = ["DETECTORS", "Detector", "Head"]
