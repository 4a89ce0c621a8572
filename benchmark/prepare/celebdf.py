"""Layout reader for Celeb-DF (v2) (Li et al., CVPR 2020, https://arxiv.org/abs/1909.12962)::

    <root>/Celeb-real/idX_NNNN.mp4          real (celebrities)
    <root>/YouTube-real/NNNNN.mp4           real (YouTube)
    <root>/Celeb-synthesis/idX_idY_NNNN.mp4 fake
    <root>/List_of_testing_videos.txt       the official test list (a copy ships with afsl-bench)

The test list reads ``<label> <folder>/<video>.mp4`` with **1 = real, 0 = fake**, the inverse of
afsl-bench's label 1 = fake; it is inverted here, once, and checked against the folder. Celeb-DF has no
validation list: the videos outside the test list go to train, and a stable 10% of them (by a hash of
the video id) to val, so thresholds are never fixed on test data.
"""

from __future__ import annotations

from pathlib import Path

from afsl_bench.core.errors import ConfigError
from afsl_bench.prepare.layout import (
    FAKE,
    LAYOUTS,
    REAL,
    Listing,
    VideoEntry,
    hashed_split,
    need_folder,
    need_root,
    no_videos,
    shipped_split_file,
)

FOLDERS = {"Celeb-real": REAL, "YouTube-real": REAL, "Celeb-synthesis": FAKE}
TEST_LIST = "List_of_testing_videos.txt"
LAYOUT = (
    "<root>/Celeb-real/*.mp4, <root>/YouTube-real/*.mp4, <root>/Celeb-synthesis/*.mp4, <root>/" + TEST_LIST
)


def read_test_list(path: Path) -> dict[str, int]:
    """'<folder>/<video>' -> label (1 = fake), inverting the list's 1 = real."""
    tests = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        flag, _, name = line.strip().partition(" ")
        if flag not in ("0", "1") or not name.endswith(".mp4"):
            raise ConfigError(
                f"{path}:{number}: expected '<1 real | 0 fake> <folder>/<video>.mp4', got '{line}'"
            )
        tests[name.removesuffix(".mp4")] = REAL if flag == "1" else FAKE
    return tests


def _checked(tests: dict[str, int], path: Path) -> dict[str, int]:
    for name, label in tests.items():
        folder = name.split("/")[0]
        if FOLDERS.get(folder, label) != label:
            raise ConfigError(
                f"{path}: {name} is labelled {'fake' if label else 'real'} but sits in {folder}/"
            )
    return tests


@LAYOUTS.register("celeb-df")
def list_celeb_df(root: str, test_list: str = "") -> Listing:
    """Celeb-DF v2: its official test list (``test_list``, default: the root's copy, else the shipped one);
    the other videos split 90/10 into train / val by a stable hash of the video id."""
    base = need_root(root, "celeb-df", LAYOUT)
    path = Path(test_list) if test_list else base / TEST_LIST
    if not path.is_file():
        path = shipped_split_file("celebdf", TEST_LIST)
    tests = _checked(read_test_list(path), path)
    entries = []
    for folder, label in FOLDERS.items():
        for video in sorted(need_folder(base / folder, "celeb-df", LAYOUT).glob("*.mp4")):
            vid = f"{folder}/{video.stem}"
            split = "test" if vid in tests else hashed_split(vid, val_percent=10, test_percent=0)
            entries.append(VideoEntry(vid, video, label, "real" if label == REAL else folder, split))
    on_disk = {e.video_id for e in entries}
    missing = [f"{base / name}.mp4 (in the test list)" for name in sorted(tests) if name not in on_disk]
    if not entries:
        raise no_videos("celeb-df", base, LAYOUT)
    return Listing(entries, missing, LAYOUT)
