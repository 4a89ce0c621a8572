"""The prepared store: face crops as uint8 shards, one Parquet manifest, a summary.

Layout of ``<out>``::

    store.json              how it was prepared (data set, layout parameters, frames, size, scale, detector)
    shards/<key>.npy        uint8 [n, 3, size, size]: the crops of one video (memory-mapped when read)
    parts/<key>.parquet     the manifest rows of one video; written last, so its presence marks the video done
    manifest.parquet        all parts together (rebuilt at the end of every ``prepare``)
    summary.json            counts: videos, frames, faces found, frames without a face, corrupt, missing

Each video is written atomically (temporary file, then ``os.replace``), so an interrupted ``prepare``
resumes where it stopped. Manifest columns: video_id, frame (number in the video), label (1 = fake),
method, split, the face box x0, y0, x1, y1 in frame pixels and the detector score (NaN without a face),
status (``face``, ``no-face``: the centre square is stored instead; ``corrupt``: nothing stored, the
reason in ``error``), shard and row (-1 when nothing is stored), source (the raw video's path).
"""

from __future__ import annotations

import hashlib
import json
import re
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from afsl_bench.core.errors import ConfigError
from afsl_bench.core.io import atomic_write

FORMAT = 1
MANIFEST, SUMMARY, CONFIG = "manifest.parquet", "summary.json", "store.json"
COLUMNS = (
    "video_id",
    "frame",
    "label",
    "method",
    "split",
    "x0",
    "y0",
    "x1",
    "y1",
    "score",
    "status",
    "shard",
    "row",
    "source",
    "error",
)


class Status(StrEnum):
    FACE = "face"
    NO_FACE = "no-face"
    CORRUPT = "corrupt"


def video_key(video_id: str) -> str:
    """A file name for a video id: readable, and unique through a short hash of the id."""
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", video_id)[:80]
    return f"{readable}-{hashlib.sha1(video_id.encode()).hexdigest()[:8]}"


def _save_npy(images: np.ndarray) -> Any:
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.save(f, images)

    return write


def write_json(path: Path, data: dict) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n"))


def open_store(out: Path, config: dict) -> None:
    """Create the store, or check that an existing one was prepared with the same settings (resume)."""
    path = out / CONFIG
    config = {"format": FORMAT, **config}
    if path.is_file():
        before = json.loads(path.read_text())
        if before != config:
            changed = sorted(k for k in config.keys() | before.keys() if config.get(k) != before.get(k))
            diff = ", ".join(f"{k} {before.get(k)} (now {config.get(k)})" for k in changed)
            raise ConfigError(
                f"{out} holds a store prepared with other settings: {diff}; "
                "prepare into another --out or repeat the store's settings to resume it"
            )
        return
    write_json(path, config)


def read_config(out: Path) -> dict:
    return json.loads((out / CONFIG).read_text())


def is_done(out: Path, video_id: str) -> bool:
    return (out / "parts" / f"{video_key(video_id)}.parquet").is_file()


def write_video(out: Path, video_id: str, images: np.ndarray | None, rows: list[dict]) -> None:
    """One video's crops and manifest rows, each file atomic; the rows last (they mark the video done)."""
    key = video_key(video_id)
    if images is not None:
        atomic_write(out / "shards" / f"{key}.npy", _save_npy(images))
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    atomic_write(out / "parts" / f"{key}.parquet", lambda tmp: frame.to_parquet(tmp, index=False))


def build_manifest(out: Path) -> pd.DataFrame:
    """All per-video parts in one manifest (sorted by video and frame), written atomically."""
    parts = sorted((out / "parts").glob("*.parquet"))
    frames = [pd.read_parquet(p) for p in parts]
    manifest = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(COLUMNS))
    manifest = manifest.sort_values(["video_id", "frame"], kind="stable").reset_index(drop=True)
    atomic_write(out / MANIFEST, lambda tmp: manifest.to_parquet(tmp, index=False))
    return manifest


def read_manifest(out: Path) -> pd.DataFrame:
    return pd.read_parquet(out / MANIFEST)
