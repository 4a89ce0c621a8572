"""A small trained binary detector for the attack tests: built once per test module, seeded, CPU-cheap.

The task: an image is "fake" (label 1) when its mean red exceeds its mean blue, "real" when the reverse, by
a margin drawn per image in [2/255, 40/255] over a smooth random background. A small CNN with BatchNorm
learns it in a few seconds to > 95% clean accuracy. An L-inf attack moves the red-blue difference by up to
2 * eps, so each image has its own breaking budget: robust accuracy falls gradually with eps and reaches
zero near 20/255, in both directions. (A high-frequency "fingerprint" task was tried first: its detector
measures pattern energy, and sign-gradient noise itself looks like a fingerprint, so fakes resist every
budget - a poor fixture for checking that stronger attacks score lower.)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

SIZE = 32
#: range of |mean(R) - mean(B)| per image, in [0,1] pixel units
MARGIN = (2 / 255, 40 / 255)


def make_images(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """n images [n,3,32,32] in [0,1] with labels (1 = fake, about half)."""
    gen = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, 8, 8, generator=gen)
    x = F.interpolate(coarse, size=SIZE, mode="bilinear", align_corners=False) * 0.5 + 0.25
    y = torch.randint(0, 2, (n,), generator=gen)
    margin = MARGIN[0] + (MARGIN[1] - MARGIN[0]) * torch.rand(n, generator=gen)
    target = torch.where(y == 1, margin, -margin)
    shift = (target - (x[:, 0] - x[:, 2]).mean((1, 2))) / 2
    x[:, 0] += shift.view(-1, 1, 1)
    x[:, 2] -= shift.view(-1, 1, 1)
    # the shift keeps every pixel inside [0.25 - 0.3, 0.75 + 0.3]: the clamp below never bites
    return x.clamp(0, 1), y


class SmallCNN(nn.Module):
    """Three conv blocks with BatchNorm, global pooling, two logits (index 1 = fake)."""

    def __init__(self, width: int = 8) -> None:
        super().__init__()

        def block(c_in: int, c_out: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU())

        self.features = nn.Sequential(
            block(3, width), nn.MaxPool2d(2), block(width, 2 * width), nn.MaxPool2d(2),
            block(2 * width, 2 * width), nn.AdaptiveAvgPool2d(1),
        )
        self.head = nn.Linear(2 * width, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))


def train_model(seed: int = 0, n: int = 1024, epochs: int = 4) -> nn.Module:
    """About 2 s on two CPU cores; > 98% clean accuracy (one-cycle schedule: a flat lr stalls near 93%)."""
    torch.manual_seed(seed)
    x, y = make_images(n, seed)
    model = SmallCNN()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    schedule = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=epochs * -(-n // 64))
    for _ in range(epochs):
        for idx in torch.randperm(n).split(64):
            opt.zero_grad()
            F.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
            schedule.step()
    return model.eval()


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()
