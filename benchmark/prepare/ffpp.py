"""Layout readers for FaceForensics++ and the fakes made on its real videos (FaceShifter, DeeperForensics).

FaceForensics++ (Rossler et al., ICCV 2019, https://arxiv.org/abs/1901.08971)::

    <root>/original_sequences/youtube/<c>/videos/<id>.mp4           real, <c> in raw, c23, c40
    <root>/manipulated_sequences/<Method>/<c>/videos/<a>_<b>.mp4     fake: a's video, b's face

Official splits (shipped: benchmark/prepare/splits/ffpp/{train,val,test}.json): lists of [a, b] pairs; a
pair puts the reals a, b and the fakes a_b, b_a in one split (720 / 140 / 140 videos per class).
FaceShifter (Li et al., CVPR 2020, https://arxiv.org/abs/1912.13457) is the FF++ method folder
``FaceShifter``. DeeperForensics-1.0 (Jiang et al., CVPR 2020, https://arxiv.org/abs/2001.03024) swaps
its actors' faces into FF++'s real videos: ``<root>/manipulated_videos/<variant>/<target>_<source>.mp4``
with FF++'s c23 youtube videos as its real class; as in the AFSL paper its fakes follow the FF++ split of
their target video.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path

from afsl_bench.core.errors import ConfigError, DataNotFoundError
from afsl_bench.core.registry import did_you_mean
from afsl_bench.prepare.layout import (
    FAKE,
    LAYOUTS,
    REAL,
    SPLITS,
    Listing,
    VideoEntry,
    need_folder,
    need_root,
    no_videos,
    shipped_split_file,
)

FFPP_METHODS = ("Deepfakes", "Face2Face", "FaceSwap", "NeuralTextures")
KNOWN_METHODS = (*FFPP_METHODS, "FaceShifter")
FFPP_LAYOUT = (
    "<root>/original_sequences/youtube/<c>/videos/<id>.mp4 and "
    "<root>/manipulated_sequences/<Method>/<c>/videos/<a>_<b>.mp4, <c> in raw, c23, c40"
)
DFO_LAYOUT = (
    "<root>/manipulated_videos/<variant>/<target>_<source>.mp4, with FF++'s real videos under "
    "<ffpp_root>/original_sequences/youtube/<c>/videos/"
)


class Compression(StrEnum):
    RAW = "raw"
    C23 = "c23"
    C40 = "c40"


def read_pairs(folder: str) -> dict[str, list[list[str]]]:
    """Split name -> [a, b] pairs, from ``folder``/{train,val,test}.json (default: the shipped copies)."""
    pairs = {}
    for split in SPLITS:
        path = Path(folder) / f"{split}.json" if folder else shipped_split_file("ffpp", f"{split}.json")
        try:
            pairs[split] = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise ConfigError(f"cannot read the FF++ split file {path}: {err}") from None
    return pairs


def split_of_ids(pairs: dict[str, list[list[str]]]) -> dict[str, str]:
    """Real video id -> split."""
    return {vid: split for split, items in pairs.items() for pair in items for vid in pair}


def split_of_fakes(pairs: dict[str, list[list[str]]]) -> dict[str, str]:
    """Fake video name a_b -> split (both a_b and b_a for each pair [a, b])."""
    return {
        name: split for split, items in pairs.items() for a, b in items for name in (f"{a}_{b}", f"{b}_{a}")
    }


def collect(
    folder: Path, wanted: dict[str, str], make: Callable[[str, Path, str], VideoEntry]
) -> tuple[list[VideoEntry], list[str]]:
    """Entries for each name in ``wanted`` (name -> split) that exists as ``folder``/<name>.mp4."""
    entries, missing = [], []
    for name, split in sorted(wanted.items()):
        path = folder / f"{name}.mp4"
        if path.is_file():
            entries.append(make(name, path, split))
        else:
            missing.append(str(path))
    return entries, missing


def real_videos(root: Path, compression: Compression, pairs: dict, dataset: str) -> tuple[list, list]:
    folder = need_folder(
        root / "original_sequences" / "youtube" / compression / "videos", dataset, FFPP_LAYOUT
    )
    return collect(
        folder, split_of_ids(pairs), lambda n, p, s: VideoEntry(f"youtube/{n}", p, REAL, "real", s)
    )


def _check_methods(methods: tuple[str, ...]) -> None:
    for method in methods:
        if method not in KNOWN_METHODS:
            hint = did_you_mean(method, list(KNOWN_METHODS))
            raise ConfigError(f"unknown FF++ method '{method}'.{hint} Valid: {', '.join(KNOWN_METHODS)}")
    if not methods:
        raise ConfigError(f"give at least one FF++ method, from: {', '.join(KNOWN_METHODS)}")


def _listing(entries: list, missing: list, root: Path, dataset: str, layout: str) -> Listing:
    if not entries:
        raise no_videos(dataset, root, layout)
    return Listing(entries, missing, layout)


@LAYOUTS.register("ff++")
def list_ffpp(
    root: str,
    methods: tuple[str, ...] = FFPP_METHODS,
    compression: Compression = Compression.C23,
    splits: str = "",
) -> Listing:
    """FaceForensics++ reals and the fakes of ``methods`` at one compression; ``splits``: a folder with
    train/val/test.json to use instead of the official ones."""
    _check_methods(methods)
    base, pairs = need_root(root, "ff++", FFPP_LAYOUT), read_pairs(splits)
    entries, missing = real_videos(base, Compression(compression), pairs, "ff++")
    for method in methods:
        folder = need_folder(
            base / "manipulated_sequences" / method / compression / "videos", "ff++", FFPP_LAYOUT
        )
        found, lost = collect(
            folder, split_of_fakes(pairs), lambda n, p, s, m=method: VideoEntry(f"{m}/{n}", p, FAKE, m, s)
        )
        entries, missing = entries + found, missing + lost
    return _listing(entries, missing, base, "ff++", FFPP_LAYOUT)


@LAYOUTS.register("faceshifter")
def list_faceshifter(root: str, compression: Compression = Compression.C23, splits: str = "") -> Listing:
    """FaceShifter fakes (FF++'s ``FaceShifter`` method folder) and FF++'s reals, official FF++ splits."""
    return list_ffpp(root, ("FaceShifter",), compression, splits)


@LAYOUTS.register("deeperforensics")
def list_deeperforensics(
    root: str,
    ffpp_root: str = "",
    variant: str = "end_to_end",
    compression: Compression = Compression.C23,
    splits: str = "",
) -> Listing:
    """DeeperForensics-1.0 fakes of ``variant`` and FF++'s reals (from ``ffpp_root``, default ``root``);
    each fake takes the FF++ split of its target video."""
    base, pairs = need_root(root, "deeperforensics", DFO_LAYOUT), read_pairs(splits)
    real_root = need_root(ffpp_root or root, "deeperforensics (ffpp_root)", DFO_LAYOUT)
    try:
        entries, missing = real_videos(real_root, Compression(compression), pairs, "deeperforensics")
    except DataNotFoundError as err:
        raise DataNotFoundError(f"{err}; point to FF++ with --set ffpp_root=PATH") from None
    folder = need_folder(base / "manipulated_videos" / variant, "deeperforensics", DFO_LAYOUT)
    splits_of = split_of_ids(pairs)
    for path in sorted(folder.glob("*.mp4")):
        split = splits_of.get(path.stem.split("_")[0])
        if split is None:
            missing.append(f"{path} (its target is in no FF++ split)")
            continue
        entries.append(VideoEntry(f"DeeperForensics/{path.stem}", path, FAKE, "DeeperForensics", split))
    return _listing(entries, missing, base, "deeperforensics", DFO_LAYOUT)
