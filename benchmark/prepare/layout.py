"""What a layout reader returns: the videos of a raw data set with their label, method, split and id.

LAYOUTS maps a data set name (the one ``afsl-bench prepare`` and the DATASETS registry use) to a reader
``(root, **params) -> Listing``. Readers only list files; they never decode. A video named by a split file
but absent from the disk is listed in ``missing`` (reported, never fatal); a root without the expected
folders raises a ``DataNotFoundError`` that names the folder it looked for.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path

from afsl_bench.core.errors import DataNotFoundError
from afsl_bench.core.registry import Registry

#: afsl_bench.core.types' labels (1 = fake), repeated so that worker processes start without importing torch
REAL, FAKE = 0, 1
LAYOUTS: Registry = Registry("layout")
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class VideoEntry:
    """One raw video: ``video_id`` is unique within the data set and stable across machines."""

    video_id: str
    path: Path
    label: int  # 1 = fake
    method: str  # 'real' for real videos
    split: str


@dataclass
class Listing:
    """The videos a reader found; ``missing``: videos a split file names that are not on disk, and files on
    disk that no split names (each with the reason); ``layout``: the layout the reader expects."""

    entries: list[VideoEntry]
    missing: list[str] = field(default_factory=list)
    layout: str = ""


def shipped_split_file(*parts: str) -> Path:
    """A split file shipped inside the package (benchmark/prepare/splits/...)."""
    return Path(str(files("afsl_bench.prepare").joinpath("splits", *parts)))


def need_folder(folder: Path, dataset: str, layout: str) -> Path:
    """``folder`` if it exists, else a DataNotFoundError naming it and the expected layout."""
    if not folder.is_dir():
        raise DataNotFoundError(f"{dataset}: expected the folder {folder} (layout: {layout})")
    return folder


def need_root(root: str | Path, dataset: str, layout: str) -> Path:
    base = Path(root).expanduser()
    if not str(root) or not base.is_dir():
        raise DataNotFoundError(
            f"{dataset}: the root '{root}' is not a folder; pass the raw data set's folder with --root "
            f"(layout: {layout})"
        )
    return base


def hashed_split(key: str, val_percent: int = 10, test_percent: int = 10) -> str:
    """A split drawn from a stable hash of ``key`` (the same on every machine, whatever else is on disk)."""
    bucket = zlib.crc32(key.encode()) % 100
    if bucket < test_percent:
        return "test"
    return "val" if bucket < test_percent + val_percent else "train"


def no_videos(dataset: str, root: Path, layout: str) -> DataNotFoundError:
    return DataNotFoundError(f"{dataset}: no videos found under {root} (layout: {layout})")
