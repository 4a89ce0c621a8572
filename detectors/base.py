"""The detector contract: RGB in [0, 1] -> two logits (index 1 = fake), with ``embed()`` for features.

Normalisation lives inside the model as buffers (as in RobustBench), so attacks and budgets see pixel space.
The head is a parameter: ``linear`` (a plain classifier) or ``cosine`` (logit_c = s * cos(z, w_c), the
classifier AFSL's L_dcl needs; Khan et al. 2024). A ``threshold`` buffer holds the decision threshold on the
logit margin z_fake - z_real, fixed on clean validation data after training and folded into ``forward`` so
that argmax, every attack and every metric agree on one decision rule.
"""

from __future__ import annotations

from enum import StrEnum

import torch
import torch.nn.functional as F
from torch import nn

from afsl_bench.core.registry import Registry

DETECTORS: Registry = Registry("detector")

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Head(StrEnum):
    LINEAR = "linear"
    COSINE = "cosine"


class CosineHead(nn.Module):
    """logit_c = s * cos(z, w_c): the normalised classifier of AFSL's L_dcl (scale s = 64 in RealForensics)."""

    def __init__(self, dim: int, scale: float = 64.0) -> None:
        super().__init__()
        self.scale = scale
        self.weight = nn.Parameter(torch.randn(2, dim) * dim**-0.5)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.scale * F.normalize(z, dim=1) @ F.normalize(self.weight, dim=1).T


def make_head(head: Head | str, dim: int, scale: float) -> nn.Module:
    return CosineHead(dim, scale) if Head(head) is Head.COSINE else nn.Linear(dim, 2)


def fold_threshold(logits: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
    """Two logits shifted by -t/2 and +t/2, so that their argmax decides "fake" when z_fake - z_real > t."""
    return logits + torch.stack([threshold / 2, -threshold / 2]).to(logits.dtype)


class Detector(nn.Module):
    """Base class: subclasses implement ``features(x_normalised) -> z`` of size ``feature_dim``."""

    #: native input resolution (square side, pixels) of the published model. Nothing resizes to it: every
    #: registered detector ends in global pooling and takes the data set's resolution (64 px by default);
    #: prepare real data at this size (``afsl-bench prepare --size``) to match published numbers
    input_size: int = 64
    #: True for video detectors taking clips [N, T, 3, H, W]
    takes_clips: bool = False
    #: False for a model whose output has no input gradient (an API wrapper): gradient attacks refuse it
    differentiable: bool = True

    def __init__(
        self,
        feature_dim: int,
        head: Head | str = Head.LINEAR,
        scale: float = 64.0,
        mean: tuple[float, float, float] = IMAGENET_MEAN,
        std: tuple[float, float, float] = IMAGENET_STD,
    ) -> None:
        super().__init__()
        self.feature_dim = feature_dim
        self.head_kind = Head(head)
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1))
        self.register_buffer("threshold", torch.zeros(()))
        self.head = make_head(head, feature_dim, scale)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """[0,1] images -> feature z [N, feature_dim] (what AFSL's similarity terms act on)."""
        return self.features((x - self.mean) / self.std)

    def logits_from_embedding(self, z: torch.Tensor) -> torch.Tensor:
        """Head logits shifted so that argmax applies the calibrated threshold on the margin."""
        return fold_threshold(self.head(z), self.threshold)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits_from_embedding(self.embed(x))
