"""ResNet-50 (He et al., "Deep Residual Learning for Image Recognition", CVPR 2016,
https://arxiv.org/abs/1512.03385): the generic ImageNet backbone of deepfake-detection baselines.

timm's ``resnet50`` (bottleneck blocks, ImageNet normalisation from its pretrained_cfg), native input
224 x 224. The feature z is the 2048-channel globally pooled output of the last stage (after ReLU).
"""

from __future__ import annotations

from detectors.base import DETECTORS, Head
from detectors.timm_backbone import TimmDetector
from detectors.weights import build_with_weights


class ResNet50(TimmDetector):
    """timm ``resnet50``, 23.5 M backbone parameters; ``embed()`` -> [N, 2048]."""

    timm_name = "resnet50"
    input_size = 224


@DETECTORS.register("resnet50")
def resnet50(
    head: Head = Head.LINEAR, scale: float = 64.0, weights: str | None = None, pretrained: bool = False
) -> ResNet50:
    """ResNet-50 (He et al., CVPR 2016, https://arxiv.org/abs/1512.03385), ImageNet backbone, 224 px.

    ``weights``: a local state_dict file (the whole detector's or timm's backbone); ``pretrained``: timm's
    ImageNet weights (needs internet).
    """
    return build_with_weights(lambda: ResNet50(head, scale, pretrained), weights)
