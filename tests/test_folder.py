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
