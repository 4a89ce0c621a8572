"""The `folder` data set: a user's real/ and fake/ images."""

import numpy as np
import pytest
from PIL import Image

from afsl_bench.core.errors import DataNotFoundError
from afsl_bench.data import DATASETS


def _write_images(folder, n, mode="RGB", size=(40, 30)):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(str(folder)))
    for i in range(n):
        channels = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
        array = rng.integers(0, 255, (size[1], size[0], channels), dtype=np.uint8).squeeze()
        Image.fromarray(array, mode).save(folder / f"img{i:03d}.png")


def test_seeded_stratified_split_with_mixed_image_modes(tmp_path) -> None:
    _write_images(tmp_path / "real", 10)
    _write_images(tmp_path / "fake", 10, mode="RGBA")
    _write_images(tmp_path / "fake" / "more", 5, mode="L")
    bundle = DATASETS.build("folder", root=str(tmp_path), resolution=16, seed=1)
    sizes = {name: len(bundle.split(name)) for name in ("train", "val", "test")}
    assert sum(sizes.values()) == 25 and sizes["test"] == 2 + 3 and sizes["val"] == 2 + 3
    assert bundle.test.image_shape == (3, 16, 16) and bundle.test.images.dtype.is_floating_point is False
    assert set(bundle.test.labels.tolist()) == {0, 1}
    ids = [set(bundle.split(s).sample_ids) for s in ("train", "val", "test")]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    again = DATASETS.build("folder", root=str(tmp_path), resolution=16, seed=1)
    assert again.test.sample_ids == bundle.test.sample_ids


def test_given_splits_are_used_as_is(tmp_path) -> None:
    for split, n in (("train", 4), ("val", 2), ("test", 3)):
        _write_images(tmp_path / split / "real", n)
        _write_images(tmp_path / split / "fake", n)
    bundle = DATASETS.build("folder", root=str(tmp_path), resolution=8)
    assert (len(bundle.train), len(bundle.val), len(bundle.test)) == (8, 4, 6)


def test_missing_root_names_the_layout_and_the_fix(tmp_path) -> None:
    with pytest.raises(DataNotFoundError, match=r"data.root '.*nope' is not a folder.*--set data.root=PATH"):
        DATASETS.build("folder", root=str(tmp_path / "nope"))
    (tmp_path / "real").mkdir()
    with pytest.raises(DataNotFoundError, match="no images for the"):
        DATASETS.build("folder", root=str(tmp_path))


@pytest.mark.parametrize(
    ("mode", "make"),
    [
        ("I;16", lambda: Image.fromarray(np.full((40, 40), 30000, np.uint16))),
        ("P", lambda: Image.new("RGB", (40, 40), (200, 40, 40)).convert("P")),
        ("RGBA", lambda: Image.new("RGBA", (40, 40), (200, 40, 40, 128))),
        ("CMYK", lambda: Image.new("RGB", (40, 40), (200, 40, 40)).convert("CMYK")),
    ],
)
def test_images_of_any_pil_mode_load_as_8_bit_rgb(tmp_path, mode, make) -> None:
    from afsl_bench.data.folder import load_image

    image = make()
    assert image.mode == mode
    path = tmp_path / ("x.tif" if mode == "CMYK" else "x.png")
    image.save(path)
    pixels = load_image(path, 16)
    assert pixels.dtype == np.uint8 and pixels.shape == (3, 16, 16)
    if mode == "I;16":
        assert abs(int(pixels.mean()) - round(30000 / 65535 * 255)) <= 1, "16-bit grey scaled, not clipped to white"
    else:
        assert pixels[0].mean() > pixels[2].mean() + 100, "the red image stays red"


@pytest.mark.parametrize("split", ["test", "train"])
def test_a_split_with_one_class_is_refused_before_any_work(tmp_path, split) -> None:
    """20 reals and 2 fakes in the user's own train/val/test folders, the fakes all in one split: the cell
    names the split, its counts and the fix, and writes nothing."""
    from afsl_bench.core.errors import ConfigError
    from afsl_bench.runner.cell import RunOptions, run_cell
    from afsl_bench.runner.plan import plan_cell

    root = tmp_path / "faces"
    for name in ("train", "val", "test"):
        for label in ("real", "fake"):
            (root / name / label).mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in ("train", "val", "test"):
        for i in range(6):
            Image.fromarray(rng.integers(0, 255, (24, 24, 3), np.uint8)).save(root / name / "real" / f"{i}.png")
        if name != split:
            Image.fromarray(rng.integers(0, 255, (24, 24, 3), np.uint8)).save(root / name / "fake" / "0.png")
    spec = plan_cell("tiny-cnn", "none", "fgsm", "folder", overrides=[f"data.root={root}", "data.resolution=16",
                                                                      "train.epochs=1"])  # fmt: skip
    with pytest.raises(ConfigError, match=f"the {split} split of folder .* holds 6 real and 0 fake images"):
        run_cell(spec, RunOptions(results_dir=tmp_path / "results", device="cpu"))
    assert not (tmp_path / "results" / "records").exists()


def test_a_folder_is_identified_by_what_it_holds_however_its_path_is_spelled(tmp_path, monkeypatch) -> None:
    """ds/good, ds/good/, ./ds/good, its absolute path and a copy elsewhere are one data set: one cell id
    and one training id (nothing retrained, one row in a table); adding an image gives new ids."""
    import shutil

    from afsl_bench.runner.plan import plan_cell

    monkeypatch.chdir(tmp_path)
    good = tmp_path / "ds" / "good"
    for label in ("real", "fake"):
        (good / label).mkdir(parents=True)
        for i in range(5):
            Image.new("RGB", (8, 8), (40 * i, 9, 9)).save(good / label / f"{i}.png")
    shutil.copytree(good, tmp_path / "copy")

    def ids(root: str) -> tuple[str, str]:
        spec = plan_cell("tiny-cnn", "none", "fgsm", "folder", overrides=[f"data.root={root}"])
        return spec.cell_id, spec.training.train_id

    spellings = ["ds/good", "ds/good/", "./ds/good", str(good), str(tmp_path / "copy")]
    assert len({ids(root) for root in spellings}) == 1
    Image.new("RGB", (8, 8)).save(good / "fake" / "extra.png")
    assert ids("ds/good") != ids(str(tmp_path / "copy"))


def test_one_image_per_class_is_too_few_not_a_wrong_layout(tmp_path) -> None:
    for label in ("real", "fake"):
        (tmp_path / label).mkdir()
        Image.new("RGB", (8, 8)).save(tmp_path / label / "0.png")
    with pytest.raises(DataNotFoundError, match=r"too few images .*: 1 real and 1 fake leave the (val|test) split empty"):
        DATASETS.build("folder", root=str(tmp_path))
