"""Core data types shared by every component.

Conventions (README, "Threat model and metrics"): images are RGB floats in [0, 1]; label 1 = fake everywhere;
every sample carries a ``sample_id`` and a ``video_id`` (for still images the video id is the sample id),
so video-level metrics never parse file paths.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

REAL, FAKE = 0, 1


@dataclass(frozen=True)
class Batch:
    """x: float [N,3,H,W] (or [N,T,3,H,W] for clips) in [0,1]; y: int64 [N] with 1 = fake."""

    x: torch.Tensor
    y: torch.Tensor
    sample_id: list[str]
    video_id: list[str]

    def to(self, device: torch.device | str) -> Batch:
        return Batch(self.x.to(device, non_blocking=True), self.y.to(device), self.sample_id, self.video_id)

    def __len__(self) -> int:
        return len(self.y)


@dataclass
class Split:
    """One split of a data set, held as uint8 images (a tensor or a memory-mapped array).

    ``methods`` names the manipulation of each sample ('real' for real ones), so results can be broken
    down per manipulation family.
    """

    images: torch.Tensor | np.ndarray
    labels: torch.Tensor
    sample_ids: list[str]
    video_ids: list[str]
    methods: list[str]

    def __post_init__(self) -> None:
        n = len(self.labels)
        sizes = {len(self.images), len(self.sample_ids), len(self.video_ids), len(self.methods)}
        if sizes != {n}:
            raise ValueError(f"split fields disagree in length: labels {n}, others {sizes}")

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def image_shape(self) -> tuple[int, ...]:
        return tuple(self.images.shape[1:])

    def subset(self, index: torch.Tensor | np.ndarray | list[int]) -> Split:
        idx = torch.as_tensor(index, dtype=torch.long)
        images = self.images[idx] if isinstance(self.images, torch.Tensor) else self.images[idx.numpy()]
        pick = idx.tolist()
        return Split(
            images,
            self.labels[idx],
            [self.sample_ids[i] for i in pick],
            [self.video_ids[i] for i in pick],
            [self.methods[i] for i in pick],
        )

    def batch(self, index: torch.Tensor | list[int]) -> Batch:
        idx = torch.as_tensor(index, dtype=torch.long)
        raw = (
            self.images[idx]
            if isinstance(self.images, torch.Tensor)
            else torch.from_numpy(np.ascontiguousarray(self.images[idx.numpy()]))
        )
        pick = idx.tolist()
        return Batch(
            raw.float().div_(255.0),
            self.labels[idx],
            [self.sample_ids[i] for i in pick],
            [self.video_ids[i] for i in pick],
        )

    def batches(self, batch_size: int, *, shuffle: bool = False, seed: int = 0) -> Iterator[Batch]:
        """Yield float batches in [0,1]; a shuffled order is fixed by ``seed``."""
        if shuffle:
            order = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))
        else:
            order = torch.arange(len(self))
        for start in range(0, len(self), batch_size):
            yield self.batch(order[start : start + batch_size])

    def class_counts(self) -> tuple[int, int]:
        fake = int(self.labels.sum())
        return len(self) - fake, fake


@dataclass
class DataBundle:
    """A data set's train / val / test splits plus descriptive info recorded in each result."""

    name: str
    train: Split
    val: Split
    test: Split
    info: dict[str, Any] = field(default_factory=dict)

    def split(self, name: str) -> Split:
        return {"train": self.train, "val": self.val, "test": self.test}[name]
