"""Tiny raw data sets in the real on-disk layouts: H.264 mp4 files of synthetic faces written with PyAV.

Each video is 8 frames of 128 px (a face rendered by ``afsl_bench.data.synthetic_faces``, which OpenCV's
Haar cascade and MTCNN both find); ``blank`` videos hold no face and ``corrupt`` files are not videos.
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import av
import numpy as np
import torch

from afsl_bench.data.synthetic_faces import render, sample_identities, sample_views
from afsl_bench.prepare.layout import hashed_split

FRAMES, SIDE = 8, 128
# The first official FF++ pair of each split (benchmark/prepare/splits/ffpp/*.json)
FFPP_PAIRS = {"train": ("071", "054"), "val": ("720", "672"), "test": ("953", "974")}


def face_frames(seed: int, n: int = FRAMES, side: int = SIDE) -> np.ndarray:
    """uint8 [n, side, side, 3]: one synthetic identity in ``n`` near-frontal views, no camera noise."""
    g = torch.Generator().manual_seed(seed)
    scene = sample_views(sample_identities(1, g), torch.zeros(n, dtype=torch.long), g, (0.0, 0.0))
    scene["yaw"], scene["roll"] = 0.3 * scene["yaw"], 0.0 * scene["roll"]  # near-frontal: Haar's domain
    scene["light"][:, :2] *= 0.3  # no hard side light
    return render(scene, side).permute(0, 2, 3, 1).mul(255).round().to(torch.uint8).numpy()


def write_mp4(path: Path, frames: np.ndarray, codec: str = "libx264", pix_fmt: str = "yuv420p") -> Path:
    """RGB frames [T,H,W,3] -> an mp4 (H.264 4:2:0 by default; e.g. codec png + pix_fmt gray: a grey video)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=8)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = pix_fmt
        if codec == "libx264":
            stream.options = {"crf": "18", "preset": "ultrafast"}
        for frame in frames:
            rgb = av.VideoFrame.from_ndarray(frame, format="rgb24")
            container.mux(stream.encode(rgb.reformat(format=pix_fmt)))
        container.mux(stream.encode())
    return path


def face_video(path: Path, name: str) -> Path:
    return write_mp4(path, face_frames(zlib.crc32(name.encode())))


def blank_video(path: Path) -> Path:
    return write_mp4(path, np.full((FRAMES, SIDE, SIDE, 3), 127, np.uint8))


def corrupt_video(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x00\x00\x00\x18ftypmp42 this is not a video" * 4)
    return path


def ffpp_reals(root: Path, compression: str = "c23") -> list[str]:
    folder = root / "original_sequences" / "youtube" / compression / "videos"
    ids = [i for pair in FFPP_PAIRS.values() for i in pair]
    for vid in ids:
        face_video(folder / f"{vid}.mp4", vid)
    return ids


def ffpp_tree(root: Path, method: str = "Deepfakes", compression: str = "c23") -> Path:
    """6 reals, 6 fakes of ``method`` (a_b, b_a per pair); the test fake 974_953 is blank (no face) and an
    extra train fake 054_071 is replaced by a corrupt file."""
    ffpp_reals(root, compression)
    folder = root / "manipulated_sequences" / method / compression / "videos"
    for a, b in FFPP_PAIRS.values():
        face_video(folder / f"{a}_{b}.mp4", f"{method}{a}_{b}")
    blank_video(folder / "974_953.mp4")
    corrupt_video(folder / "054_071.mp4")
    face_video(folder / "672_720.mp4", f"{method}672_720")
    return root


def deeperforensics_tree(root: Path) -> Path:
    """FF++'s reals plus one DeeperForensics fake per split target."""
    ffpp_reals(root)
    for a, _ in FFPP_PAIRS.values():
        face_video(root / "manipulated_videos" / "end_to_end" / f"{a}_M101.mp4", f"dfo{a}")
    return root


def names_in_splits(prefix: str, fmt: str, splits: dict[str, int], **percent: int) -> list[tuple[str, str]]:
    """(name, split) pairs: the first names ``fmt.format(k)`` whose hashed split fills ``splits``."""
    out, need = [], dict(splits)
    for k in range(10_000):
        name = fmt.format(k)
        split = hashed_split(f"{prefix}{name}", **percent)
        if need.get(split, 0) > 0:
            out.append((name, split))
            need[split] -= 1
        if not any(need.values()):
            return out
    raise AssertionError("no names found")


def celebdf_tree(root: Path) -> dict[str, str]:
    """Celeb-DF v2 layout with its own test list (1 = real, 0 = fake); returns video_id -> split."""
    splits = {"train": 1, "val": 1}
    real = names_in_splits("Celeb-real/", "id{}_0000", splits, val_percent=10, test_percent=0)
    fake = names_in_splits("Celeb-synthesis/", "id{}_id9_0000", splits, val_percent=10, test_percent=0)
    expected = {f"Celeb-real/{n}": s for n, s in real} | {f"Celeb-synthesis/{n}": s for n, s in fake}
    expected |= {
        "Celeb-real/id500_0001": "test",
        "YouTube-real/00001": "test",
        "Celeb-synthesis/id500_id9_0001": "test",
    }
    for vid in expected:
        face_video(root / f"{vid}.mp4", vid)
    (root / "YouTube-real").mkdir(exist_ok=True)
    tests = [
        "1 Celeb-real/id500_0001.mp4",
        "1 YouTube-real/00001.mp4",
        "0 Celeb-synthesis/id500_id9_0001.mp4",
    ]
    (root / "List_of_testing_videos.txt").write_text("\n".join(tests))
    return expected


def dfdc_tree(root: Path) -> dict[str, str]:
    """One DFDC part: a real and its fake in each split, plus one metadata entry with no file."""
    reals = names_in_splits("", "real{:06d}", {"train": 1, "val": 1, "test": 1})
    part = root / "dfdc_train_part_0"
    meta, expected = {}, {}
    for name, split in reals:
        meta[f"{name}.mp4"] = {"label": "REAL", "split": "train", "original": None}
        meta[f"fake_{name}.mp4"] = {"label": "FAKE", "split": "train", "original": f"{name}.mp4"}
        expected |= {name: split, f"fake_{name}": split}
    for name in expected:
        face_video(part / f"{name}.mp4", name)
    meta["absent.mp4"] = {"label": "FAKE", "split": "train", "original": f"{reals[0][0]}.mp4"}
    (part / "metadata.json").write_text(json.dumps(meta))
    return expected
