"""A timm ImageNet backbone as a detector: the shared body of ``xception``, ``efficientnet-b4``, ``resnet50``.

timm (https://github.com/huggingface/pytorch-image-models) builds the network with its classifier removed
(``num_classes=0``), so it returns the globally average-pooled feature: that pooled vector is the feature z,
and the afsl-bench head (linear or cosine) reads it. Normalisation uses the mean / std of the model's timm
``pretrained_cfg`` (the statistics its ImageNet weights were trained with), as buffers inside the model.
The global pooling makes every backbone resolution-agnostic: ``input_size`` is the native resolution, but
any input of about 32 px or more works (the runner feeds images at the data set's resolution).
"""

from __future__ import annotations

import timm
import torch
from torch import nn

from detectors.base import Detector, Head
from detectors.weights import pretrained_download


def create_backbone(name: str, pretrained: bool) -> nn.Module:
    """timm model ``name`` without its classifier; ``pretrained`` downloads its weights (needs internet)."""
    with pretrained_download(f"timm '{name}'", "timm / huggingface"):
        return timm.create_model(name, pretrained=pretrained, num_classes=0)


class TimmDetector(Detector):
    """Subclasses set ``timm_name`` and ``input_size``; the feature z is the backbone's pooled output."""

    timm_name: str = ""

    def __init__(self, head: Head | str = Head.LINEAR, scale: float = 64.0, pretrained: bool = False) -> None:
        backbone = create_backbone(self.timm_name, pretrained)
        cfg = backbone.pretrained_cfg
        super().__init__(backbone.num_features, head, scale, mean=tuple(cfg["mean"]), std=tuple(cfg["std"]))
        self.backbone = backbone

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)
