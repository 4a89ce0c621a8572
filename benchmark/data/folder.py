"""``folder``: a user's own face images in ``real/`` and ``fake/`` folders.

Layouts (checked in this order):
- ``<root>/{train,val,test}/{real,fake}/*`` - the user's own splits, used as given;
- ``<root>/{real,fake}/*`` - split by a seeded, stratified shuffle into train / val / test.

Images are read with Pillow, converted to RGB (grey-scale and RGBA are common in scraped sets), centre-cropped
to a square and resized to ``resolution``. Every image is its own ``video_id``.
"""

from __future__ import annotations

import functools
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from afsl_bench.core.errors import ConfigError, DataNotFoundError
from afsl_bench.core.registry import Buildable, Location
from afsl_bench.core.types import DataBundle, Split
from afsl_bench.data.base import DATASETS

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"}
SPLITS = ("train", "val", "test")
LAYOUT = "<root>/real/*.png and <root>/fake/*.png (or <root>/{train,val,test}/{real,fake}/)"


def list_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)


def as_rgb(image: Image.Image, path: Path) -> Image.Image:
    """An image of any PIL mode as 8-bit RGB: 16-bit and 32-bit grey are scaled to 8 bits (``convert`` would
    clip them to nearly white), palette, RGBA (alpha dropped), CMYK, YCbCr and grey converted; a mode with no
    known range (float images) is refused by name."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        values = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or values.max() <= 65535 else float(values.max())
        grey = np.clip(np.round(values / top * 255), 0, 255).astype(np.uint8)
        return Image.fromarray(grey, "L").convert("RGB")
    if image.mode == "F":
        raise ConfigError(f"image {path} holds floating-point pixels (mode F) of unknown range: save it as 8- or "
                          "16-bit PNG or JPEG")  # fmt: skip
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        return image.convert("RGBA").convert("RGB")
    return image.convert("RGB")


def load_image(path: Path, resolution: int) -> np.ndarray:
    """uint8 [3, r, r]: RGB (``as_rgb``), centre-cropped to a square, resized with a bilinear filter."""
    try:
        with Image.open(path) as image:
            image = as_rgb(image, path)
            side = min(image.size)
            left, top = (image.width - side) // 2, (image.height - side) // 2
            image = image.crop((left, top, left + side, top + side)).resize(
                (resolution, resolution), Image.BILINEAR
            )
            return np.asarray(image).transpose(2, 0, 1).copy()
    except (UnidentifiedImageError, OSError) as err:
        raise ConfigError(f"cannot read image {path}: {err}; remove or replace the file") from None


def make_split(files: list[tuple[Path, int]], root: Path, resolution: int) -> Split:
    images = (
        np.stack([load_image(p, resolution) for p, _ in files])
        if files
        else np.zeros((0, 3, resolution, resolution), np.uint8)
    )
    ids = [str(p.relative_to(root)) for p, _ in files]
    labels = torch.tensor([label for _, label in files], dtype=torch.long)
    methods = ["real" if label == 0 else "fake" for _, label in files]
    return Split(torch.from_numpy(images), labels, ids, list(ids), methods)


def content_id(root: str = "", **_: Any) -> str | None:
    """What the folder holds, for cell and training ids (``afsl_bench.runner.plan.component_of``): a digest of every
    image's path (relative to ``root``) and size in bytes. A listing and a stat per file, no reads, so it
    stays fast on a 100k-image folder, and a copy of the folder to another place or machine keeps its ids
    (modification times would not); an image replaced by another of exactly the same size is the case it
    misses. None when the folder does not exist (loading then says so). Within one process the digest is
    reused while no folder under ``root`` changed (a sweep plans hundreds of cells on one folder)."""
    base = Path(root).expanduser()
    if not root or not base.is_dir():
        return None
    folders = tuple(sorted((d, os.stat(d).st_mtime_ns) for d, _, _ in os.walk(base)))
    return _digest(base, folders)


@functools.lru_cache(maxsize=8)
def _digest(base: Path, folders: tuple) -> str:
    digest = hashlib.sha256()
    for path in list_images(base):
        digest.update(f"{path.relative_to(base).as_posix()}\0{path.stat().st_size}\n".encode())
    return digest.hexdigest()[:16]


def labelled_files(folder: Path) -> list[tuple[Path, int]]:
    return [(p, 0) for p in list_images(folder / "real")] + [(p, 1) for p in list_images(folder / "fake")]


def seeded_split(
    files: list[tuple[Path, int]], val_fraction: float, test_fraction: float, seed: int
) -> dict[str, list[tuple[Path, int]]]:
    """Stratified by label: each class is shuffled with ``seed`` and cut into test, val, train."""
    out: dict[str, list[tuple[Path, int]]] = {s: [] for s in SPLITS}
    rng = np.random.default_rng(seed)
    for label in (0, 1):
        group = [f for f in files if f[1] == label]
        order = rng.permutation(len(group))
        n_test, n_val = round(test_fraction * len(group)), round(val_fraction * len(group))
        out["test"] += [group[i] for i in order[:n_test]]
        out["val"] += [group[i] for i in order[n_test : n_test + n_val]]
        out["train"] += [group[i] for i in order[n_test + n_val :]]
    return out


@DATASETS.register("folder")
@dataclass(frozen=True)
class Folder(Buildable):
    """A user's own images: real/ and fake/ folders, split by a seed or by the user's train/val/test folders."""

    root: Annotated[str, Location()] = ""
    resolution: int = 64
    val_fraction: float = 0.2
    test_fraction: float = 0.2
    seed: int = 0

    def __post_init__(self) -> None:
        val, test = self.val_fraction, self.test_fraction
        if not 0 <= val < 1 or not 0 < test <= 1 or val + test > 1:
            raise ConfigError(
                "val_fraction must be in [0, 1), test_fraction in (0, 1], and their sum at most 1 (1: no "
                "training split, for evaluating published weights with train.epochs=0)"
            )

    def content_id(self) -> str | None:
        """The folder's contents enter every cell id that uses it (``content_id``)."""
        return content_id(self.root)

    def build(self) -> DataBundle:
        base = Path(self.root).expanduser()
        if not self.root or not base.is_dir():
            raise DataNotFoundError(
                f"data.root '{self.root}' is not a folder: the folder data set expects {LAYOUT}; "
                "pass it with --set data.root=PATH (--set eval.root=PATH when it is the --eval-dataset)"
            )
        if all((base / s).is_dir() for s in SPLITS):
            parts = {s: labelled_files(base / s) for s in SPLITS}
        else:
            parts = seeded_split(labelled_files(base), self.val_fraction, self.test_fraction, self.seed)
        shares = {"train": 1 - self.val_fraction - self.test_fraction, "val": self.val_fraction, "test": 1}
        found = [f for files in parts.values() for f in files]
        for name, files in parts.items():
            if files or shares[name] <= 1e-9:
                continue
            if not found:
                raise DataNotFoundError(f"no images for the {name} split under {base}: expected {LAYOUT}")
            fakes = sum(label for _, label in found)
            raise DataNotFoundError(
                f"too few images under {base}: {len(found) - fakes} real and {fakes} fake leave the {name} split "
                f"empty at val_fraction={self.val_fraction}, test_fraction={self.test_fraction}; add images, or "
                "change the fractions (--set data.test_fraction=1 --set train.epochs=0 scores them all with "
                "published weights)"
            )
        splits = {name: make_split(files, base, self.resolution) for name, files in parts.items()}
        counts = {k: len(v) for k, v in splits.items()}
        info = {"root": str(base), "resolution": self.resolution, "counts": counts}
        return DataBundle("folder", splits["train"], splits["val"], splits["test"], info)
