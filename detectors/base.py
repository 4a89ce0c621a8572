"""The detector contract: RGB in [0, 1] -> two logits (index 1 = fake), with ``embed()`` for features.

Normalisation lives inside the model as buffers (as in RobustBench), so attacks and budgets see pixel space.
The head is a parameter (``Head``): ``linear`` (a plain classifier), ``cosine`` (the paper's head: one weight
vector w, logits (0, s * cos(z, w)), scale s = 64, as in RealForensics' logit-adjusted BCE head that AFSL builds
on; Khan et al. 2024) or ``cosine-pair`` (one weight vector per class, logit_c = s * cos(z, w_c); the suite's
``cosine`` head up to detector version 1). A ``threshold`` buffer holds the decision threshold on the
logit margin z_fake - z_real, fixed on clean validation data after training and folded into ``forward`` so
that argmax, every attack and every metric agree on one decision rule.
"""

from __future__ import annotations

from enum import StrEnum

import torch
import torch.nn.functional as F
from torch import nn

from afsl_bench.core.registry import Registry

#: version 2: ``cosine`` is the paper's one-vector head; the two-vector head (version 1's ``cosine``) is ``cosine-pair``
DETECTORS: Registry = Registry("detector", version=2)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Head(StrEnum):
    """The classifier on top of the feature z; every defense trains with any of them."""

    LINEAR = "linear"  # logits W z + b
    COSINE = "cosine"  # the paper's: logits (0, s * cos(z, w)), one weight vector, a margin in [-s, s]
    COSINE_PAIR = "cosine-pair"  # logits s * cos(z, w_c) for c in (real, fake): a margin in [-2s, 2s]


class CosineHead(nn.Module):
    """The head of AFSL's L_dcl (Khan et al. 2024) as in its code base RealForensics: one weight vector and
    a scale, margin = s * cos(z, w). The real logit is 0, so softmax cross-entropy on (0, margin) is the
    binary cross-entropy on sigmoid(margin) that the paper's logit-adjusted BCE uses."""

    def __init__(self, dim: int, scale: float = 64.0) -> None:
        super().__init__()
        self.scale = scale
        self.weight = nn.Parameter(torch.randn(1, dim) * dim**-0.5)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        margin = self.scale * F.normalize(z, dim=1) @ F.normalize(self.weight, dim=1).T
        return torch.cat([torch.zeros_like(margin), margin], dim=1)


class CosinePairHead(nn.Module):
    """logit_c = s * cos(z, w_c) with one weight vector per class (a normalised softmax classifier)."""

    def __init__(self, dim: int, scale: float = 64.0) -> None:
        super().__init__()
        self.scale = scale
        self.weight = nn.Parameter(torch.randn(2, dim) * dim**-0.5)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.scale * F.normalize(z, dim=1) @ F.normalize(self.weight, dim=1).T


def make_head(head: Head | str, dim: int, scale: float) -> nn.Module:
    kind = Head(head)
    if kind is not Head.LINEAR and scale <= 0:
        raise ValueError(f"the cosine heads' scale must be > 0, got {scale}")
    if kind is Head.COSINE:
        return CosineHead(dim, scale)
    if kind is Head.COSINE_PAIR:
        return CosinePairHead(dim, scale)
    return nn.Linear(dim, 2)


def fold_threshold(logits: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
    """Two logits shifted by -t/2 and +t/2, so that their argmax decides "fake" when z_fake - z_real > t."""
    return logits + torch.stack([threshold / 2, -threshold / 2]).to(logits.dtype)


def require_clips(x: torch.Tensor, detector: str) -> None:
    """A video detector's input check: [N, T, 3, H, W] clips, or a ValueError naming the detector. Modules
    that call it register it with ``torch.fx.wrap`` so that tracing (batch-norm folding,
    ``afsl_bench.core.speed``) records the check as one call instead of failing on ``x.dim()``."""
    if x.dim() != 5:
        raise ValueError(f"{detector} takes clips [N, T, 3, H, W], got a tensor of shape {tuple(x.shape)}")


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

    def head_input(self, z: torch.Tensor) -> torch.Tensor:
        """What the head reads of z, in its own scale: s * z / |z| for the cosine heads (they see only the
        direction), z itself for the linear head. AFSL's ``similarity=head`` compares these."""
        if self.head_kind is Head.LINEAR:
            return z
        return self.head.scale * F.normalize(z, dim=1)

    def logits_from_embedding(self, z: torch.Tensor) -> torch.Tensor:
        """Head logits shifted so that argmax applies the calibrated threshold on the margin."""
        return fold_threshold(self.head(z), self.threshold)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits_from_embedding(self.embed(x))
