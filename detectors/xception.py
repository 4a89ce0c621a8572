"""Xception (Chollet, "Xception: Deep Learning with Depthwise Separable Convolutions", CVPR 2017,
https://arxiv.org/abs/1610.02357): the detector baseline of FaceForensics++ (Roessler et al., ICCV 2019,
https://arxiv.org/abs/1901.08971).

timm's ``legacy_xception`` is the network FaceForensics++ trained: Cadene's ``pretrainedmodels`` port of
the original Keras Xception and its ImageNet weights (timm's ``xception41`` / ``xception65`` are the
different "aligned" Xception of DeepLab v3+). Native input 299 x 299, normalised with mean = std = 0.5 per
channel (timm's pretrained_cfg, as in FaceForensics++'s code). The feature z is the 2048-channel
globally pooled output of the exit flow (after its final ReLU, so z >= 0).
"""

from __future__ import annotations

from detectors.base import DETECTORS, Head
from detectors.timm_backbone import TimmDetector
from detectors.weights import build_with_weights


class Xception(TimmDetector):
    """timm ``legacy_xception``, 20.8 M backbone parameters; ``embed()`` -> [N, 2048]."""

    timm_name = "legacy_xception"
    input_size = 299


@DETECTORS.register("xception")
def xception(
    head: Head = Head.LINEAR, scale: float = 64.0, weights: str | None = None, pretrained: bool = False
) -> Xception:
    """Xception (Chollet, CVPR 2017, https://arxiv.org/abs/1610.02357), the FaceForensics++ baseline, 299 px.

    ``weights``: a local state_dict file (the whole detector's or timm's backbone); ``pretrained``: timm's
    ImageNet weights (needs internet).
    """
    return build_with_weights(lambda: Xception(head, scale, pretrained), weights)
