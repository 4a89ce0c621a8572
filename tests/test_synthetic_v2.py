"""Data version 2 of the embedded sets (previews `synthetic-v2`, `synthetic-hq-v2`): fakes paired with their
own reals, each carrying bounded cues; the bound is checked on every fake of a generated set."""

import pytest
import torch

from afsl_bench.data import DATASETS
from afsl_bench.data.synthetic_cues import (
    FFPP_CUES,
    HQ_CUES,
    PERIODS,
    Cues,
    camera,
    colour_mismatch,
    square_wave,
)
from afsl_bench.data.synthetic_faces import sample_identities, sample_views
from afsl_bench.data.synthetic_fakes import FFPP_STYLE, HQ_STYLE
from afsl_bench.data.synthetic_v2 import PairedConfig, _config, generate_pairs

pytestmark = pytest.mark.usefixtures("one_thread")
SMALL = {"n_identities": 12, "images_per_identity": 6, "resolution": 48, "jpeg_quality": None, "seed": 0}


def config(name: str, **extra) -> PairedConfig:
    style, cues, methods = {
        "synthetic-v2": (FFPP_STYLE, FFPP_CUES, DATASETS.params_of("synthetic-v2")["methods"].default),
        "synthetic-hq-v2": (HQ_STYLE, HQ_CUES, DATASETS.params_of("synthetic-hq-v2")["methods"].default),
    }[name]
    return _config(name, style, cues, SMALL | {"methods": methods} | extra)


@pytest.mark.parametrize("name", ["synthetic-v2", "synthetic-hq-v2"])
def test_every_fake_is_beyond_the_stated_bound_from_its_real_inside_the_region_it_changed(name) -> None:
    cfg = config(name)
    pairs = generate_pairs(cfg)
    gap = (pairs.fakes.int() - pairs.reals.int()).abs().amax(dim=1, keepdim=True)
    inside = torch.where(pairs.cue_region, gap, torch.zeros_like(gap)).flatten(1).amax(dim=1)
    bound = round(255 * cfg.cues.trace[0]) - 1  # the trace's lower bound, less one level of 8-bit rounding
    assert len(inside) == 12 * 3 and (inside >= bound).all(), (bound, inside.min())
    assert bound > 2 * 8, "every fake is more than 2 x 8/255 from its real where the cues were applied"


def test_a_view_gives_one_real_and_its_forgery_and_splits_share_no_identity() -> None:
    bundle = DATASETS.build("synthetic-v2", **{k: v for k, v in SMALL.items()})
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


def test_generation_is_deterministic_by_seed() -> None:
    a, b = generate_pairs(config("synthetic-v2")), generate_pairs(config("synthetic-v2"))
    c = generate_pairs(config("synthetic-v2", seed=1))
    assert torch.equal(a.reals, b.reals) and torch.equal(a.fakes, b.fakes)
    assert not torch.equal(a.reals, c.reals)


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


def test_preview_rejects_bad_parameters_like_synthetic() -> None:
    from afsl_bench.core.errors import ConfigError

    with pytest.raises(ConfigError, match="n_identities"):
        DATASETS.build("synthetic-v2", n_identities=3)
