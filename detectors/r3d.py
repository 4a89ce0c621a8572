"""3D-CNN video detectors: R3D-18 and R(2+1)D-18 (Tran et al., "A Closer Look at Spatiotemporal
Convolutions for Action Recognition", CVPR 2018, https://arxiv.org/abs/1711.11248), from torchvision.

18-layer video ResNets: R3D with full 3x3x3 convolutions, R(2+1)D with each factorised into a 2D spatial
and a 1D temporal convolution. torchvision's Kinetics-400 models take 112 x 112 clips normalised with the
Kinetics mean / std (read from torchvision's weights entry, held here as buffers). Input: clips
[N, T, 3, H, W] in [0, 1] (permuted to torchvision's [N, 3, T, H, W]), any T >= 1 and any H, W of about
32 px or more (global average pooling over time and space). The feature z is the 512-channel pooled
output of the last stage (torchvision's ``fc`` removed).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from afsl_bench.core.registry import Buildable
from afsl_bench.detectors.base import DETECTORS, Detector, Head, require_clips
from afsl_bench.detectors.weights import Weights, build_with_weights, pretrained_download


@dataclass(frozen=True)
class VideoArch:
    """A torchvision video architecture by name, looked up when a model is built (importing torchvision
    at module level would slow every start of the CLI)."""

    #: the builder in ``torchvision.models.video``: (weights=...) -> VideoResNet
    name: str
    #: its weights enum there; ``KINETICS400_V1`` is used
    weights_enum: str

    def build(self, weights: Any) -> nn.Module:
        from torchvision.models import video

        return getattr(video, self.name)(weights=weights)

    @property
    def weights(self) -> Any:
        from torchvision.models import video

        return getattr(video, self.weights_enum).KINETICS400_V1


torch.fx.wrap("require_clips")  # traced as one call (batch-norm folding), see require_clips

ARCHS = {
    "r3d-18": VideoArch("r3d_18", "R3D_18_Weights"),
    "r2plus1d-18": VideoArch("r2plus1d_18", "R2Plus1D_18_Weights"),
}


class VideoResNet3D(Detector):
    """A torchvision video ResNet-18 without its classifier; ``embed()`` -> [N, 512] for N clips."""

    takes_clips = True
    input_size = 112

    def __init__(
        self, arch: VideoArch, head: Head | str = Head.LINEAR, scale: float = 64.0, pretrained: bool = False
    ):
        with pretrained_download(f"torchvision '{arch.name}'", "torchvision / download.pytorch.org"):
            net = arch.build(weights=arch.weights if pretrained else None)
        stats = arch.weights.transforms()  # Kinetics mean / std; builds a transform object, downloads nothing
        super().__init__(net.fc.in_features, head, scale, mean=tuple(stats.mean), std=tuple(stats.std))
        net.fc = nn.Identity()
        self.backbone = net

    def features(self, x: torch.Tensor) -> torch.Tensor:
        require_clips(x, "video ResNets")
        return self.backbone(x.transpose(1, 2))


@DETECTORS.register("r3d-18")
@dataclass(frozen=True)
class R3D18Config(Buildable):
    """R3D-18 (Tran et al., CVPR 2018, https://arxiv.org/abs/1711.11248): 3D-CNN video detector, 112 px clips.

    ``weights``: a local state_dict file (the whole detector's or torchvision's backbone); ``pretrained``:
    torchvision's Kinetics-400 weights (needs internet).
    """

    head: Head = Head.LINEAR
    scale: float = 64.0
    weights: Weights = None
    pretrained: bool = False
    #: the torchvision architecture (``ARCHS``)
    arch: ClassVar[str] = "r3d-18"

    def build(self) -> VideoResNet3D:
        build = lambda: VideoResNet3D(ARCHS[self.arch], self.head, self.scale, self.pretrained)
        return build_with_weights(build, self.weights)


@DETECTORS.register("r2plus1d-18")
@dataclass(frozen=True)
class R2Plus1D18Config(R3D18Config):
    """R(2+1)D-18 (Tran et al., CVPR 2018, https://arxiv.org/abs/1711.11248): factorised 3D CNN, 112 px clips.

    ``weights``: a local state_dict file (the whole detector's or torchvision's backbone); ``pretrained``:
    torchvision's Kinetics-400 weights (needs internet).
    """

    arch: ClassVar[str] = "r2plus1d-18"
