"""Published detector checkpoints by source: ``--set detector.weights=SOURCE:PATH`` (one module per source,
one ``Layout`` table per detector; the rules in ``base``). A plain path loads an afsl-bench, timm or
torchvision state dict by name (``detectors/weights.py``)."""

from afsl_bench.detectors.sources import deepfakebench, faceforensics, mesonet  # noqa: F401  (registration)
from afsl_bench.detectors.sources.base import SOURCES, Layout, Source

__all__ = ["SOURCES", "Layout", "Source"]
