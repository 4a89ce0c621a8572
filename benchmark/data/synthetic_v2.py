"""Data version 2 of the embedded sets: every fake is a forgery of its own real frame, with bounded cues.

Per identity, ``images_per_identity / 2`` views are captured (render -> camera noise -> the camera's
sharpening and resampling); each view gives one real sample (the capture) and one fake (the capture forged
by one of ``methods``, then marked with the two bounded cues of ``synthetic_cues``), as FaceForensics++
pairs each manipulated video with its original. Identities are split 60/20/20, donors come from the same
split, generation is deterministic by seed and cached per process.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
import zlib
from collections import Counter
from dataclasses import dataclass

import torch
from torch import Tensor

from afsl_bench.core.types import DataBundle, Split
from afsl_bench.data.base import DATASETS
from afsl_bench.data.synthetic import (
    FFPP_METHODS,
    HQ_METHODS,
    SPLITS,
    _check,
    _one_thread,
    _split_of_identity,
    jpeg,
    sensor_noise,
    to_uint8,
)
from afsl_bench.data.synthetic_cues import (
    FFPP_CUES,
    HQ_CUES,
    Cues,
    camera,
    colour_mismatch,
    face_box,
    resampling_trace,
)
from afsl_bench.data.synthetic_faces import landmark_mask, render, sample_identities, sample_views, take
from afsl_bench.data.synthetic_fakes import FFPP_STYLE, HQ_STYLE, METHODS, NEEDS_DONOR, FakeInputs, Style

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PairedConfig:
    """Every setting that determines a version-2 set (hashable: the process cache is keyed by it)."""

    name: str
    style: Style
    cues: Cues
    n_identities: int
    images_per_identity: int
    resolution: int
    methods: tuple[str, ...]
    jpeg_quality: int | None
    seed: int
    chunk: int = 256


@dataclass(frozen=True)
class Pairs:
    """A generated set before it is split: reals[i] and fakes[i] are one view; ``changed`` marks where the
    fake's bounded cues were applied (the face crop and the inner face); a method's own edit (a warp, a
    blend) may reach a little beyond it."""

    reals: Tensor  # uint8 [V,3,H,W]
    fakes: Tensor
    cue_region: Tensor  # bool [V,1,H,W]
    identity: Tensor  # [V]
    view: Tensor
    split: Tensor
    method: list[str]


def _methods_and_donors(cfg: PairedConfig, identity: Tensor, id_split: Tensor, g: torch.Generator):
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


def _forge(cfg: PairedConfig, frames: Tensor, scene: dict, identities: dict, method: list[str],
           donor: Tensor, g: torch.Generator) -> Tensor:  # fmt: skip
    out = frames.clone()
    for name in sorted(set(method)):
        rows = torch.tensor([i for i, m in enumerate(method) if m == name])
        part = take(scene, rows)
        donor_scene = {**part, **take(identities, donor[rows])} if name in NEEDS_DONOR else None
        out[rows] = METHODS[name](FakeInputs(frames[rows], part, cfg.style, g, donor_scene, 1))
    out = resampling_trace(out, scene, cfg.cues, g)
    return colour_mismatch(out, scene, cfg.cues, g)


def _to_uint8(img: Tensor, quality: int | None) -> Tensor:
    out = to_uint8(img)
    return jpeg(out, quality) if quality is not None else out


def generate_pairs(cfg: PairedConfig) -> Pairs:
    """All views of the set, real and forged (see the module docstring)."""
    base = zlib.crc32(f"{cfg.name}:v2:{cfg.seed}".encode())
    g = torch.Generator().manual_seed(base)
    identities = sample_identities(cfg.n_identities, g)
    id_split = _split_of_identity(cfg.n_identities, g)
    views = cfg.images_per_identity // 2
    identity = torch.arange(cfg.n_identities).repeat_interleave(views)
    view = torch.arange(views).repeat(cfg.n_identities)
    method, donor = _methods_and_donors(cfg, identity, id_split, g)
    scene = sample_views(identities, identity, g, cfg.style.camera_noise)
    reals, fakes, region = [], [], []
    with _one_thread():
        for k, start in enumerate(range(0, len(identity), cfg.chunk)):
            rows = torch.arange(start, min(start + cfg.chunk, len(identity)))
            gk = torch.Generator().manual_seed(base + k + 1)
            part = take(scene, rows)
            frames = camera(sensor_noise(render(part, cfg.resolution), part["noise"], gk), cfg.cues, gk)
            forged = _forge(cfg, frames, part, identities, [method[i] for i in rows], donor[rows], gk)
            reals.append(_to_uint8(frames, cfg.jpeg_quality))
            fakes.append(_to_uint8(forged, cfg.jpeg_quality))
            inner = landmark_mask(part, cfg.resolution, "inner", 1.0, 1.0) > 0.01
            region.append((face_box(part, cfg.resolution) > 0) | inner)
    return Pairs(
        torch.cat(reals), torch.cat(fakes), torch.cat(region), identity, view, id_split[identity], method
    )


def to_bundle(cfg: PairedConfig, pairs: Pairs) -> DataBundle:
    """Interleave each view's real and fake into the train / val / test splits."""
    splits = []
    for k in range(len(SPLITS)):
        idx = torch.nonzero(pairs.split == k).flatten()
        images = torch.stack([pairs.reals[idx], pairs.fakes[idx]], dim=1).flatten(0, 1)
        labels = torch.tensor([0, 1]).repeat(len(idx))
        stem = [f"{cfg.name}-s{cfg.seed}-id{i:04d}-v{v:03d}" for i, v in
                zip(pairs.identity[idx].tolist(), pairs.view[idx].tolist(), strict=True)]  # fmt: skip
        ids = [f"{s}-{kind}" for s in stem for kind in ("real", "fake")]
        methods = [m for i in idx.tolist() for m in ("real", pairs.method[i])]
        splits.append(Split(images, labels, ids, list(ids), methods))
    return DataBundle(cfg.name, *splits)


@functools.lru_cache(maxsize=4)
def generate(cfg: PairedConfig) -> DataBundle:
    """Build (or fetch from this process's cache) the set ``cfg`` describes; treat it as read-only."""
    start = time.perf_counter()
    bundle = to_bundle(cfg, generate_pairs(cfg))
    bundle.info = {
        "data_version": 2,
        "resolution": cfg.resolution,
        "methods": list(cfg.methods),
        "seed": cfg.seed,
        "n_identities": cfg.n_identities,
        "images_per_identity": cfg.images_per_identity,
        "jpeg_quality": cfg.jpeg_quality,
        "cues": dataclasses.asdict(cfg.cues),
        "counts": {s: dict(sorted(Counter(bundle.split(s).methods).items())) for s in SPLITS},
    }
    log.info("generated %s v2 (%d samples) in %.2f s", cfg.name, sum(len(bundle.split(s)) for s in SPLITS),
             time.perf_counter() - start)  # fmt: skip
    return bundle


def _config(name: str, style: Style, cues: Cues, params: dict) -> PairedConfig:
    checked = _check(name, style, params | {"clip_frames": 0})
    fields = {k: getattr(checked, k) for k in ("n_identities", "images_per_identity", "resolution", "methods",
                                               "jpeg_quality", "seed")}  # fmt: skip
    return PairedConfig(name=name, style=style, cues=cues, **fields)


@DATASETS.register("synthetic-v2")
def synthetic_v2(
    n_identities: int = 100,
    images_per_identity: int = 30,
    resolution: int = 64,
    methods: tuple[str, ...] = FFPP_METHODS,
    jpeg_quality: int | None = None,
    seed: int = 0,
) -> DataBundle:
    """Preview of `synthetic` data version 2: each fake is its own real forged, with two bounded cues.

    docs/data-design.md (issue 11); it replaces `synthetic` once the leaderboard is re-run on it. Pairs
    FaceForensics++-style (Rossler et al., ICCV 2019, https://arxiv.org/abs/1901.08971): each view of an
    identity gives one real and one fake. Adversarial training needs about 16 epochs to learn its cues
    (`--set train.epochs=16`). Parameters as for `synthetic` (images_per_identity: real + fake per view,
    so views = images_per_identity / 2); no clips yet.
    """
    return generate(_config("synthetic-v2", FFPP_STYLE, FFPP_CUES, locals()))


@DATASETS.register("synthetic-hq-v2")
def synthetic_hq_v2(
    n_identities: int = 100,
    images_per_identity: int = 30,
    resolution: int = 64,
    methods: tuple[str, ...] = HQ_METHODS,
    jpeg_quality: int | None = None,
    seed: int = 0,
) -> DataBundle:
    """Preview of `synthetic-hq` data version 2: the same cue families rendered more carefully.

    Celeb-DF-like (Li et al., CVPR 2020, https://arxiv.org/abs/1909.12962): softer blends, weaker traces
    and colour gaps (still above 2 x 8/255 in the regions they change), other identities, another method mix;
    the unseen target for `synthetic-v2`. Parameters as for `synthetic-v2`.
    """
    return generate(_config("synthetic-hq-v2", HQ_STYLE, HQ_CUES, locals()))
