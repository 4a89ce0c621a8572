"""``afsl-bench predict``: what a detector says of given images or videos, and what an attack does to it.

Each input is scored as the detector's model of P(fake) (softmax of its two logits at its own decision
rule). A video gives ``frames`` frames evenly spaced over it, each scored, and their mean (the video-level
score of the benchmark's metrics). With ``face_detector`` the largest face of each image or frame is cropped
as ``prepare`` crops it (a square of 1.3 x the face box, DeepfakeBench's); else the whole image is resized to
the detector's input size with Pillow's default filter, as the MesoNet authors' pipeline does.

With an attack, each input is attacked towards the other decision than the model's clean one (an attack
needs a label; for an input whose truth is unknown the model's own answer is the one to flip), and the
adversarial P(fake), the L-inf size of the change and its SSIM are reported beside the clean ones. The
adversarial image is scored as a PNG delivers it, rounded to 8 bits per channel (for an L-inf budget that
is a multiple of 1/255 the rounded image stays inside the ball).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image, UnidentifiedImageError

from afsl_bench.attacks import Attack
from afsl_bench.core.errors import ConfigError
from afsl_bench.core.spec import Component
from afsl_bench.data.folder import IMAGE_SUFFIXES, as_rgb
from afsl_bench.detectors.base import Detector
from afsl_bench.detectors.weights import load_state, read_state_dict
from afsl_bench.prepare.faces import FACE_DETECTORS, largest
from afsl_bench.prepare.frames import UnreadableVideo, centre_square, crop, sample_frames, square_around
from afsl_bench.runner.evaluation import perceptual
from afsl_bench.runner.plan import build_detector
from afsl_bench.store.disk import RecordStore

VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v"}
#: the face square's side as a multiple of the face box (DeepfakeBench's crop, as ``prepare`` makes it)
FACE_SCALE = 1.3


@dataclass(frozen=True)
class Item:
    """One scored input: an image, or one frame of a video (``frame`` its number in the video)."""

    source: Path
    frame: int | None
    pixels: np.ndarray  # uint8 [3, size, size]
    face: bool | None  # whether a face was found (None: no face detector asked for)


def expand(paths: Sequence[Path]) -> list[Path]:
    """Images and videos of the given files and folders (recursively), in a stable order."""
    found: list[Path] = []
    for path in paths:
        path = Path(path).expanduser()
        if path.is_dir():
            inside = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES | VIDEO_SUFFIXES)
            if not inside:
                raise ConfigError(
                    f"{path} holds no image or video ({', '.join(sorted(IMAGE_SUFFIXES))}, ...)"
                )
            found += inside
        elif path.is_file():
            found.append(path)
        else:
            raise ConfigError(f"{path} does not exist: give image or video files, or folders of them")
    return found


def load_items(paths: Sequence[Path], size: int, face_detector: str | None, frames: int) -> list[Item]:
    """Every input as ``size`` x ``size`` RGB crops: an image once, a video as ``frames`` frames."""
    find = FACE_DETECTORS.get(face_detector) if face_detector else None
    items: list[Item] = []
    for path in expand(paths):
        if path.suffix.lower() in VIDEO_SUFFIXES:
            try:
                numbers, pictures = sample_frames(path, frames)
            except UnreadableVideo as err:
                raise ConfigError(f"cannot read video {path} ({err}): no decodable frame") from None
        else:
            numbers, pictures = [None], _read_image(path)[None]
        for number, picture in zip(numbers, pictures, strict=True):
            pixels, face = _square(picture, size, find)
            items.append(Item(path, number, pixels, face))
    return items


def _read_image(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as image:
            return np.asarray(as_rgb(image, path))
    except (UnidentifiedImageError, OSError) as err:
        raise ConfigError(f"cannot read image {path} ({err}): give an image file (JPEG, PNG, ...)") from None


def _square(picture: np.ndarray, size: int, find) -> tuple[np.ndarray, bool | None]:
    """The crop the detector sees: the largest face's square, else (no face detector) the whole image
    resized; a face detector that finds no face falls back to the centre square."""
    if find is None:
        resized = Image.fromarray(picture).resize((size, size))  # Pillow's default filter, as the authors'
        return np.asarray(resized).transpose(2, 0, 1).copy(), None
    face = largest(find(picture[None])[0])
    height, width = picture.shape[:2]
    square = square_around(face, FACE_SCALE, height, width) if face else centre_square(height, width)
    return crop(picture, square, size), face is not None


def store_model(train_id: str, results_dir: Path | str) -> Detector:
    """The detector a results folder trained under ``train_id`` (a unique prefix is enough): rebuilt from a
    record's spec, loaded from its checkpoint."""
    store = RecordStore(results_dir)
    matches = sorted({r.train_id for r in store if r.train_id and r.train_id.startswith(train_id) and r.ok})
    if len(matches) != 1:
        found = "no finished cell of" if not matches else f"{len(matches)} trained models match"
        raise ConfigError(
            f"{found} training id '{train_id}' in {store.records}: give the train_id of a record there "
            "(afsl-bench table shows cells; each record names its train_id)"
        )
    record = next(r for r in store.by_train(matches[0]) if r.ok)
    checkpoint = store.checkpoints / f"{matches[0]}.pt"
    model = build_detector(Component(**record.spec["detector"]))
    load_state(model, read_state_dict(checkpoint), str(checkpoint))
    return model.eval()


def predict(
    model: torch.nn.Module,
    items: list[Item],
    attack: Attack | None = None,
    device: torch.device | str = "cpu",
    batch_size: int = 32,
    on_batch: Callable[[int, int], None] = lambda done, total: None,
) -> tuple[pd.DataFrame, torch.Tensor | None]:
    """One row per item (clean P(fake) and decision; with ``attack`` also the adversarial ones, the L-inf
    of the change and its SSIM), and the adversarial images [N, 3, H, W] in [0, 1] (None without attack)."""
    x_all = torch.from_numpy(np.stack([item.pixels for item in items])).float() / 255
    rows, adversarial = [], []
    for start in range(0, len(items), batch_size):
        x = x_all[start : start + batch_size].to(device)
        with torch.no_grad():
            clean = torch.softmax(model(x), dim=1)[:, 1]
        batch = {"p_fake": clean.cpu()}
        if attack is not None:
            y = (clean > 0.5).long()
            # scored as it is saved: on the 8-bit grid (the inputs are 8-bit, so an L-inf ball stays whole)
            x_adv = (attack.run(model, x, y).x_adv.detach() * 255).round() / 255
            with torch.no_grad():
                batch["adv_p_fake"] = torch.softmax(model(x_adv), dim=1)[:, 1].cpu()
            batch["linf"] = (x_adv - x).abs().amax(dim=(1, 2, 3)).cpu()
            batch["ssim"] = perceptual(x.cpu(), x_adv.cpu())["ssim"]
            adversarial.append(x_adv.cpu())
        rows.append(pd.DataFrame({k: v.numpy() for k, v in batch.items()}))
        on_batch(min(start + batch_size, len(items)), len(items))
    table = pd.concat(rows, ignore_index=True)
    table.insert(0, "input", [str(item.source) for item in items])
    table.insert(1, "frame", pd.array([item.frame for item in items], dtype="Int64"))
    table["fake"] = table["p_fake"] > 0.5
    if attack is not None:
        table["adv_fake"] = table["adv_p_fake"] > 0.5
    if any(item.face is not None for item in items):
        table["face_found"] = [item.face for item in items]
    return table, torch.cat(adversarial) if adversarial else None


def video_means(table: pd.DataFrame) -> pd.DataFrame:
    """One row per video: the mean P(fake) over its frames (clean and adversarial), the video-level score."""
    frames = table[table["frame"].notna()]
    columns = [c for c in ("p_fake", "adv_p_fake") if c in frames]
    means = frames.groupby("input", sort=True)[columns].mean().reset_index()
    means["frames"] = frames.groupby("input", sort=True).size().to_numpy()
    return means


def save_adversarial(items: list[Item], x_adv: torch.Tensor, out_dir: Path) -> list[Path]:
    """Per item, the adversarial image (PNG, lossless) and a side-by-side picture: the original, the
    adversarial, and their difference amplified to the full range (mid-grey = no change)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for item, adv in zip(items, x_adv, strict=True):
        stem = item.source.stem + (f"_frame{item.frame}" if item.frame is not None else "")
        original = item.pixels.transpose(1, 2, 0)
        adversarial = (adv.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
        diff = adversarial.astype(np.float32) - original.astype(np.float32)
        scale = 127.0 / max(float(np.abs(diff).max()), 1.0)
        amplified = np.clip(128 + diff * scale, 0, 255).astype(np.uint8)
        Image.fromarray(adversarial).save(out_dir / f"{stem}_adv.png")
        Image.fromarray(np.concatenate([original, adversarial, amplified], axis=1)).save(
            out_dir / f"{stem}_side_by_side.png"
        )
        written += [out_dir / f"{stem}_adv.png", out_dir / f"{stem}_side_by_side.png"]
    return written
