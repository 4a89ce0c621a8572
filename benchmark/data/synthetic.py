"""The embedded data sets ``synthetic`` and ``synthetic-hq`` (data version 2): procedural faces, each fake a
forgery of its own real frame carrying bounded cues.

No download, deterministic by seed, generated in a few seconds on a CPU. Identities are split between
train / val / test (about 60/20/20, no identity in two splits, donors of swapped faces from the same split).
Per identity, ``images_per_identity / 2`` views are captured (render -> camera noise -> the camera's
sharpening and resampling, ``synthetic_cues.camera``); each view gives one real sample (the capture) and
one fake (the capture forged by one of ``methods``, then marked with the two bounded cues of
``synthetic_cues``), as FaceForensics++ pairs each manipulated video with its original. Why the cues and
their amplitudes are what they are, and the robust ceiling they give: ``docs/data-design.md``.

``synthetic`` mirrors FaceForensics++ (four 2019-era methods with visible traces); ``synthetic-hq`` mirrors
Celeb-DF (cleaner blends, weaker cues, a different method mix, other identities): train on the first, test
on the second for a cross-data-set score. Results of a call are cached per process: treat the returned
tensors as read-only. Data version 1 (fakes and reals from different views, one planted checkerboard as the
only robust cue) was replaced by version 2 (docs/changelog.md); the configs' ``version`` puts the data
version in every cell spec, so records of the two are never mixed.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import time
import warnings
import zlib
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from afsl_bench.core.errors import ConfigError
from afsl_bench.core.registry import Buildable, did_you_mean
from afsl_bench.core.types import DataBundle, Split
from afsl_bench.data.base import DATASETS
from afsl_bench.data.synthetic_cues import (
    FFPP_CUES,
    HQ_CUES,
    Cues,
    camera,
    colour_mismatch,
    face_box,
    resampling_trace,
)
from afsl_bench.data.synthetic_faces import (
    Params,
    landmark_mask,
    render,
    sample_identities,
    sample_views,
    take,
)
from afsl_bench.data.synthetic_fakes import FFPP_STYLE, HQ_STYLE, METHODS, NEEDS_DONOR, FakeInputs, Style

log = logging.getLogger(__name__)

FFPP_METHODS = ("deepfakes", "face2face", "faceswap", "neuraltextures")
HQ_METHODS = ("deepfakes", "gan-upsample", "sbi")
MIN_RESOLUTION, MAX_RESOLUTION = 32, 512
#: version 2: paired fakes with bounded cues; version 1 had one planted checkerboard
DATA_VERSION = 2
MIN_IDENTITIES = 10  # each split then holds >= 2 identities, so a swap always has a donor
#: what each embedded data set is, in one sentence, for reports (the leaderboard says it next to every table)
NOTES = {
    "synthetic": (
        f"the embedded procedural face set, data version {DATA_VERSION}: each fake is its own real frame "
        f"forged, with a resampling trace of at least {round(FFPP_CUES.trace[0] * 255)}/255 and a colour shift "
        f"of at least {round(FFPP_CUES.colour[0] * 255)}/255, so its robust-accuracy ceiling is 100 % up to "
        "16/255 (docs/data-design.md; not real faces)"
    ),
    "synthetic-hq": (
        f"the same generator at higher quality and weaker cues (trace >= {round(HQ_CUES.trace[0] * 255)}/255, "
        f"colour >= {round(HQ_CUES.colour[0] * 255)}/255), other identities and methods: a shifted test "
        "distribution (not real faces)"
    ),
}
SPLITS = ("train", "val", "test")
#: pixels generated together (256 frames at 64x64): bounds memory and fixes each chunk's random stream
_CHUNK_PIXELS = 256 * 64 * 64
#: view parameters that move smoothly within a clip (``animate``), with the span of their drift
_MOTION = {"yaw": 0.2, "roll": 0.06, "cx": 0.04, "cy": 0.03, "scale": 0.05, "smile": 0.4, "gaze": 0.3}


@dataclass(frozen=True)
class SyntheticConfig:
    """Every setting that determines the generated data (hashable: the process cache is keyed by it)."""

    name: str
    style: Style
    cues: Cues
    n_identities: int
    images_per_identity: int
    resolution: int
    methods: tuple[str, ...]
    jpeg_quality: int | None
    clip_frames: int
    seed: int

    @property
    def frames(self) -> int:
        return max(self.clip_frames, 1)

    @property
    def views(self) -> int:
        """Views per identity: each gives one real and its forgery."""
        return self.images_per_identity // 2

    @property
    def chunk(self) -> int:
        """Views generated together."""
        return max(1, _CHUNK_PIXELS // (self.frames * self.resolution**2))


@dataclass(frozen=True)
class Pairs:
    """A generated set before it is split: reals[i] and fakes[i] are one view's frame (frames of a clip are
    consecutive rows); ``cue_region`` marks where the fake's bounded cues were applied (the face crop and
    the inner face); a method's own edit (a warp, a blend) may reach a little beyond it."""

    reals: Tensor  # uint8 [V*T,3,H,W]
    fakes: Tensor
    cue_region: Tensor  # bool [V*T,1,H,W]
    identity: Tensor  # per view [V]
    view: Tensor
    split: Tensor
    method: list[str]


def _check_methods(name: str, methods: tuple[str, ...] | str) -> tuple[str, ...]:
    methods = (methods,) if isinstance(methods, str) else tuple(methods)
    valid = ", ".join(METHODS)
    for m in methods:
        if m not in METHODS:
            hint = did_you_mean(m, list(METHODS))
            raise ConfigError(f"{name}: unknown method '{m}'.{hint} Valid methods: {valid}")
    if not methods or len(set(methods)) != len(methods):
        raise ConfigError(f"{name}: methods must be a non-empty list without repeats, from: {valid}")
    return methods


def _check(name: str, style: Style, cues: Cues, params: dict) -> SyntheticConfig:
    """Validate user parameters; every error names the valid values."""
    p = dict(params, methods=_check_methods(name, params["methods"]))
    rules = {
        "resolution": (
            MIN_RESOLUTION <= p["resolution"] <= MAX_RESOLUTION,
            f"{MIN_RESOLUTION} to {MAX_RESOLUTION} pixels",
        ),
        "jpeg_quality": (p["jpeg_quality"] is None or 1 <= p["jpeg_quality"] <= 100, "1 to 100, or none"),
        "n_identities": (p["n_identities"] >= MIN_IDENTITIES, f">= {MIN_IDENTITIES} (2 per split for swaps)"),
        "images_per_identity": (
            p["images_per_identity"] >= 2 and p["images_per_identity"] % 2 == 0,
            "an even number >= 2 (each view gives one real and its forgery)",
        ),
        "clip_frames": (p["clip_frames"] == 0 or p["clip_frames"] >= 2, "0 (still images) or >= 2 (clips)"),
    }
    for key, (ok, valid) in rules.items():
        if not ok:
            raise ConfigError(f"{name}: {key}={p[key]} is out of range; valid: {valid}")
    return SyntheticConfig(name=name, style=style, cues=cues, **p)


def _split_of_identity(n: int, g: torch.Generator) -> Tensor:
    """Identity -> split index (0 train, 1 val, 2 test), about 60/20/20 of the identities."""
    order = torch.randperm(n, generator=g)
    n_train, n_val = round(0.6 * n), round(0.2 * n)
    split = torch.full((n,), 2, dtype=torch.long)
    split[order[:n_train]] = 0
    split[order[n_train : n_train + n_val]] = 1
    return split


def _methods_and_donors(cfg: SyntheticConfig, identity: Tensor, id_split: Tensor, g: torch.Generator):
    """Methods in equal shares within each split (shuffled); a donor of the same split for each view."""
    split = id_split[identity]
    method, donor = [""] * len(identity), torch.full_like(identity, -1)
    for k in range(len(SPLITS)):
        views = torch.nonzero(split == k).flatten()
        views = views[torch.randperm(len(views), generator=g)]
        for j, i in enumerate(views.tolist()):
            method[i] = cfg.methods[j % len(cfg.methods)]
        members = torch.nonzero(id_split == k).flatten()
        offset = torch.randint(1, len(members), (len(views),), generator=g)
        donor[views] = members[(torch.searchsorted(members, identity[views]) + offset) % len(members)]
    return method, donor


def animate(scene: Params, frames: int, g: torch.Generator) -> Params:
    """Each scene becomes ``frames`` consecutive frames: pose and expression drift, the mouth talks."""
    n = len(scene["yaw"])
    t = torch.linspace(-0.5, 0.5, frames)
    out = {k: v.repeat_interleave(frames, dim=0) for k, v in scene.items()}
    for key, span in _MOTION.items():
        drift = span * (2 * torch.rand(n, 1, generator=g) - 1)
        out[key] = out[key] + (drift * t).reshape(-1)
    rate = 1.0 + 2.0 * torch.rand(n, 1, generator=g)
    phase = 2 * math.pi * torch.rand(n, 1, generator=g)
    talk = 0.3 * torch.sin(2 * math.pi * rate * t + phase).clamp(min=0)
    out["mouth_open"] = (out["mouth_open"] + talk.reshape(-1)).clamp(0, 1)
    return out


def _forge(cfg: SyntheticConfig, frames: Tensor, scene: Params, identities: Params, method: list[str],
           donor: Tensor, g: torch.Generator) -> Tensor:  # fmt: skip
    """The chunk's views forged, method by method, then marked with the two bounded cues (per clip)."""
    t, out = cfg.frames, frames.clone()
    for name in sorted(set(method)):
        views = torch.tensor([i for i, m in enumerate(method) if m == name])
        rows = (views[:, None] * t + torch.arange(t)).flatten()
        part = take(scene, rows)
        donor_scene = (
            {**part, **take(identities, donor[views].repeat_interleave(t))} if name in NEEDS_DONOR else None
        )
        out[rows] = METHODS[name](FakeInputs(frames[rows], part, cfg.style, g, donor_scene, t))
    out = resampling_trace(out, scene, cfg.cues, g, t)
    return colour_mismatch(out, scene, cfg.cues, g, t)


def sensor_noise(img: Tensor, sigma: Tensor, g: torch.Generator) -> Tensor:
    """Camera noise: Gaussian with a per-image standard deviation ``sigma`` [N]."""
    noise = torch.randn(img.shape, generator=g).to(img.device)
    return (img + sigma.view(-1, 1, 1, 1) * noise).clamp(0, 1)


def to_uint8(img: Tensor) -> Tensor:
    return img.clamp(0, 1).mul(255).round().to(torch.uint8)


def jpeg(img: Tensor, quality: int) -> Tensor:
    """JPEG round trip of uint8 images [N,3,H,W] at ``quality`` (1-100), as a video codec would compress."""
    with warnings.catch_warnings():
        # torchvision 0.29 deprecates its codecs in favour of torchcodec, which we do not depend on
        warnings.simplefilter("ignore", DeprecationWarning)
        from torchvision.io import decode_jpeg, encode_jpeg  # here: torchvision is slow to import

        return torch.stack(decode_jpeg(encode_jpeg(list(img.cpu()), quality=quality))).to(img.device)


def _to_uint8(img: Tensor, quality: int | None) -> Tensor:
    out = to_uint8(img)
    return jpeg(out, quality) if quality is not None else out


@contextmanager
def _one_thread() -> Iterator[int]:
    """Generation is thousands of small element-wise ops; an OpenMP fork/join per op costs more than it
    saves (about 8 ms per op when other processes share the cores), so each op runs on one thread and the
    independent chunks run side by side instead, one per thread torch was allowed (yielded)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield before
    finally:
        torch.set_num_threads(before)


def generate_pairs(cfg: SyntheticConfig) -> Pairs:
    """All views of the set, real and forged (see the module docstring)."""
    base = zlib.crc32(f"{cfg.name}:v2:{cfg.seed}".encode())  # other identities per name, stable across runs
    g = torch.Generator().manual_seed(base)
    identities = sample_identities(cfg.n_identities, g)
    id_split = _split_of_identity(cfg.n_identities, g)
    identity = torch.arange(cfg.n_identities).repeat_interleave(cfg.views)
    view = torch.arange(cfg.views).repeat(cfg.n_identities)
    method, donor = _methods_and_donors(cfg, identity, id_split, g)
    scene = sample_views(identities, identity, g, cfg.style.camera_noise)
    t = cfg.frames
    if cfg.clip_frames:
        scene = animate(scene, t, g)

    def chunk(k: int, start: int) -> tuple[Tensor, Tensor, Tensor]:  # chunks are independent: own stream
        views = torch.arange(start, min(start + cfg.chunk, len(identity)))
        gk = torch.Generator().manual_seed(base + k + 1)
        part = take(scene, slice(start * t, (views[-1].item() + 1) * t))
        frames = camera(sensor_noise(render(part, cfg.resolution), part["noise"], gk), cfg.cues, gk, t)
        forged = _forge(cfg, frames, part, identities, [method[i] for i in views], donor[views], gk)
        inner = landmark_mask(part, cfg.resolution, "inner", 1.0, 1.0) > 0.01
        region = (face_box(part, cfg.resolution) > 0) | inner
        return _to_uint8(frames, cfg.jpeg_quality), _to_uint8(forged, cfg.jpeg_quality), region

    starts = range(0, len(identity), cfg.chunk)
    with _one_thread() as workers, ThreadPoolExecutor(max_workers=workers) as pool:
        reals, fakes, region = zip(*pool.map(chunk, range(len(starts)), starts), strict=True)
    return Pairs(
        torch.cat(reals), torch.cat(fakes), torch.cat(region), identity, view, id_split[identity], method
    )


def to_bundle(cfg: SyntheticConfig, pairs: Pairs) -> DataBundle:
    """Interleave each view's real and fake into the train / val / test splits (clips as [N,T,3,H,W])."""
    shape = (len(pairs.identity), cfg.clip_frames, *pairs.reals.shape[1:]) if cfg.clip_frames else None
    reals, fakes = (x.view(shape) if shape else x for x in (pairs.reals, pairs.fakes))
    splits = []
    for k in range(len(SPLITS)):
        idx = torch.nonzero(pairs.split == k).flatten()
        images = torch.stack([reals[idx], fakes[idx]], dim=1).flatten(0, 1)
        labels = torch.tensor([0, 1]).repeat(len(idx))
        stem = [f"{cfg.name}-s{cfg.seed}-id{i:04d}-v{v:03d}" for i, v in
                zip(pairs.identity[idx].tolist(), pairs.view[idx].tolist(), strict=True)]  # fmt: skip
        ids = [f"{s}-{kind}" for s in stem for kind in ("real", "fake")]
        methods = [m for i in idx.tolist() for m in ("real", pairs.method[i])]
        splits.append(Split(images, labels, ids, list(ids), methods))
    return DataBundle(cfg.name, *splits)


def _info(cfg: SyntheticConfig, bundle: DataBundle, pairs: Pairs) -> dict:
    identities = {
        name: sorted(set(pairs.identity[pairs.split == k].tolist())) for k, name in enumerate(SPLITS)
    }
    return {
        "data_version": DATA_VERSION,
        "resolution": cfg.resolution,
        "methods": list(cfg.methods),
        "seed": cfg.seed,
        "n_identities": cfg.n_identities,
        "images_per_identity": cfg.images_per_identity,
        "jpeg_quality": cfg.jpeg_quality,
        "clip_frames": cfg.clip_frames,
        "cues": dataclasses.asdict(cfg.cues),
        "counts": {name: dict(sorted(Counter(bundle.split(name).methods).items())) for name in SPLITS},
        "identities": identities,
    }


@functools.lru_cache(maxsize=4)
def generate(cfg: SyntheticConfig) -> DataBundle:
    """Build (or fetch from this process's cache) the data set ``cfg`` describes."""
    start = time.perf_counter()
    pairs = generate_pairs(cfg)
    bundle = to_bundle(cfg, pairs)
    bundle.info = _info(cfg, bundle, pairs)
    log.info(
        "generated %s (%d samples) in %.2f s", cfg.name, 2 * len(pairs.identity), time.perf_counter() - start
    )
    return bundle


@DATASETS.register("synthetic")
@dataclass(frozen=True)
class SyntheticSet(Buildable):
    """Embedded synthetic faces with FaceForensics++-like forgeries: no download, deterministic by seed.

    Mirrors FaceForensics++ (Rossler et al., ICCV 2019, https://arxiv.org/abs/1901.08971): each view of an
    identity gives one real and its own forgery, which carries a resampling trace and a colour mismatch of
    bounded amplitude (``synthetic_cues.FFPP_CUES``; docs/data-design.md).

    n_identities: people (split 60/20/20 by identity); images_per_identity: samples (clips) per person, an
    even number: half real, each with its forgery; resolution: image side in pixels; methods: forgery families, from deepfakes,
    faceswap, face2face, neuraltextures, gan-upsample, sbi; jpeg_quality: 1-100, None for no compression;
    clip_frames: 0 for images [N,3,H,W], T >= 2 for clips [N,T,3,H,W] (cost grows with T); seed: all draws.
    """

    n_identities: int = 100
    images_per_identity: int = 30
    resolution: int = 64
    methods: tuple[str, ...] = FFPP_METHODS
    jpeg_quality: int | None = None
    clip_frames: int = 0
    seed: int = 0
    #: the data version, in every cell spec: records of two versions never mix
    version: ClassVar[int] = DATA_VERSION
    style: ClassVar[Style] = FFPP_STYLE
    cues: ClassVar[Cues] = FFPP_CUES

    def __post_init__(self) -> None:
        self.generator_config()  # every range checked when the cell is planned, not when it runs

    def generator_config(self) -> SyntheticConfig:
        params = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return _check(self.registered_name, self.style, self.cues, params)

    def build(self) -> DataBundle:
        return generate(self.generator_config())


@DATASETS.register("synthetic-hq")
@dataclass(frozen=True)
class SyntheticHQSet(SyntheticSet):
    """Embedded synthetic faces with cleaner forgeries: the unseen cross-data-set target for ``synthetic``.

    Mirrors Celeb-DF (Li et al., CVPR 2020, https://arxiv.org/abs/1909.12962) against FF++: softer blend
    masks, better colour and grain matching, less flicker and camera noise, weaker cues (still above
    2 x 8/255 where they change the face, ``synthetic_cues.HQ_CUES``), other identities and a different
    method mix. Parameters as for ``synthetic``.
    """

    methods: tuple[str, ...] = HQ_METHODS
    style: ClassVar[Style] = HQ_STYLE
    cues: ClassVar[Cues] = HQ_CUES
