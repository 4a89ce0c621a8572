"""Benchmark: ``afsl-bench prepare`` throughput (frames/s) and loading from a prepared store (images/s).

Prepare: a DFDC-layout tree of ``--videos`` H.264 videos (``--video-frames`` frames of ``--side`` px, synthetic
faces from ``afsl_bench.data.synthetic_faces``) is prepared with ``--frames`` sampled frames per video; the
rate counts sampled frames (decode + face detection + crop + write) per second of wall time.

Loading: a store of ``--load-videos`` x 32 random 64 px crops is written with the store's own writer, then
read through the ``dfdc`` data set as training does: shuffled batches of 256 (``Split.batches``, float in
[0, 1]); the rate is images per second over one pass (the target is >= 5,000 images/s at 64 px).

Run from a checkout installed with ``pip install -e '.[faces]'`` (defaults take well under a minute)::

    python scripts/bench_prepare.py
    python scripts/bench_prepare.py --videos 16 --side 480 --workers 2 --detector mtcnn
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import zlib
from pathlib import Path

import av
import numpy as np
import torch

from afsl_bench.data import DATASETS
from afsl_bench.data.synthetic_faces import render, sample_identities, sample_views
from afsl_bench.prepare import PrepareOptions, prepare
from afsl_bench.prepare.store import build_manifest, open_store, video_key, write_video


def face_frames(seed: int, n: int, side: int) -> np.ndarray:
    """uint8 [n, side, side, 3]: one synthetic identity in ``n`` near-frontal views."""
    g = torch.Generator().manual_seed(seed)
    scene = sample_views(sample_identities(1, g), torch.zeros(n, dtype=torch.long), g, (0.0, 0.02))
    scene["yaw"], scene["roll"] = 0.3 * scene["yaw"], 0.0 * scene["roll"]
    return render(scene, side).permute(0, 2, 3, 1).mul(255).round().to(torch.uint8).numpy()


def write_mp4(path: Path, frames: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt, stream.options = "yuv420p", {"crf": "23"}  # FF++ c23's quality
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())


def dfdc_tree(root: Path, videos: int, frames: int, side: int) -> Path:
    part = root / "dfdc_train_part_0"
    meta = {}
    for k in range(videos):
        name = f"video{k:04d}.mp4"
        write_mp4(part / name, face_frames(zlib.crc32(name.encode()), frames, side))
        meta[name] = {"label": "REAL" if k % 2 else "FAKE", "split": "train", "original": None}
    (part / "metadata.json").write_text(json.dumps(meta))
    return root


def bench_prepare(args: argparse.Namespace, work: Path) -> dict:
    raw = dfdc_tree(work / "raw", args.videos, args.video_frames, args.side)
    options = PrepareOptions(frames=args.frames, size=64, detector=args.detector, workers=args.workers)
    start = time.perf_counter()
    summary = prepare("dfdc", raw, work / "store", options)
    seconds = time.perf_counter() - start
    return {"frames": summary["frames"], "faces": summary["faces_found"], "seconds": seconds}


def synthetic_store(out: Path, videos: int, size: int = 64, frames: int = 32) -> Path:
    """A dfdc store of random crops written by the store's writer (splits: a third each)."""
    open_store(out, {"dataset": "dfdc", "layout": {}, "frames": frames, "size": size, "scale": 1.3})
    rng = np.random.default_rng(0)
    for k in range(videos):
        vid, split = f"v{k:05d}", ("train", "val", "test")[k % 3]
        images = rng.integers(0, 256, (frames, 3, size, size), dtype=np.uint8)
        rows = [
            {"video_id": vid, "frame": f, "label": k % 2, "method": "real" if k % 2 == 0 else "DFDC",
             "split": split, "x0": 0.0, "y0": 0.0, "x1": 1.0, "y1": 1.0, "score": 1.0, "status": "face",
             "shard": f"shards/{video_key(vid)}.npy", "row": f, "source": "", "error": ""}
            for f in range(frames)
        ]  # fmt: skip
        write_video(out, vid, images, rows)
    build_manifest(out)
    return out


def bench_loading(videos: int, work: Path) -> dict:
    store = synthetic_store(work / "load", videos)
    start = time.perf_counter()
    split = DATASETS.build("dfdc", prepared=str(store)).train
    opened = time.perf_counter() - start
    start, n = time.perf_counter(), 0
    for batch in split.batches(256, shuffle=True):
        n += len(batch)
    return {"images": n, "open_s": opened, "seconds": time.perf_counter() - start}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", type=int, default=8)
    parser.add_argument("--video-frames", type=int, default=64)
    parser.add_argument("--side", type=int, default=256)
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--detector", default="haar")
    parser.add_argument("--load-videos", type=int, default=600)
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        p = bench_prepare(args, Path(tmp))
        print(
            f"prepare ({args.detector}, {args.workers} worker(s), {args.videos} videos of {args.video_frames} "
            f"frames at {args.side} px): {p['frames']} frames ({p['faces']} with a face) in {p['seconds']:.1f} s "
            f"= {p['frames'] / p['seconds']:.1f} frames/s"
        )
        load = bench_loading(args.load_videos, Path(tmp))
        print(
            f"loading (64 px, shuffled batches of 256): {load['images']} images in {load['seconds']:.2f} s = "
            f"{load['images'] / load['seconds']:.0f} images/s (store opened in {load['open_s']:.2f} s)"
        )


if __name__ == "__main__":
    main()
