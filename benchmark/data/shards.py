"""Images of a prepared store as one array-like over many memory-mapped per-video shards.

``ShardedImages`` behaves like a read-only uint8 array [N, 3, H, W] (or [N, T, 3, H, W] for clips) as far as
``Split`` needs: ``len``, ``shape`` and indexing with an integer array, which gathers the items from their
shards (``np.load(mmap_mode='r')``, opened on first use). Nothing is read into memory up front, so a
256 px FF++ store (tens of GB) loads in the time it takes to read its manifest.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


class ShardedImages:
    """Item i is rows ``rows[i]`` (an int, or T ints for a clip) of the shard ``shards[shard_of[i]]``."""

    def __init__(
        self, root: Path, shards: list[str], shard_of: np.ndarray, rows: np.ndarray, frame_shape: tuple
    ):
        self.root, self.shards = Path(root), list(shards)
        self.shard_of, self.rows = np.asarray(shard_of, np.int64), np.asarray(rows, np.int64)
        self.shape = (len(self.shard_of), *self.rows.shape[1:], *frame_shape)
        self.dtype = np.dtype(np.uint8)
        self._open: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return self.shape[0]

    def _shard(self, k: int) -> np.ndarray:
        if k not in self._open:
            self._open[k] = np.load(self.root / self.shards[k], mmap_mode="r")
        return self._open[k]

    def __getitem__(self, index: int | np.ndarray | list[int]) -> np.ndarray:
        if np.isscalar(index):
            return np.array(self._shard(int(self.shard_of[index]))[self.rows[index]])
        index = np.asarray(index, np.int64)
        out = np.empty((len(index), *self.shape[1:]), np.uint8)
        for k, i in enumerate(index.tolist()):
            out[k] = self._shard(int(self.shard_of[i]))[self.rows[i]]
        return out

    def __array__(self, dtype: np.dtype | None = None, copy: bool | None = None) -> np.ndarray:
        whole = self[np.arange(len(self))]
        return whole if dtype is None else whole.astype(dtype)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_open": {}}  # memory maps are reopened where the object is unpickled
