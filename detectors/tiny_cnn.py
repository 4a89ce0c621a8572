"""A tiny convolutional detector: the fast CPU default of afsl-bench.

Plain 3x3 conv + batch-norm + ReLU blocks (the VGG recipe of Simonyan & Zisserman, ICLR 2015,
https://arxiv.org/abs/1409.1556, with batch norm from Ioffe & Szegedy, ICML 2015,
https://arxiv.org/abs/1502.03167), each downsampling by a stride-2 convolution (the all-convolutional net of
Springenberg et al., ICLR-W 2015, https://arxiv.org/abs/1412.6806), then global average pooling, so any input
resolution works. Sized (98k parameters at the defaults) so that adversarial training on a few thousand
64x64 images takes minutes on two CPU cores: stride-2 convolutions cost about a sixth of stride-1 convs
followed by max-pooling at the same widths. It is a stand-in for the large backbones of the
literature, not a competitor to them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from afsl_bench.core.registry import Buildable
from afsl_bench.detectors.base import DETECTORS, Detector, Head


def conv_block(c_in: int, c_out: int, *, relu: bool = True) -> list[nn.Module]:
    conv = nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=False)
    layers: list[nn.Module] = [conv, nn.BatchNorm2d(c_out)]
    return layers + [nn.ReLU(inplace=True)] if relu else layers


class TinyCNN(Detector):
    """``blocks`` stride-2 conv blocks of widths width * (1, 2, 4, 8, ...), then global average pooling.

    The last block has no ReLU, so the feature z is signed: cosine similarities between features then span
    [-1, 1] and AFSL's L_srl can push real and fake features to opposite directions, not only to orthogonal
    ones (ReLU features are all non-negative, so their cosines are >= 0).
    """

    input_size = 64

    def __init__(self, width: int = 16, blocks: int = 4, head: Head | str = Head.LINEAR, scale: float = 64.0):
        widths = [width * 2**i for i in range(blocks)]
        super().__init__(feature_dim=widths[-1], head=head, scale=scale)
        layers: list[nn.Module] = []
        c_in = 3
        for i, c_out in enumerate(widths):
            layers += conv_block(c_in, c_out, relu=i < blocks - 1)
            c_in = c_out
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.body = nn.Sequential(*layers)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


@DETECTORS.register("tiny-cnn")
@dataclass(frozen=True)
class TinyCNNConfig(Buildable):
    """Tiny CNN (conv-BN-ReLU blocks, VGG-style, https://arxiv.org/abs/1409.1556): the fast CPU default."""

    width: int = 16
    blocks: int = 4
    head: Head = Head.LINEAR
    scale: float = 64.0

    def __post_init__(self) -> None:
        if self.width < 1 or self.blocks < 1:
            raise ValueError(f"width ({self.width}) and blocks ({self.blocks}) must be >= 1")

    def build(self) -> TinyCNN:
        return TinyCNN(self.width, self.blocks, self.head, self.scale)
