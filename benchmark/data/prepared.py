"""Data sets read from a prepared store (written by ``afsl-bench prepare``; see ``afsl_bench.prepare.store``).

``load_prepared`` turns a store's manifest into train / val / test ``Split``s of face crops: frames
[N,3,H,W] or, with ``clip_frames`` = T, clips [N,T,3,H,W] of T consecutive sampled frames of one video
(non-overlapping; a video's last incomplete clip is left out and counted). Every sample carries its
``video_id`` and ``method``. Frames where the detector found no face are left out by default
(``no_face='drop'``, DeepfakeBench's choice) and counted in ``info``; ``no_face='keep'`` keeps their centre
crops. The store is found at ``prepared``, else ``$AFSL_DATA/<name>``, else ``data/prepared/<name>``.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, ClassVar

import numpy as np
import pandas as pd
import torch

from afsl_bench.core.errors import ConfigError, DataNotFoundError
from afsl_bench.core.registry import Buildable, Location
from afsl_bench.core.types import DataBundle, Split
from afsl_bench.data.shards import ShardedImages

SPLITS = ("train", "val", "test")
MANIFEST, CONFIG = "manifest.parquet", "store.json"


class NoFace(StrEnum):
    DROP = "drop"
    KEEP = "keep"


def store_path(name: str, prepared: str) -> Path:
    if prepared:
        return Path(prepared).expanduser()
    base = os.environ.get("AFSL_DATA")
    return Path(base).expanduser() / name if base else Path("data") / "prepared" / name


def missing_store(name: str, path: Path, layout: str) -> DataNotFoundError:
    return DataNotFoundError(
        f"{name}: no prepared store at {path} (no {MANIFEST}). Prepare it from the raw videos (layout: "
        f"{layout}) with: afsl-bench prepare {name} --root RAW_ROOT --out {path} ; or point to a prepared "
        f"store with --set data.prepared=PATH (default: $AFSL_DATA/{name}, else data/prepared/{name})"
    )


def read_store(name: str, path: Path, layout: str) -> tuple[dict, pd.DataFrame]:
    import json

    if not (path / MANIFEST).is_file() or not (path / CONFIG).is_file():
        raise missing_store(name, path, layout)
    config = json.loads((path / CONFIG).read_text())
    if config.get("dataset") != name:
        raise ConfigError(
            f"{path} holds a prepared '{config.get('dataset')}' store, not '{name}': "
            f"use --dataset {config.get('dataset')} or point data.prepared to a {name} store"
        )
    return config, pd.read_parquet(path / MANIFEST)


def store_content_id(name: str, prepared: str = "") -> str | None:
    """What the prepared store of data set ``name`` holds, for cell ids (``afsl_bench.runner.plan.component_of``):
    a digest of the store's ``store.json`` and manifest, which list every shard and sample it holds (small
    files: hashed in full). Two stores of different contents get different cell ids even under the same
    ``prepared=`` or ``$AFSL_DATA``; None when there is no store (loading then says how to prepare one)."""
    path = store_path(name, prepared)
    if not (path / MANIFEST).is_file() or not (path / CONFIG).is_file():
        return None
    digest = hashlib.sha256()
    for part in (CONFIG, MANIFEST):
        digest.update((path / part).read_bytes())
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class PreparedSet(Buildable):
    """The parameters every prepared real data set shares; a registered subclass names its raw layout and
    what its store must have been prepared with."""

    prepared: Annotated[str, Location()] = ""
    no_face: NoFace = NoFace.DROP
    clip_frames: int = 0
    #: the raw download's layout, named in the error when no store is found
    layout: ClassVar[str]

    def content_id(self) -> str | None:
        """The store's contents enter every cell id that reads it (``store_content_id``)."""
        return store_content_id(self.registered_name, self.prepared)

    def load(self, **options: Any) -> DataBundle:
        return load_prepared(
            self.registered_name, self.prepared, self.layout, no_face=self.no_face, clip_frames=self.clip_frames,
            **options,
        )  # fmt: skip

    def build(self) -> DataBundle:
        return self.load()


def check_layout(path: Path, config: dict, expect: dict[str, Any]) -> None:
    """Parameters fixed at prepare time (e.g. compression) must match what the data set is asked for."""
    for key, value in expect.items():
        stored = config.get("layout", {}).get(key)
        if stored is not None and str(stored) != str(value):
            raise ConfigError(
                f"{path} was prepared with {key}={stored}, not {value}: set data.{key}={stored} "
                f"or prepare a {key}={value} store into another folder"
            )


def pick_methods(manifest: pd.DataFrame, methods: tuple[str, ...] | None, path: Path) -> pd.DataFrame:
    if methods is None:
        return manifest
    stored = sorted(set(manifest["method"]) - {"real"})
    absent = [m for m in methods if m not in stored]
    if absent:
        raise ConfigError(
            f"{path} has no {', '.join(absent)} fakes (it holds: {', '.join(stored) or 'none'}); "
            "prepare them or set data.methods to those it holds"
        )
    return manifest[manifest["method"].isin(("real", *methods))]


def frame_split(rows: pd.DataFrame, path: Path, frame_shape: tuple) -> Split:
    shards, shard_of = np.unique(rows["shard"].to_numpy(dtype=str), return_inverse=True)
    images = ShardedImages(path, list(shards), shard_of, rows["row"].to_numpy(), frame_shape)
    ids = [f"{v}#{f:05d}" for v, f in zip(rows["video_id"], rows["frame"])]
    labels = torch.tensor(rows["label"].to_numpy(np.int64))
    return Split(images, labels, ids, rows["video_id"].tolist(), rows["method"].tolist())


def clip_split(rows: pd.DataFrame, path: Path, frame_shape: tuple, t: int) -> tuple[Split, int]:
    """Non-overlapping clips of ``t`` consecutive kept frames per video; returns the split and the number
    of frames left over at the videos' ends."""
    shard_names = sorted(set(rows["shard"]))
    code = {s: k for k, s in enumerate(shard_names)}
    shard_of, clip_rows, ids, videos, labels, methods, left = [], [], [], [], [], [], 0
    for video, group in rows.groupby("video_id", sort=True):
        n = len(group) // t
        left += len(group) - n * t
        for c in range(n):
            part = group.iloc[c * t : (c + 1) * t]
            shard_of.append(code[part["shard"].iloc[0]])
            clip_rows.append(part["row"].to_numpy())
            ids.append(f"{video}#{int(part['frame'].iloc[0]):05d}")
            videos.append(video)
            labels.append(int(part["label"].iloc[0]))
            methods.append(part["method"].iloc[0])
    rows_array = np.asarray(clip_rows, np.int64).reshape(-1, t)
    images = ShardedImages(path, shard_names, np.asarray(shard_of, np.int64), rows_array, frame_shape)
    return Split(images, torch.as_tensor(labels, dtype=torch.long), ids, videos, methods), left


def load_prepared(
    name: str,
    prepared: str,
    layout: str,
    *,
    methods: tuple[str, ...] | None = None,
    expect: dict[str, Any] | None = None,
    no_face: NoFace = NoFace.DROP,
    clip_frames: int = 0,
) -> DataBundle:
    """The train / val / test splits of the prepared store of data set ``name``."""
    if clip_frames == 1 or clip_frames < 0:
        raise ConfigError(f"{name}: clip_frames={clip_frames}; use 0 (frames) or T >= 2 (clips)")
    path = store_path(name, prepared)
    config, manifest = read_store(name, path, layout)
    check_layout(path, config, expect or {})
    manifest = pick_methods(manifest, methods, path)
    kept = ("face", "no-face") if NoFace(no_face) is NoFace.KEEP else ("face",)
    rows = manifest[manifest["status"].isin(kept)].sort_values(["video_id", "frame"], kind="stable")
    frame_shape = (3, config["size"], config["size"])
    splits, left = {}, 0
    for split in SPLITS:
        part = rows[rows["split"] == split]
        if part.empty:
            raise DataNotFoundError(f"{name}: the store at {path} has no {split} frames with faces")
        if clip_frames:
            splits[split], n = clip_split(part, path, frame_shape, clip_frames)
            left += n
        else:
            splits[split] = frame_split(part, path, frame_shape)
    info = _info(path, config, manifest, splits, no_face, clip_frames, left)
    return DataBundle(name, splits["train"], splits["val"], splits["test"], info)


def _info(
    path: Path, config: dict, manifest: pd.DataFrame, splits: dict, no_face: str, t: int, left: int
) -> dict:
    status = Counter(manifest["status"])
    return {
        "store": str(path),
        "prepared": {k: v for k, v in config.items() if k != "format"},
        "resolution": config["size"],
        "clip_frames": t,
        "no_face": str(no_face),
        "counts": {s: dict(sorted(Counter(splits[s].methods).items())) for s in SPLITS},
        "videos": {s: len(set(splits[s].video_ids)) for s in SPLITS},
        "frames_with_face": status.get("face", 0),
        "frames_without_face": status.get("no-face", 0),
        "corrupt_videos": status.get("corrupt", 0),
        "frames_left_over_by_clips": left,
    }
