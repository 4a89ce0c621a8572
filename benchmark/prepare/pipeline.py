"""``prepare``: raw videos -> face crops in a prepared store, in parallel over videos, resumable.

Per video (DeepfakeBench's convention, see ``afsl_bench.prepare.frames``): decode, take ``frames`` frames
evenly spaced, find the faces in each with the chosen offline detector and keep one face track through
the video (confident detections only, ``afsl_bench.prepare.faces.track``), crop ``scale`` x the box,
resize to ``size``, write the video's shard and manifest rows atomically. A frame without a face keeps its
centre square (status ``no-face``); a video that cannot be decoded gets one ``corrupt`` row with the reason.
Nothing is dropped silently: every count is in ``summary.json`` and in the manifest's ``status`` column.
Videos already in the store are skipped, so rerunning the same command resumes.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from afsl_bench.core.errors import ConfigError
from afsl_bench.prepare.faces import FACE_DETECTORS, MIN_SCORE, Face, track
from afsl_bench.prepare.frames import UnreadableVideo, centre_square, crop, sample_frames, square_around
from afsl_bench.prepare.layout import LAYOUTS, SPLITS, Listing, VideoEntry
from afsl_bench.prepare.store import (
    SUMMARY,
    Status,
    build_manifest,
    is_done,
    open_store,
    video_key,
    write_json,
    write_video,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PrepareOptions:
    """How frames become crops. Defaults follow DeepfakeBench except ``size`` (it uses 256): 64 px keeps
    CPU training and attacks fast; use 256 (or the detector's input size) on a GPU."""

    frames: int = 32
    size: int = 64
    scale: float = 1.3
    detector: str = "haar"
    workers: int = 2
    #: detections below this confidence are not faces (None: the detector's ``MIN_SCORE``)
    min_score: float | None = None

    @property
    def threshold(self) -> float:
        return MIN_SCORE[self.detector] if self.min_score is None else self.min_score

    def check(self) -> None:
        FACE_DETECTORS.get(self.detector)  # an unknown name lists the valid ones
        rules = {
            "frames": self.frames >= 1,
            "size": 16 <= self.size <= 1024,
            "scale": 1.0 <= self.scale <= 3.0,
        }
        for key, ok in rules.items():
            if not ok:
                raise ConfigError(
                    f"prepare: {key}={getattr(self, key)} is out of range (frames >= 1, "
                    "size 16-1024, scale 1-3)"
                )
        if self.workers < 0:
            raise ConfigError(f"prepare: workers={self.workers} must be >= 0 (0 or 1: in this process)")


@dataclass(frozen=True)
class VideoResult:
    """What became of one video: ``state`` is done, skipped (already in the store) or corrupt."""

    video_id: str
    state: str
    frames: int = 0
    faces: int = 0
    error: str = ""


def _row(entry: VideoEntry, frame: int, face: Face | None, shard: str, row: int, error: str = "") -> dict:
    box = (face.x0, face.y0, face.x1, face.y1, face.score) if face else (np.nan,) * 5
    status = Status.CORRUPT if row < 0 else Status.FACE if face else Status.NO_FACE
    return {
        "video_id": entry.video_id,
        "frame": frame,
        "label": entry.label,
        "method": entry.method,
        "split": entry.split,
        **dict(zip(("x0", "y0", "x1", "y1", "score"), box)),
        "status": str(status),
        "shard": shard,
        "row": row,
        "source": str(entry.path),
        "error": error,
    }


def process_video(entry: VideoEntry, out: Path, options: PrepareOptions) -> VideoResult:
    """Decode, detect, crop and store one video (runs in a worker process). A video that fails for any
    reason of its own (a broken file, a decoder or detector error) is stored as one ``corrupt`` row with the
    reason, so one bad file never stops a long run; a ConfigError (e.g. a missing package) stops it."""
    try:
        images, rows = crops_of(entry, options)
    except ConfigError:
        raise
    except Exception as err:  # noqa: BLE001  (recorded in the manifest and the summary, never dropped)
        reason = str(err) if isinstance(err, UnreadableVideo) else f"{type(err).__name__}: {err}"
        write_video(out, entry.video_id, None, [_row(entry, -1, None, "", -1, reason)])
        return VideoResult(entry.video_id, "corrupt", error=reason)
    write_video(out, entry.video_id, images, rows)
    return VideoResult(entry.video_id, "done", len(rows), sum(r["status"] == str(Status.FACE) for r in rows))


def crops_of(entry: VideoEntry, options: PrepareOptions) -> tuple[np.ndarray, list[dict]]:
    """The face crops [T,3,size,size] of a video's sampled frames and their manifest rows."""
    numbers, frames = sample_frames(entry.path, options.frames)
    faces = track(FACE_DETECTORS.get(options.detector)(frames), options.threshold)
    height, width = frames.shape[1:3]
    shard = f"shards/{video_key(entry.video_id)}.npy"
    crops, rows = [], []
    for row, (number, frame, face) in enumerate(zip(numbers, frames, faces)):
        square = square_around(face, options.scale, height, width) if face else centre_square(height, width)
        crops.append(crop(frame, square, options.size))
        rows.append(_row(entry, number, face, shard, row))
    return np.stack(crops), rows


def _init_worker(detector: str) -> None:
    """One thread per worker: the parallelism is over videos."""
    os.environ["OMP_NUM_THREADS"] = "1"
    if detector == "mtcnn":
        import torch

        torch.set_num_threads(1)
    if detector == "haar":
        import cv2

        cv2.setNumThreads(1)


def _run_all(todo: list[VideoEntry], out: Path, options: PrepareOptions) -> Iterator[VideoResult]:
    if options.workers <= 1:
        yield from (process_video(entry, out, options) for entry in todo)
        return
    context = multiprocessing.get_context("spawn")  # no fork of a process that may hold torch threads
    pool = ProcessPoolExecutor(
        options.workers, mp_context=context, initializer=_init_worker, initargs=(options.detector,)
    )
    try:
        futures = [pool.submit(process_video, entry, out, options) for entry in todo]
        for future in as_completed(futures):
            yield future.result()
    finally:  # on Ctrl-C or an error, drop the queued videos (the finished ones are stored: rerun resumes)
        pool.shutdown(wait=True, cancel_futures=True)


def summarise(manifest: pd.DataFrame, listing: Listing, results: list[VideoResult], skipped: int) -> dict:
    """Counts of the whole store (this run and earlier ones) and of this run."""
    videos = manifest.drop_duplicates("video_id")
    stored = manifest[manifest["status"] != str(Status.CORRUPT)]
    by_video = stored.groupby("video_id")["status"].apply(lambda s: (s == str(Status.FACE)).any())
    corrupt = manifest[manifest["status"] == str(Status.CORRUPT)]
    return {
        "videos": len(videos),
        "videos_by_split": {s: _by_label(videos[videos["split"] == s]) for s in SPLITS},
        "frames": len(stored),
        "faces_found": int((stored["status"] == str(Status.FACE)).sum()),
        "no_face_frames": int((stored["status"] == str(Status.NO_FACE)).sum()),
        "videos_without_faces": int((~by_video).sum()),
        "corrupt_videos": len(corrupt),
        "corrupt": dict(zip(corrupt["video_id"], corrupt["error"])),
        "missing_videos": len(listing.missing),
        "missing_examples": listing.missing[:10],
        "this_run": {
            "prepared": sum(r.state == "done" for r in results),
            "corrupt": sum(r.state == "corrupt" for r in results),
            "skipped": skipped,
        },
    }


def _by_label(videos: pd.DataFrame) -> dict[str, int]:
    return {"real": int((videos["label"] == 0).sum()), "fake": int((videos["label"] == 1).sum())}


def _check_detector(options: PrepareOptions) -> None:
    """Fail before any work when the detector's package is missing (a clear install hint)."""
    FACE_DETECTORS.get(options.detector)(np.zeros((1, 32, 32, 3), np.uint8))


def prepare(
    dataset: str,
    root: str | Path,
    out: str | Path,
    options: PrepareOptions = PrepareOptions(),
    layout_params: dict[str, Any] | None = None,
    on_start: Callable[[int, int], None] | None = None,
    on_video: Callable[[VideoResult], None] | None = None,
) -> dict:
    """Prepare the raw data set ``dataset`` at ``root`` into the store ``out``; returns the summary.

    ``on_start(to_do, skipped)`` is called once the videos are listed, ``on_video`` after each video.
    """
    options.check()
    listing = LAYOUTS.build(dataset, root=str(root), **(layout_params or {}))
    _check_detector(options)
    out = Path(out).expanduser()
    defaults = {k: p.default for k, p in LAYOUTS.params_of(dataset).items() if k != "root"}
    params = json.loads(json.dumps(defaults | (layout_params or {}), default=str))
    settings = {k: v for k, v in asdict(options).items() if k != "workers"}
    open_store(out, {"dataset": dataset, "layout": params, **settings})
    if listing.missing:
        log.warning(
            "%s: %d videos not prepared (named by a split file but absent, or in no split), e.g. %s; "
            "all counted in summary.json",
            dataset,
            len(listing.missing),
            listing.missing[0],
        )
    todo = [e for e in listing.entries if not is_done(out, e.video_id)]
    skipped = len(listing.entries) - len(todo)
    if on_start:
        on_start(len(todo), skipped)
    results = []
    for result in _run_all(todo, out, options):
        results.append(result)
        if on_video:
            on_video(result)
    summary = summarise(build_manifest(out), listing, results, skipped)
    write_json(out / SUMMARY, {"dataset": dataset, "root": str(root), **summary})
    return summary
