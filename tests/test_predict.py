"""``afsl-bench predict`` as a user runs it: the MesoNet authors' detector on their sample crops, clean and
under attack, on a video, from a model the store trained, and the bad inputs it must refuse in one line."""

from __future__ import annotations

import json

import numpy as np
import pytest
from _video_fixtures import corrupt_video, write_mp4
from PIL import Image
from typer.testing import CliRunner

from afsl_bench.cli import app
from afsl_bench.detectors.sources.mesonet import BUILTIN_DIR

pytestmark = pytest.mark.usefixtures("one_thread")

SAMPLES = BUILTIN_DIR / "samples"
MESO4_DF = ["--set", "detector.weights=mesonet:Meso4_DF", "--device", "cpu"]
#: 1 - the reference P(real) of Meso4_DF on the samples (Keras 3, shared/data/mesonet/README.md)
P_FAKE = {"df00204": 0.9491, "df01254": 0.9647, "real00240": 0.0103, "real00772": 0.0015}


def predict(*args: str):
    return CliRunner().invoke(app, ["predict", *args])


def rows(result) -> list[dict]:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_a_folder_of_crops_gets_the_published_models_probabilities() -> None:
    got = {r["input"].rsplit("/", 1)[-1].removesuffix(".jpg"): r["p_fake"]
           for r in rows(predict(str(SAMPLES), *MESO4_DF, "--json"))}  # fmt: skip
    assert got == pytest.approx(P_FAKE, abs=1e-3)


def test_an_attack_flips_each_decision_within_its_budget_and_saves_what_it_scored(tmp_path) -> None:
    out = tmp_path / "adv"
    table = rows(predict(str(SAMPLES / "fake" / "df00204.jpg"), str(SAMPLES / "real"), *MESO4_DF, "--attack", "pgd",
                         "--set", "attack.eps=4/255", "--save-adv", str(out), "--json"))  # fmt: skip
    assert len(table) == 3
    for row in table:
        assert row["linf"] <= 4 / 255 + 1e-6 and 0 < row["ssim"] < 1
        assert row["adv_fake"] != row["fake"], "PGD at 4/255 flips every decision of the published Meso4_DF"
    adv = np.asarray(Image.open(out / "df00204_adv.png"), dtype=np.float32)
    original = np.asarray(Image.open(SAMPLES / "fake" / "df00204.jpg").convert("RGB").resize((256, 256)), np.float32)
    assert np.abs(adv - original).max() <= 4, "the saved PNG is the scored image: inside the budget on 8 bits"
    assert Image.open(out / "df00204_side_by_side.png").size == (3 * 256, 256)


def test_a_video_gets_a_score_per_frame_and_their_mean(tmp_path) -> None:
    crop = np.asarray(Image.open(SAMPLES / "fake" / "df00204.jpg").convert("RGB").resize((128, 128)))
    video = write_mp4(tmp_path / "clip.mp4", np.stack([crop] * 6))
    result = predict(str(video), *MESO4_DF, "--frames", "4")
    assert result.exit_code == 0, result.output
    assert "mean P(fake)" in result.output and "clip.mp4" in result.output
    table = rows(predict(str(video), *MESO4_DF, "--frames", "4", "--json"))
    assert [r["frame"] for r in table] == [0, 2, 3, 5]
    assert all(r["fake"] for r in table), "H.264 keeps the forgery a forgery for Meso4_DF"


def test_a_model_the_store_trained_is_loaded_by_its_train_id(tmp_path) -> None:
    import afsl_bench

    small = ["data.n_identities=10", "data.images_per_identity=4", "data.resolution=32", "train.epochs=1",
             "train.robust_val_samples=0"]  # fmt: skip
    cell = afsl_bench.run("tiny-cnn", "none", "fgsm", overrides=small, results_dir=tmp_path, device="cpu", checks=False)
    train_id = cell.record.train_id
    table = rows(predict(str(SAMPLES / "real"), "--model", train_id[:8], "--results-dir", str(tmp_path), "--size",
                         "32", "--device", "cpu", "--json"))  # fmt: skip
    assert len(table) == 2 and all(0 <= r["p_fake"] <= 1 for r in table)
    missing = predict(str(SAMPLES), "--model", "ffff", "--results-dir", str(tmp_path))
    assert missing.exit_code == 2 and "no finished cell of training id 'ffff'" in missing.output


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: (p / "note.jpg").write_text("not an image") and p / "note.jpg", "cannot read image"),
        (lambda p: corrupt_video(p / "broken.mp4"), "no decodable frame"),
        (lambda p: p / "absent.png", "does not exist"),
    ],
)
def test_bad_inputs_are_refused_in_one_line(tmp_path, make, message) -> None:
    result = predict(str(make(tmp_path)), *MESO4_DF)
    assert result.exit_code == 2 and message in result.output, result.output
    assert "Traceback" not in result.output


def test_save_adv_without_an_attack_says_what_is_missing(tmp_path) -> None:
    result = predict(str(SAMPLES), *MESO4_DF, "--save-adv", str(tmp_path))
    assert result.exit_code == 2 and "give an --attack" in result.output
