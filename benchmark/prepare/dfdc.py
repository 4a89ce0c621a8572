"""Layout reader for the DeepFake Detection Challenge data set (Dolhansky et al. 2020,
https://arxiv.org/abs/2006.07397)::

    <root>/dfdc_train_part_<N>/metadata.json   {"<name>.mp4": {"label": "REAL"|"FAKE", "split", "original"}}
    <root>/dfdc_train_part_<N>/<name>.mp4

(``<root>`` may also be a single folder holding ``metadata.json``, such as Kaggle's train_sample_videos.)
The public training parts carry no test split, so videos are split 80/10/10 by a stable hash of their
source video (``original`` for fakes, the video itself for reals): a fake always lands in the split of the
real video it was made from, whichever part holds it.
"""

from __future__ import annotations

import json
from pathlib import Path

from afsl_bench.core.errors import ConfigError
from afsl_bench.prepare.layout import (
    FAKE,
    LAYOUTS,
    REAL,
    Listing,
    VideoEntry,
    hashed_split,
    need_root,
    no_videos,
)

LAYOUT = "<root>/dfdc_train_part_<N>/metadata.json with the part's *.mp4 beside it"
LABELS = {"REAL": REAL, "FAKE": FAKE}


def read_metadata(path: Path) -> dict[str, dict]:
    try:
        meta = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ConfigError(f"cannot read the DFDC metadata {path}: {err}") from None
    for name, item in meta.items():
        if not isinstance(item, dict) or item.get("label") not in LABELS:
            raise ConfigError(f"{path}: entry {name} needs a label REAL or FAKE, got {item!r}")
    return meta


def part_folders(base: Path) -> list[Path]:
    if (base / "metadata.json").is_file():
        return [base]
    return sorted(p for p in base.glob("dfdc_train_part_*") if (p / "metadata.json").is_file())


@LAYOUTS.register("dfdc")
def list_dfdc(root: str) -> Listing:
    """DFDC training parts: labels from each part's metadata.json, splits by source video (80/10/10)."""
    base = need_root(root, "dfdc", LAYOUT)
    entries, missing = [], []
    for part in part_folders(base):
        for name, item in sorted(read_metadata(part / "metadata.json").items()):
            path, label = part / name, LABELS[item["label"]]
            source = Path(item.get("original") or name).stem
            if not path.is_file():
                missing.append(f"{path} (in {part.name}/metadata.json)")
                continue
            method = "real" if label == REAL else "DFDC"
            entries.append(VideoEntry(Path(name).stem, path, label, method, hashed_split(source)))
    if not entries:
        raise no_videos("dfdc", base, LAYOUT)
    return Listing(entries, missing, LAYOUT)
