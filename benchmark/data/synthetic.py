"""The embedded data sets ``synthetic`` and ``synthetic-hq``: procedural faces and their forgeries.

No download, deterministic by seed, generated in a few seconds on a CPU. Identities are split between
train / val / test (about 60/20/20, no identity in two splits, donors of swapped faces from the same split,
as FF++ pairs its videos); each identity has ``images_per_identity`` views, half real, half forged with
the ``methods`` in turn. Pipeline per view: render -> camera noise -> forgery (fakes only) -> uint8 -> JPEG.

``synthetic`` mirrors FaceForensics++ (four 2019-era methods with visible traces); ``synthetic-hq`` mirrors
Celeb-DF (cleaner blends, a different method mix, other identities): train on the first, test on the second
for a cross-data-set score. Results of a call are cached per process: treat the returned tensors as
read-only.
"""

from __future__ import annotations

import functools
import logging
import math
import time
import warnings
import zlib
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor
from torchvision.io import decode_jpeg, encode_jpeg

from afsl_bench.core.errors import ConfigError
from afsl_bench.core.registry import did_you_mean
from afsl_bench.core.types import DataBundle, Split
from afsl_bench.data.base import DATASETS
from afsl_bench.data.synthetic_faces import Params, render, sample_identities, sample_views, take
from afsl_bench.data.synthetic_fakes import (
    FFPP_STYLE,
    HQ_STYLE,
    METHODS,
    NEEDS_DONOR,
    TRACED,
    FakeInputs,
    Style,
    crop_trace,
)

log = logging.getLogger(__name__)

FFPP_METHODS = ("deepfakes", "face2face", "faceswap", "neuraltextures")
HQ_METHODS = ("deepfakes", "gan-upsample", "sbi")
MIN_RESOLUTION, MAX_RESOLUTION = 32, 512
MIN_IDENTITIES = 10  # each split then holds >= 2 identities, so a swap always has a donor
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
    def chunk(self) -> int:
        """Samples generated together."""
        return max(1, _CHUNK_PIXELS // (self.frames * self.resolution**2))


@dataclass(frozen=True)
class _Plan:
    """Who each sample is: identity, view number, split, label, method, donor and scene (drawn up front)."""

    identity: Tensor
    view: Tensor
    split: Tensor
    label: Tensor
    method: list[str]
    donor: Tensor  # donor identity for forged samples, -1 for real ones
    identities: Params
    scene: Params  # per frame: [samples * frames]


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


def _check(name: str, style: Style, params: dict) -> SyntheticConfig:
    """Validate user parameters; every error names the valid values."""
    p = dict(params, methods=_check_methods(name, params["methods"]))
    rules = {
        "resolution": (
            MIN_RESOLUTION <= p["resolution"] <= MAX_RESOLUTION,
            f"{MIN_RESOLUTION} to {MAX_RESOLUTION} pixels",
        ),
        "jpeg_quality": (p["jpeg_quality"] is None or 1 <= p["jpeg_quality"] <= 100, "1 to 100, or none"),
        "n_identities": (p["n_identities"] >= MIN_IDENTITIES, f">= {MIN_IDENTITIES} (2 per split for swaps)"),
        "images_per_identity": (p["images_per_identity"] >= 2, ">= 2 (one real, one fake)"),
        "clip_frames": (p["clip_frames"] == 0 or p["clip_frames"] >= 2, "0 (still images) or >= 2 (clips)"),
    }
    for key, (ok, valid) in rules.items():
        if not ok:
            raise ConfigError(f"{name}: {key}={p[key]} is out of range; valid: {valid}")
    return SyntheticConfig(name=name, style=style, **p)


def _split_of_identity(n: int, g: torch.Generator) -> Tensor:
    """Identity -> split index (0 train, 1 val, 2 test), about 60/20/20 of the identities."""
    order = torch.randperm(n, generator=g)
    n_train, n_val = round(0.6 * n), round(0.2 * n)
    split = torch.full((n,), 2, dtype=torch.long)
    split[order[:n_train]] = 0
    split[order[n_train : n_train + n_val]] = 1
    return split


def _assign_fakes(
    cfg: SyntheticConfig,
    plan_split: Tensor,
    identity: Tensor,
    label: Tensor,
    id_split: Tensor,
    g: torch.Generator,
) -> tuple[list[str], Tensor]:
    """Methods in equal shares within each split; each fake gets a donor from its own split."""
    method, donor = ["real"] * len(label), torch.full_like(label, -1)
    for split in range(len(SPLITS)):
        fakes = torch.nonzero((plan_split == split) & (label == 1)).flatten()
        fakes = fakes[torch.randperm(len(fakes), generator=g)]
        for j, i in enumerate(fakes.tolist()):
            method[i] = cfg.methods[j % len(cfg.methods)]
        members = torch.nonzero(id_split == split).flatten()
        offset = torch.randint(1, len(members), (len(fakes),), generator=g)
        donor[fakes] = members[(torch.searchsorted(members, identity[fakes]) + offset) % len(members)]
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


def _plan(cfg: SyntheticConfig, g: torch.Generator) -> _Plan:
    identities = sample_identities(cfg.n_identities, g)
    id_split = _split_of_identity(cfg.n_identities, g)
    identity = torch.arange(cfg.n_identities).repeat_interleave(cfg.images_per_identity)
    view = torch.arange(cfg.images_per_identity).repeat(cfg.n_identities)
    label = (identity + view) % 2  # alternate, so identities and splits are balanced real / fake
    method, donor = _assign_fakes(cfg, id_split[identity], identity, label, id_split, g)
    scene = sample_views(identities, identity, g, cfg.style.camera_noise)
    if cfg.clip_frames:
        scene = animate(scene, cfg.clip_frames, g)
    return _Plan(identity, view, id_split[identity], label, method, donor, identities, scene)


def _forge(cfg: SyntheticConfig, plan: _Plan, frames: Tensor, samples: range, g: torch.Generator) -> Tensor:
    """Replace the fakes' frames in ``frames`` (of the chunk ``samples``) by forgeries, method by method."""
    t = cfg.frames
    for name in sorted({plan.method[i] for i in samples} - {"real"}):
        picked = torch.tensor([i for i in samples if plan.method[i] == name])
        rows = ((picked - samples.start)[:, None] * t + torch.arange(t)).flatten()  # rows in this chunk
        scene = take(plan.scene, (picked[:, None] * t + torch.arange(t)).flatten())
        donor = None
        if name in NEEDS_DONOR:
            donor = {**scene, **take(plan.identities, plan.donor[picked].repeat_interleave(t))}
        inputs = FakeInputs(frames[rows], scene, cfg.style, g, donor, t)
        forged = METHODS[name](inputs)
        frames[rows] = crop_trace(inputs, forged) if name in TRACED else forged
    return frames


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
        return torch.stack(decode_jpeg(encode_jpeg(list(img.cpu()), quality=quality))).to(img.device)


def _chunk(cfg: SyntheticConfig, plan: _Plan, samples: range, g: torch.Generator) -> Tensor:
    t = cfg.frames
    scene = take(plan.scene, slice(samples.start * t, samples.stop * t))
    frames = sensor_noise(render(scene, cfg.resolution), scene["noise"], g)
    out = to_uint8(_forge(cfg, plan, frames, samples, g))
    return jpeg(out, cfg.jpeg_quality) if cfg.jpeg_quality is not None else out


@contextmanager
def _one_thread() -> Iterator[None]:
    """Generation is thousands of small element-wise ops; an OpenMP fork/join per op costs more than it
    saves (about 8 ms per op when other processes share the cores), so generate on one thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _split(cfg: SyntheticConfig, plan: _Plan, images: Tensor, which: int) -> Split:
    idx = torch.nonzero(plan.split == which).flatten()
    ids = [
        f"{cfg.name}-s{cfg.seed}-id{i:04d}-v{v:03d}"
        for i, v in zip(plan.identity[idx].tolist(), plan.view[idx].tolist())
    ]
    return Split(images[idx], plan.label[idx].clone(), ids, list(ids), [plan.method[i] for i in idx.tolist()])


def _info(cfg: SyntheticConfig, bundle: DataBundle, plan: _Plan) -> dict:
    counts = {name: dict(sorted(Counter(bundle.split(name).methods).items())) for name in SPLITS}
    identities = {name: sorted(set(plan.identity[plan.split == k].tolist())) for k, name in enumerate(SPLITS)}
    return {
        "resolution": cfg.resolution,
        "methods": list(cfg.methods),
        "seed": cfg.seed,
        "n_identities": cfg.n_identities,
        "images_per_identity": cfg.images_per_identity,
        "jpeg_quality": cfg.jpeg_quality,
        "clip_frames": cfg.clip_frames,
        "counts": counts,
        "identities": identities,
    }


@functools.lru_cache(maxsize=4)
def generate(cfg: SyntheticConfig) -> DataBundle:
    """Build (or fetch from this process's cache) the data set ``cfg`` describes."""
    start = time.perf_counter()
    base = zlib.crc32(f"{cfg.name}:{cfg.seed}".encode())  # other identities per name, stable across runs
    with _one_thread():
        plan = _plan(cfg, torch.Generator().manual_seed(base))
        n = len(plan.label)
        chunks = [
            _chunk(cfg, plan, range(s, min(s + cfg.chunk, n)), torch.Generator().manual_seed(base + k + 1))
            for k, s in enumerate(range(0, n, cfg.chunk))
        ]
    images = torch.cat(chunks)
    if cfg.clip_frames:
        images = images.view(n, cfg.clip_frames, *images.shape[1:])
    bundle = DataBundle(cfg.name, *(_split(cfg, plan, images, k) for k in range(len(SPLITS))))
    bundle.info = _info(cfg, bundle, plan)
    log.info("generated %s (%d samples) in %.2f s", cfg.name, n, time.perf_counter() - start)
    return bundle


@DATASETS.register("synthetic")
def synthetic(
    n_identities: int = 100,
    images_per_identity: int = 30,
    resolution: int = 64,
    methods: tuple[str, ...] = FFPP_METHODS,
    jpeg_quality: int | None = None,
    clip_frames: int = 0,
    seed: int = 0,
) -> DataBundle:
    """Embedded synthetic faces with FaceForensics++-like forgeries: no download, deterministic by seed.

    Mirrors FaceForensics++ (Rossler et al., ICCV 2019, https://arxiv.org/abs/1901.08971).

    n_identities: people (split 60/20/20 by identity); images_per_identity: views (clips) per person, half
    real, half forged; resolution: image side in pixels; methods: forgery families, from deepfakes,
    faceswap, face2face, neuraltextures, gan-upsample, sbi; jpeg_quality: 1-100, None for no compression;
    clip_frames: 0 for images [N,3,H,W], T >= 2 for clips [N,T,3,H,W] (cost grows with T); seed: all draws.
    """
    return generate(_check("synthetic", FFPP_STYLE, locals()))


@DATASETS.register("synthetic-hq")
def synthetic_hq(
    n_identities: int = 100,
    images_per_identity: int = 30,
    resolution: int = 64,
    methods: tuple[str, ...] = HQ_METHODS,
    jpeg_quality: int | None = None,
    clip_frames: int = 0,
    seed: int = 0,
) -> DataBundle:
    """Embedded synthetic faces with cleaner forgeries: the unseen cross-data-set target for ``synthetic``.

    Mirrors Celeb-DF (Li et al., CVPR 2020, https://arxiv.org/abs/1909.12962) against FF++: softer blend
    masks, better colour and grain matching, less flicker and camera noise, other identities and a
    different method mix. Parameters as for ``synthetic``.
    """
    return generate(_check("synthetic-hq", HQ_STYLE, locals()))
