"""The embedded synthetic data sets (data version 2): determinism, splits, pairs, the cues' lower bound,
labels, forgeries, JPEG, clips, parameter errors."""

from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F
from torchvision.io import decode_jpeg, encode_jpeg

from afsl_bench.core.errors import ConfigError
from afsl_bench.core.params import typed_params
from afsl_bench.data import DATASETS
from afsl_bench.data.synthetic import (
    DATA_VERSION,
    SPLITS,
    SyntheticConfig,
    _check,
    generate,
    generate_pairs,
    sensor_noise,
)
from afsl_bench.data.synthetic_cues import (
    FFPP_CUES,
    HQ_CUES,
    PERIODS,
    Cues,
    camera,
    colour_mismatch,
    square_wave,
)
from afsl_bench.data.synthetic_faces import landmark_mask, render, sample_identities, sample_views, take
from afsl_bench.data.synthetic_fakes import FFPP_STYLE, HQ_STYLE, METHODS, FakeInputs

pytestmark = [
    pytest.mark.filterwarnings("ignore:The image decoding:DeprecationWarning"),
    pytest.mark.usefixtures("one_thread"),
]
SMALL = {"n_identities": 10, "images_per_identity": 4, "resolution": 32}


def small_config(name: str = "synthetic", **overrides) -> SyntheticConfig:
    style, cues = {"synthetic": (FFPP_STYLE, FFPP_CUES), "synthetic-hq": (HQ_STYLE, HQ_CUES)}[name]
    methods = DATASETS.params_of(name)["methods"].default
    params = dict(SMALL, methods=methods, jpeg_quality=None, clip_frames=0, seed=0) | overrides
    return _check(name, style, cues, params)


def fresh(**overrides):
    """Generate without the process cache, so two calls really run twice."""
    return generate.__wrapped__(small_config(**overrides))


def identity_of(sample_id: str) -> str:
    return re.search(r"-id(\d+)-", sample_id).group(1)


def test_same_seed_gives_identical_bytes_and_another_seed_differs():
    a, b, c = fresh(seed=3), fresh(seed=3), fresh(seed=4)
    for name in SPLITS:
        assert torch.equal(a.split(name).images, b.split(name).images)
        assert a.split(name).sample_ids == b.split(name).sample_ids
    everything = [torch.cat([bundle.split(name).images for name in SPLITS]) for bundle in (a, c)]
    assert everything[0].shape == everything[1].shape and not torch.equal(*everything)


def test_repeated_call_is_served_from_the_cache():
    assert DATASETS.build("synthetic", **SMALL) is DATASETS.build("synthetic", **SMALL)


def test_splits_are_identity_disjoint_and_about_60_20_20():
    bundle = DATASETS.build("synthetic", n_identities=20, images_per_identity=2, resolution=32)
    people = {name: {identity_of(s) for s in bundle.split(name).sample_ids} for name in SPLITS}
    assert not people["train"] & people["val"] and not people["train"] & people["test"]
    assert not people["val"] & people["test"]
    assert [len(people[name]) for name in SPLITS] == [12, 4, 4]
    assert {k: len(v) for k, v in people.items()} == {k: len(v) for k, v in bundle.info["identities"].items()}


def test_each_split_is_balanced_real_fake_with_equal_method_shares():
    bundle = DATASETS.build("synthetic", **SMALL)
    for name in SPLITS:
        split = bundle.split(name)
        real, fake = split.class_counts()
        assert real == fake > 0
        shares = {m: split.methods.count(m) for m in set(split.methods) - {"real"}}
        assert max(shares.values()) - min(shares.values()) <= 1


def test_images_labels_and_ids_follow_the_conventions():
    bundle = DATASETS.build("synthetic", **SMALL)
    split = bundle.train
    assert split.images.dtype == torch.uint8 and split.images.shape[1:] == (3, 32, 32)
    assert split.labels.dtype == torch.int64
    assert [m != "real" for m in split.methods] == split.labels.bool().tolist()  # label 1 = fake
    assert split.video_ids == split.sample_ids and len(set(split.sample_ids)) == len(split)
    assert split.images.max() > 200 and split.images.min() < 50  # uses the range, not a flat image
    batch = split.batch([0, 1])
    assert batch.x.dtype == torch.float32 and 0 <= batch.x.min() and batch.x.max() <= 1
    assert bundle.info["resolution"] == 32 and bundle.info["seed"] == 0
    assert bundle.info["counts"]["train"]["real"] == split.class_counts()[0]


def captured_scenes(n: int = 8, res: int = 64):
    g = torch.Generator().manual_seed(0)
    people = sample_identities(n, g)
    scene = sample_views(people, torch.arange(n), g, (0.01, 0.02))
    donor = {**scene, **take(people, torch.arange(n).roll(1))}
    return scene, donor, sensor_noise(render(scene, res), scene["noise"], g)


# where each forgery may act: (landmark region, how much it may grow by the feathered edge)
ALLOWED = {
    "deepfakes": ("inner", 1.3),
    "faceswap": ("inner", 1.3),
    "face2face": ("face", 1.1),
    "neuraltextures": ("mouth", 1.4),
    "gan-upsample": ("face", 1.15),
    "sbi": ("face", 1.2),
}


@pytest.mark.parametrize("method", list(METHODS))
def test_each_method_changes_the_image_only_where_it_should(method):
    assert set(ALLOWED) == set(METHODS)
    scene, donor, image = captured_scenes()
    fake = METHODS[method](FakeInputs(image, scene, FFPP_STYLE, torch.Generator().manual_seed(1), donor))
    assert fake.shape == image.shape and 0 <= fake.min() and fake.max() <= 1
    change = (fake - image).abs().sum(dim=1, keepdim=True)
    region, grow = ALLOWED[method]
    inside = landmark_mask(scene, 64, region, feather=0.01, grow=grow) > 0
    assert change.mean(dim=(1, 2, 3)).min() > 5e-4, "every image is changed"
    assert (change * inside).sum() / change.sum() > 0.95, f"{method} acts outside the {region}"


def test_blend_parameters_are_per_clip_and_flicker_only_between_frames():
    image = torch.zeros(12, 3, 8, 8)
    clip = FakeInputs(image, {}, FFPP_STYLE, torch.Generator().manual_seed(0), frames=4)
    steady = clip.draw(0.0, 1.0).view(3, 4)
    assert torch.equal(steady, steady[:, :1].expand(3, 4)) and steady[:, 0].unique().numel() == 3
    assert (clip.draw(0.0, 1.0, flicker=0.5).view(3, 4).std(dim=1) > 0).all()
    still = FakeInputs(image, {}, FFPP_STYLE, torch.Generator().manual_seed(0))
    assert torch.equal(
        still.draw(0.0, 1.0, flicker=0.5),
        FakeInputs(image, {}, FFPP_STYLE, torch.Generator().manual_seed(0)).draw(0.0, 1.0),
    )


def test_jpeg_quality_is_a_torchvision_round_trip_of_the_uncompressed_images():
    raw, q50, q95 = fresh(), fresh(jpeg_quality=50), fresh(jpeg_quality=95)
    expected = torch.stack(decode_jpeg(encode_jpeg(list(raw.test.images), quality=50)))
    assert torch.equal(q50.test.images, expected)
    reference = raw.test.images.float()
    error = {q: (b.test.images.float() - reference).abs().mean() for q, b in [(50, q50), (95, q95)]}
    assert 0 < error[95] < error[50]
    assert q50.info["jpeg_quality"] == 50


def test_clip_mode_gives_smooth_videos_with_one_id_each():
    bundle = DATASETS.build("synthetic", **SMALL, clip_frames=5)
    split = bundle.train
    n = len(split)
    assert split.images.shape == (n, 5, 3, 32, 32) and split.batch([0]).x.shape == (1, 5, 3, 32, 32)
    assert len(set(split.video_ids)) == n
    x = split.images.float()
    step = (x[:, 1:] - x[:, :-1]).abs().mean()
    across = (x[1:, 0] - x[:-1, 0]).abs().mean()
    assert 0 < step < across / 2  # frames of one clip move a little; different clips differ a lot


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"methods": ("deepfake",)}, "'deepfakes'.*Valid methods: deepfakes, faceswap, face2face"),
        ({"methods": ()}, "non-empty"),
        ({"resolution": 16}, "resolution=16 is out of range; valid: 32 to 512"),
        ({"jpeg_quality": 0}, "jpeg_quality=0 .* valid: 1 to 100"),
        ({"n_identities": 4}, "n_identities=4 .* valid: >= 10"),
        ({"images_per_identity": 1}, "images_per_identity=1 .* valid: an even number >= 2"),
        ({"images_per_identity": 3}, "images_per_identity=3 .* valid: an even number >= 2"),
        ({"clip_frames": 1}, "clip_frames=1 .* valid: 0 .* or >= 2"),
    ],
)
def test_bad_parameters_raise_config_errors_naming_the_valid_values(params, expected):
    with pytest.raises(ConfigError, match=expected):
        DATASETS.build("synthetic", **(SMALL | params))


def test_cli_overrides_are_typed_by_the_signature():
    params = DATASETS.params_of("synthetic")
    raw = {"methods": "sbi,gan-upsample", "jpeg_quality": "none", "clip_frames": "4", "seed": "7"}
    typed = typed_params("data", "synthetic", raw, params)
    assert typed == {"methods": ("sbi", "gan-upsample"), "jpeg_quality": None, "clip_frames": 4, "seed": 7}


def grain_kept(style, scene, donor, image) -> float:
    """High-frequency energy inside the swapped region, relative to the captured frame's."""
    fake = METHODS["deepfakes"](FakeInputs(image, scene, style, torch.Generator().manual_seed(1), donor))
    inside = landmark_mask(scene, 64, "inner", feather=0.01, grow=0.8)

    def energy(x):
        return ((x - F.avg_pool2d(x, 3, 1, 1)) ** 2 * inside).sum()

    return float(energy(fake) / energy(image))


def test_synthetic_hq_is_a_different_cleaner_data_set():
    plain, hq = DATASETS.build("synthetic", **SMALL), DATASETS.build("synthetic-hq", **SMALL)
    assert not torch.equal(plain.train.images, hq.train.images)
    assert set(plain.info["methods"]) != set(hq.info["methods"])
    scene, donor, image = captured_scenes()
    # FF++-like swaps are blurry and noise-free inside the face; Celeb-DF-like ones keep the camera grain
    assert grain_kept(FFPP_STYLE, scene, donor, image) < 0.3
    assert grain_kept(HQ_STYLE, scene, donor, image) > 0.5


@pytest.mark.parametrize("name", ["synthetic", "synthetic-hq"])
def test_every_fake_is_beyond_the_stated_bound_from_its_real_inside_the_region_it_changed(name) -> None:
    cfg = small_config(name, n_identities=12, images_per_identity=6, resolution=48)
    pairs = generate_pairs(cfg)
    gap = (pairs.fakes.int() - pairs.reals.int()).abs().amax(dim=1, keepdim=True)
    inside = torch.where(pairs.cue_region, gap, torch.zeros_like(gap)).flatten(1).amax(dim=1)
    bound = round(255 * cfg.cues.trace[0]) - 1  # the trace's lower bound, less one level of 8-bit rounding
    assert len(inside) == 12 * 3 and (inside >= bound).all(), (bound, inside.min())
    assert bound > 2 * 8, "every fake is more than 2 x 8/255 from its real where the cues were applied"


def test_a_view_gives_one_real_and_its_forgery_and_splits_share_no_identity() -> None:
    bundle = DATASETS.build("synthetic", n_identities=12, images_per_identity=6, resolution=48)
    seen = {}
    for split in ("train", "val", "test"):
        part = bundle.split(split)
        assert part.labels.tolist() == [0, 1] * (len(part) // 2)
        stems = [s.rsplit("-", 1)[0] for s in part.sample_ids]
        assert stems[0::2] == stems[1::2], "reals and fakes alternate, one pair per view"
        assert set(part.methods[0::2]) == {"real"} and "real" not in part.methods[1::2]
        seen[split] = {s.split("-id")[1].split("-")[0] for s in stems}
    assert not (seen["train"] & seen["val"] or seen["train"] & seen["test"] or seen["val"] & seen["test"])
    assert bundle.info["data_version"] == 2


def test_square_waves_have_the_stated_periods_and_phases() -> None:
    waves = square_wave(64, 24, torch.Generator().manual_seed(0))
    assert set(waves.unique().tolist()) == {-1.0, 1.0}
    for wave in waves[:, 0]:
        period = next(
            p for p in PERIODS if torch.equal(wave, wave.roll(p, 0)) and torch.equal(wave, wave.roll(p, 1))
        )
        assert period in PERIODS and not torch.equal(wave, wave.roll(1, 0))


def test_camera_and_colour_cues_have_the_drawn_amplitudes() -> None:
    img = torch.full((4, 3, 16, 16), 0.5)
    fixed = Cues(trace=(0.1, 0.1), colour=(0.1, 0.1), camera_trace=(6 / 255, 6 / 255), sharpen=(0.0, 0.0))
    out = camera(img, fixed, torch.Generator().manual_seed(0))
    assert (out - img).abs().flatten(1).amax(1) == pytest.approx(torch.full((4,), 6 / 255))
    identities = sample_identities(4, torch.Generator().manual_seed(0))
    scene = sample_views(identities, torch.arange(4), torch.Generator().manual_seed(1), (0.0, 0.0))
    shifted = colour_mismatch(img, scene, fixed, torch.Generator().manual_seed(2))
    assert (shifted - img).abs().flatten(1).amax(1) == pytest.approx(torch.full((4,), 0.1), abs=1e-6)


def test_clips_pair_each_real_clip_with_its_forgery_and_keep_the_bound_on_every_frame() -> None:
    cfg = small_config(clip_frames=3)
    pairs = generate_pairs(cfg)
    assert len(pairs.reals) == len(pairs.identity) * 3
    gap = (pairs.fakes.int() - pairs.reals.int()).abs().amax(dim=1, keepdim=True)
    inside = torch.where(pairs.cue_region, gap, torch.zeros_like(gap)).flatten(1).amax(dim=1)
    assert (inside >= round(255 * cfg.cues.trace[0]) - 1).all()
    # one camera and one set of cues per clip: the trace's sign pattern is the same on every frame
    wave = square_wave(6, 8, torch.Generator().manual_seed(0), frames=3)
    assert torch.equal(wave[0], wave[2]) and torch.equal(wave[3], wave[5])


#: summaries of a small generated set (reals' mean, fakes' mean, mean |fake - real|, fakes' high-frequency
#: energy; 8-bit levels), pinned at data version 2
FINGERPRINT = {
    "synthetic": (114.943, 115.565, 11.636, 17.885),
    "synthetic-hq": (104.781, 104.863, 7.663, 13.539),
}


@pytest.mark.parametrize("name", ["synthetic", "synthetic-hq"])
def test_the_generated_data_is_what_its_data_version_says(name) -> None:
    """Records of one data version must never mix with another's: a change to the generator's output fails
    here until DATA_VERSION in afsl_bench/data/synthetic.py is bumped and this fingerprint updated (the
    tolerance absorbs last-bit differences of float math between CPUs, not a changed generator)."""
    assert DATA_VERSION == 2 and DATASETS.get("synthetic").version == DATA_VERSION
    pairs = generate_pairs(small_config(name))
    reals, fakes = pairs.reals.double(), pairs.fakes.double()
    high = (fakes - F.avg_pool2d(fakes, 3, 1, 1, count_include_pad=False)).abs().mean()
    measured = [float(x) for x in (reals.mean(), fakes.mean(), (fakes - reals).abs().mean(), high)]
    assert measured == pytest.approx(FINGERPRINT[name], abs=0.02), (
        f"{name}'s generated images changed ({measured}): bump DATA_VERSION and update FINGERPRINT"
    )
