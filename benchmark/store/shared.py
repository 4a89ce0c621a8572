"""A checkpoint cache shared by result stores: ``AFSL_CHECKPOINT_CACHE=<folder>``.

A trained model is cached in its store (``<results-dir>/checkpoints/<train_id>.pt``), so another store (a
gate's fresh temporary store, a second results folder, each test of a suite) trains the same model again.
With the variable set, the runner copies a checkpoint it trains (or loads) into that folder, and a store
that lacks a model copies it from there before training. The train id is the hash of everything that
shapes the weights, so a copy is the model the store would have trained; only float32-trained checkpoints
are shared (``--precision`` is not part of the id: a bf16-trained model must not stand for the float32 one).
The test suite points it at one folder per session (tests/conftest.py): each tiny model is trained once.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from afsl_bench.core.io import atomic_write

#: the environment variable naming the shared folder (unset: no sharing)
ENV = "AFSL_CHECKPOINT_CACHE"


def shared_folder() -> Path | None:
    value = os.environ.get(ENV, "").strip()
    return Path(value) if value else None


def fetch(train_id: str, checkpoints: Path) -> bool:
    """Copy ``<train_id>.pt`` from the shared folder into ``checkpoints`` when the store lacks it; whether
    it did."""
    folder, own = shared_folder(), checkpoints / f"{train_id}.pt"
    if folder is None or own.exists() or not (folder / own.name).is_file():
        return False
    atomic_write(own, lambda tmp: shutil.copyfile(folder / own.name, tmp))
    return True


def publish(train_id: str, checkpoints: Path, runtime: dict) -> None:
    """Copy the store's ``<train_id>.pt`` into the shared folder (float32-trained checkpoints only)."""
    folder, own = shared_folder(), checkpoints / f"{train_id}.pt"
    if folder is None or not own.is_file() or runtime.get("precision", "fp32") != "fp32":
        return
    if not (folder / own.name).is_file():
        atomic_write(folder / own.name, lambda tmp: shutil.copyfile(own, tmp))
