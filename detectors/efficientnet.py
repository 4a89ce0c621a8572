"""EfficientNet-B4 (Tan & Le, "EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks",
ICML 2019, https://arxiv.org/abs/1905.11946), the backbone of the strongest FaceForensics++ / DFDC image
detectors (Bonettini et al., ICPR 2020, https://arxiv.org/abs/2004.07676) and of DeepfakeBench.

timm's ``efficientnet_b4`` (ImageNet normalisation from its pretrained_cfg). Native input 380 x 380, the
B4 resolution of the paper (Table 1 scaling); timm's own weights were trained at 320 and tested at 384,
DeepfakeBench trains it at 256: all work, as the network ends in global average pooling. The feature z is
the 1792-channel pooled output of the head convolution (after SiLU).
"""

from __future__ import annotations

from detectors.base import DETECTORS, Head
from detectors.timm_backbone import TimmDetector
from detectors.weights import build_with_weights


class EfficientNetB4(TimmDetector):
    """timm ``efficientnet_b4``, 17.5 M backbone parameters; ``embed()`` -> [N, 1792]."""

    timm_name = "efficientnet_b4"
    input_size = 380


@DETECTORS.register("efficientnet-b4")
def efficientnet_b4(
    head: Head = Head.LINEAR, scale: float = 64.0, weights: str | None = None, pretrained: bool = False
) -> EfficientNetB4:
    """EfficientNet-B4 (Tan & Le, ICML 2019, https://arxiv.org/abs/1905.11946), 380 px.

    ``weights``: a local state_dict file (the whole detector's or timm's backbone); ``pretrained``: timm's
    ImageNet weights (needs internet).
    """
    return build_with_weights(lambda: EfficientNetB4(head, scale, pretrained), weights)
