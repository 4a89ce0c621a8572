"""A recurrent-convolutional video detector (Sabir et al., "Recurrent Convolutional Strategies for Face
Manipulation Detection in Videos", CVPR-W 2019, https://arxiv.org/abs/1905.00582).

A frame backbone (any registered image detector, a parameter: ``tiny-cnn`` by default, ``resnet50`` or
``xception`` as in the paper's ResNet / DenseNet backbones) embeds each of the T frames of a clip; its own
normalisation applies per frame and its head is dropped. The frame features are then pooled over time:
``gru``, a bidirectional GRU whose last forward and backward hidden states, concatenated, are the clip
feature z (the paper's best variant), or ``mean``, temporal average pooling (the frame-averaging baseline).
Input: clips [N, T, 3, H, W] in [0, 1], any T >= 1; ``input_size`` is the backbone's native resolution.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum

import torch
from torch import nn

from afsl_bench.core.errors import ConfigError
from afsl_bench.core.registry import Buildable
from afsl_bench.detectors.base import DETECTORS, Detector, Head, require_clips
from afsl_bench.detectors.weights import WEIGHTS_HINT, Weights, build_with_weights

torch.fx.wrap("require_clips")  # traced as one call (batch-norm folding), see require_clips


class Temporal(StrEnum):
    GRU = "gru"
    MEAN = "mean"


class BiGRU(nn.Module):
    """[N, T, D] -> [N, 2 * hidden]: the final hidden states of a bidirectional GRU, concatenated."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.out_dim = 2 * hidden
        self.gru = nn.GRU(dim, hidden, batch_first=True, bidirectional=True)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        # cuDNN's RNN backward runs only in training mode; attacks take input gradients of eval models
        with cudnn_enabled(self.training):
            _, last = self.gru(frames)
        return torch.cat([last[0], last[1]], dim=1)


@contextmanager
def cudnn_enabled(enabled: bool) -> Iterator[None]:
    """Switch cuDNN off (never on) for a block, leaving its other flags alone (``cudnn.flags`` resets them)."""
    before = torch.backends.cudnn.enabled
    torch.backends.cudnn.enabled = before and enabled
    try:
        yield
    finally:
        torch.backends.cudnn.enabled = before


class TemporalMean(nn.Module):
    """[N, T, D] -> [N, D]: average over the frames."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.out_dim = dim

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return frames.mean(dim=1)


TEMPORAL_POOLS: dict[Temporal, type[BiGRU | TemporalMean]] = {
    Temporal.GRU: BiGRU,
    Temporal.MEAN: TemporalMean,
}


class CnnGru(Detector):
    """Frame backbone + temporal pooling; ``embed()`` -> [N, 2 * hidden] (gru) or [N, backbone dim] (mean)."""

    takes_clips = True

    def __init__(
        self, backbone: Detector, temporal: Temporal | str = Temporal.GRU, hidden: int = 128,
        head: Head | str = Head.LINEAR, scale: float = 64.0,
    ) -> None:  # fmt: skip
        pool = TEMPORAL_POOLS[Temporal(temporal)](backbone.feature_dim, hidden)
        # identity normalisation here: the backbone normalises each frame with its own statistics
        super().__init__(pool.out_dim, head, scale, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
        backbone.head = nn.Identity()  # only its features are used; no dead parameters in the optimiser
        self.backbone = backbone
        self.temporal = pool
        self.input_size = backbone.input_size

    def features(self, x: torch.Tensor) -> torch.Tensor:
        require_clips(x, "cnn-gru")
        n, t = x.shape[:2]
        frames = self.backbone.embed(x.flatten(0, 1)).view(n, t, -1)
        return self.temporal(frames)


def frame_backbone(name: str, pretrained: bool) -> Detector:
    """The registered image detector ``name``, with its pretrained weights if asked (and it has them)."""
    try:
        params = DETECTORS.params_of(name)
    except ConfigError as err:
        raise ConfigError(f"cnn-gru backbone: {err}") from None
    if pretrained and "pretrained" not in params:
        raise ConfigError(f"cnn-gru backbone '{name}' has no pretrained weights; pass {WEIGHTS_HINT}")
    model = DETECTORS.build(name, **({"pretrained": True} if pretrained else {}))
    if model.takes_clips:
        raise ConfigError(
            f"cnn-gru backbone '{name}' is a video detector; give an image detector (tiny-cnn, ...)"
        )
    return model


@DETECTORS.register("cnn-gru")
@dataclass(frozen=True)
class CnnGruConfig(Buildable):
    """Recurrent-convolutional video detector (Sabir et al., CVPR-W 2019, https://arxiv.org/abs/1905.00582).

    A registered image detector ``backbone`` per frame, then a bidirectional GRU (``temporal=gru``, z of
    2 * ``hidden``) or temporal mean pooling (``mean``). ``pretrained``: the backbone's pretrained weights
    (needs internet); ``weights``: a local state_dict file of the whole video detector.
    """

    backbone: str = "tiny-cnn"
    temporal: Temporal = Temporal.GRU
    hidden: int = 128
    head: Head = Head.LINEAR
    scale: float = 64.0
    weights: Weights = None
    pretrained: bool = False

    def __post_init__(self) -> None:
        if self.hidden < 1:
            raise ValueError(f"hidden must be >= 1, got {self.hidden}")

    def build(self) -> CnnGru:
        def build() -> CnnGru:
            backbone = frame_backbone(self.backbone, self.pretrained)
            return CnnGru(backbone, self.temporal, self.hidden, self.head, self.scale)

        return build_with_weights(build, self.weights)
