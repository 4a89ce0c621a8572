"""Meso-4 (Afchar et al., "MesoNet: a Compact Facial Video Forgery Detection Network", WIFS 2018,
https://arxiv.org/abs/1809.00888).

Four conv layers (8, 8, 16, 16 filters of 3x3, 5x5, 5x5, 5x5; each conv -> ReLU -> batch norm -> max-pool),
then dropout 0.5, a 16-unit dense layer with LeakyReLU(0.1), dropout 0.5 and the classifier: 27,977
trainable parameters at the native 256x256 input, as in the paper. The paper's last 4x4 max-pool is an
adaptive max-pool to 8x8 here: identical at 256 px (32x32 -> 8x8) and resolution-agnostic elsewhere (at 64 px
it keeps the 8x8 map). Inputs are [0, 1] images without mean/std normalisation, as in the authors' code
(Keras ``rescale=1/255``). The feature z is the 16-unit hidden layer; the two-logit head replaces the
paper's single sigmoid unit.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from afsl_bench.core.registry import Buildable
from afsl_bench.detectors.base import DETECTORS, Detector, Head
from afsl_bench.detectors.weights import Weights, build_with_weights


def meso_conv(c_in: int, c_out: int, kernel: int, pool: nn.Module) -> list[nn.Module]:
    conv = nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2)
    return [conv, nn.ReLU(inplace=True), nn.BatchNorm2d(c_out), pool]


def meso_head(dropout: float) -> list[nn.Module]:
    """MesoNet's dense part on the 16 x 8 x 8 map: dropout, 16 units with leaky ReLU, dropout."""
    return [
        nn.Flatten(),
        nn.Dropout(dropout),
        nn.Linear(16 * 8 * 8, 16),
        nn.LeakyReLU(0.1),
        nn.Dropout(dropout),
    ]


class MesoNet(Detector):
    """The MesoNet family: ``stem()`` builds the layers down to 16 channels, then a 16-filter 5x5 conv with an
    adaptive max-pool to 8x8 and the dense part; ``embed()`` -> [N, 16]. ``dropout``: the paper's 0.5."""

    input_size = 256

    def __init__(self, dropout: float = 0.5, head: Head | str = Head.LINEAR, scale: float = 64.0):
        super().__init__(feature_dim=16, head=head, scale=scale, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
        # built after the head, in layer order: the seed fixes the same initial weights as always
        self.body = nn.Sequential(
            *self.stem(), *meso_conv(16, 16, 5, nn.AdaptiveMaxPool2d(8)), *meso_head(dropout)
        )

    def stem(self) -> list[nn.Module]:
        raise NotImplementedError

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class Meso4(MesoNet):
    """Meso-4: three conv layers (8, 8, 16 filters) before the shared 16-filter layer."""

    def stem(self) -> list[nn.Module]:
        return [
            *meso_conv(3, 8, 3, nn.MaxPool2d(2)),
            *meso_conv(8, 8, 5, nn.MaxPool2d(2)),
            *meso_conv(8, 16, 5, nn.MaxPool2d(2)),
        ]


@DETECTORS.register("meso4")
@dataclass(frozen=True)
class Meso4Config(Buildable):
    """Meso-4 (Afchar et al., WIFS 2018, https://arxiv.org/abs/1809.00888): 28k-parameter deepfake CNN.

    ``weights``: a local state_dict file, or ``deepfakebench:PATH`` (DeepfakeBench's Meso4).
    """

    dropout: float = 0.5
    head: Head = Head.LINEAR
    scale: float = 64.0
    weights: Weights = None

    def __post_init__(self) -> None:
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")

    def build(self) -> Meso4:
        build = lambda: Meso4(self.dropout, self.head, self.scale)
        return build_with_weights(build, self.weights, "meso4", {"head": self.head})
