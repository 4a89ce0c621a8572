"""MesoInception-4 (Afchar et al., "MesoNet: a Compact Facial Video Forgery Detection Network", WIFS 2018,
https://arxiv.org/abs/1809.00888).

Meso-4 (detectors/meso.py) with its first two convolutions replaced by inception modules (Szegedy et al.,
CVPR 2015, https://arxiv.org/abs/1409.4842) of four parallel branches: a 1x1 conv, and 1x1 convs followed
by 3x3 convs of dilation 1, 2 and 3 (the paper's dilated variant), concatenated. Modules of (1, 4, 4, 2)
and (2, 4, 4, 2) filters, each followed by batch norm and a 2x2 max-pool, then Meso-4's two 16-filter 5x5
conv layers, dropout 0.5, a 16-unit dense layer with LeakyReLU(0.1), dropout 0.5 and the classifier:
28,615 trainable parameters at the native 256x256 input, as in the paper. As in meso.py, every conv is
followed by a ReLU (the authors' Keras code), the last 4x4 max-pool is an adaptive max-pool to 8x8 (the
same at 256 px, resolution-agnostic elsewhere), inputs are [0, 1] images without mean/std normalisation,
and the feature z is the 16-unit hidden layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import torch
from torch import nn

from afsl_bench.core.registry import Buildable, OmitAtDefault
from afsl_bench.detectors.base import DETECTORS, Head
from afsl_bench.detectors.meso import MesoNet, meso_conv
from afsl_bench.detectors.weights import Weights, build_with_weights


def inception_branch(c_in: int, c_out: int, dilation: int | None, relu: bool = True) -> nn.Sequential:
    """1x1 conv -> ReLU, then (unless ``dilation`` is None) a 3x3 conv of that dilation -> ReLU; without
    ``relu`` the activations are identities (DeepfakeBench's variant), the layer indices unchanged."""

    def act() -> nn.Module:
        return nn.ReLU(inplace=True) if relu else nn.Identity()

    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, 1), act()]
    if dilation is not None:
        layers += [nn.Conv2d(c_out, c_out, 3, padding=dilation, dilation=dilation), act()]
    return nn.Sequential(*layers)


class InceptionLayer(nn.Module):
    """Branches of a, b, c, d filters (1x1; 3x3; 3x3 dilated 2; 3x3 dilated 3), concatenated: a+b+c+d."""

    def __init__(self, c_in: int, a: int, b: int, c: int, d: int, relu: bool = True) -> None:
        super().__init__()
        self.out_channels = a + b + c + d
        self.branches = nn.ModuleList(
            [inception_branch(c_in, a, None, relu), inception_branch(c_in, b, 1, relu),
             inception_branch(c_in, c, 2, relu), inception_branch(c_in, d, 3, relu)]
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([branch(x) for branch in self.branches], dim=1)


def inception_block(c_in: int, a: int, b: int, c: int, d: int, relu: bool = True) -> list[nn.Module]:
    layer = InceptionLayer(c_in, a, b, c, d, relu)
    return [layer, nn.BatchNorm2d(layer.out_channels), nn.MaxPool2d(2)]


class MesoInception4(MesoNet):
    """MesoInception-4: two inception modules and a 16-filter conv before Meso-4's last conv layer;
    ``branch_relu``: ReLUs inside the inception branches (the authors' Keras code)."""

    def __init__(
        self,
        dropout: float = 0.5,
        head: Head | str = Head.LINEAR,
        scale: float = 64.0,
        branch_relu: bool = True,
    ) -> None:
        self.branch_relu = branch_relu  # read by stem(), which MesoNet.__init__ calls
        super().__init__(dropout, head, scale)

    def stem(self) -> list[nn.Module]:
        return [
            *inception_block(3, 1, 4, 4, 2, self.branch_relu),
            *inception_block(11, 2, 4, 4, 2, self.branch_relu),
            *meso_conv(12, 16, 5, nn.MaxPool2d(2)),
        ]


@DETECTORS.register("mesoinception4")
@dataclass(frozen=True)
class MesoInception4Config(Buildable):
    """MesoInception-4 (Afchar et al., WIFS 2018, https://arxiv.org/abs/1809.00888): 29k-parameter deepfake CNN.

    ``weights``: a local state_dict file, or ``deepfakebench:PATH`` (DeepfakeBench's MesoInception4, which
    has no ReLU inside its inception branches: set ``branch_relu=false`` with it).
    """

    dropout: float = 0.5
    head: Head = Head.LINEAR
    scale: float = 64.0
    weights: Weights = None
    branch_relu: Annotated[bool, OmitAtDefault()] = True

    def __post_init__(self) -> None:
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")

    def build(self) -> MesoInception4:
        build = lambda: MesoInception4(self.dropout, self.head, self.scale, self.branch_relu)
        params = {"head": self.head, "branch_relu": self.branch_relu}
        return build_with_weights(build, self.weights, "mesoinception4", params)
