"""A small CIFAR-style ResNet (He et al., "Deep Residual Learning for Image Recognition", CVPR 2016,
https://arxiv.org/abs/1512.03385, Section 4.2).

6n + 2 layers: a 3x3 stem, three stages of n basic blocks (two 3x3 convs each) at widths w, 2w, 4w, the
second and third stage halving the resolution, then global average pooling: depth 8 (n = 1), 14, 20
(ResNet-20, 0.27 M parameters at w = 16), 32, ... Shortcuts that change shape use a 1x1 conv + batch norm
(the paper's option B). The global pooling makes it resolution-agnostic.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from afsl_bench.core.registry import Buildable
from afsl_bench.detectors.base import DETECTORS, Detector, Head


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            conv = nn.Conv2d(c_in, c_out, 1, stride, bias=False)
            self.shortcut = nn.Sequential(conv, nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class CifarResNet(Detector):
    """ResNet-(6n+2) of base width ``width``; the feature z is the pooled 4w-channel map."""

    input_size = 64

    def __init__(self, depth: int = 8, width: int = 16, head: Head | str = Head.LINEAR, scale: float = 64.0):
        super().__init__(feature_dim=4 * width, head=head, scale=scale)
        n = (depth - 2) // 6
        layers: list[nn.Module] = [nn.Conv2d(3, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU()]
        c_in = width
        for stage, c_out in enumerate((width, 2 * width, 4 * width)):
            for block in range(n):
                stride = 2 if stage > 0 and block == 0 else 1
                layers.append(BasicBlock(c_in, c_out, stride))
                c_in = c_out
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.body = nn.Sequential(*layers)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


@DETECTORS.register("resnet")
@dataclass(frozen=True)
class ResNetConfig(Buildable):
    """CIFAR-style ResNet-(6n+2) (He et al., CVPR 2016, https://arxiv.org/abs/1512.03385), width-scalable."""

    depth: int = 8
    width: int = 16
    head: Head = Head.LINEAR
    scale: float = 64.0

    def __post_init__(self) -> None:
        if self.depth < 8 or (self.depth - 2) % 6:
            raise ValueError(f"depth must be 6n + 2 with n >= 1 (8, 14, 20, 32, ...), got {self.depth}")
        if self.width < 1:
            raise ValueError(f"width must be >= 1, got {self.width}")

    def build(self) -> CifarResNet:
        return CifarResNet(self.depth, self.width, self.head, self.scale)
