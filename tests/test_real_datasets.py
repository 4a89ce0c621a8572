"""The real data sets (ff++, faceshifter, deeperforensics, celeb-df, dfdc) read from prepared fixture stores:
split sizes, labels (Celeb-DF's inverted list included), video ids, clips, and the errors a user meets."""

import json
import pickle

import numpy as np
import pandas as pd
import pytest
import torch
from _video_fixtures import (
    FFPP_PAIRS,
    celebdf_tree,
    deeperforensics_tree,
    dfdc_tree,
    face_frames,
    ffpp_tree,
    write_mp4,
)
from typer.testing import CliRunner

from afsl_bench.cli import app
from afsl_bench.core import types
from afsl_bench.core.errors import ConfigError, DataNotFoundError
from afsl_bench.data import DATASETS
from afsl_bench.prepare import PrepareOptions, prepare
from afsl_bench.prepare.layout import FAKE, REAL

pytestmark = pytest.mark.usefixtures("one_thread")
OPTIONS = PrepareOptions(frames=4, size=32, workers=0)
SPLITS = ("train", "val", "test")


def _store(tmp_path_factory, name, build, params=None):
    raw = tmp_path_factory.mktemp(f"{name}-raw")
    expected = build(raw)
    out = tmp_path_factory.mktemp(f"{name}-store")
    return out, prepare(name, raw, out, OPTIONS, params), expected


@pytest.fixture(scope="module")
def ffpp_store(tmp_path_factory):
    return _store(tmp_path_factory, "ff++", ffpp_tree, {"methods": ("Deepfakes",)})


@pytest.fixture(scope="module")
def celebdf_store(tmp_path_factory):
    return _store(tmp_path_factory, "celeb-df", celebdf_tree)


@pytest.fixture(scope="module")
def dfdc_store(tmp_path_factory):
    return _store(tmp_path_factory, "dfdc", dfdc_tree)


@pytest.fixture(scope="module")
def faceshifter_store(tmp_path_factory):
    return _store(tmp_path_factory, "faceshifter", lambda root: ffpp_tree(root, method="FaceShifter"))


@pytest.fixture(scope="module")
def deeperforensics_store(tmp_path_factory):
    return _store(tmp_path_factory, "deeperforensics", deeperforensics_tree)


def _faces(out):
    manifest = pd.read_parquet(out / "manifest.parquet")
    return manifest[manifest["status"] == "face"]


def ffpp_split_of(video_id):
    name = video_id.split("/")[1]
    return next(s for s, pair in FFPP_PAIRS.items() if name.split("_")[0] in pair)


def test_labels_match_the_core_types():
    assert (REAL, FAKE) == (types.REAL, types.FAKE)


def test_ffpp_splits_follow_the_official_pairs(ffpp_store):
    out, _, _ = ffpp_store
    bundle = DATASETS.build("ff++", prepared=str(out), methods=("Deepfakes",))
    faces = _faces(out)
    for split in SPLITS:
        part = bundle.split(split)
        assert len(part) == (faces["split"] == split).sum()
        assert all(ffpp_split_of(v) == split for v in part.video_ids)
        assert part.labels.tolist() == [int(v.startswith("Deepfakes/")) for v in part.video_ids]
        assert set(part.methods) <= {"real", "Deepfakes"}
    assert len(set(bundle.test.sample_ids)) == len(bundle.test)
    assert "Deepfakes/974_953" not in bundle.test.video_ids  # blank: no face, dropped and counted
    assert bundle.info["frames_without_face"] >= 4 and bundle.info["corrupt_videos"] == 1


def test_ffpp_batches_are_float_images_of_the_store(ffpp_store):
    out, _, _ = ffpp_store
    split = DATASETS.build("ff++", prepared=str(out), methods=("Deepfakes",)).train
    batch = split.batch([0, len(split) - 1])
    assert batch.x.shape == (2, 3, 32, 32) and batch.x.dtype == torch.float32 and 0 <= batch.x.min()
    first = split.sample_ids[0]
    video, frame = first.split("#")
    faces = _faces(out)
    row = faces[(faces["video_id"] == video) & (faces["frame"] == int(frame))].iloc[0]
    stored = np.load(out / row["shard"])[row["row"]]
    assert torch.equal(batch.x[0], torch.from_numpy(stored).float() / 255)
    assert pickle.loads(pickle.dumps(split.images))[[0]].tolist() == split.images[[0]].tolist()


def test_ffpp_keep_no_face_frames_and_clips(ffpp_store):
    out, _, _ = ffpp_store
    kept = DATASETS.build("ff++", prepared=str(out), methods=("Deepfakes",), no_face="keep")
    assert kept.test.video_ids.count("Deepfakes/974_953") == 4
    clips = DATASETS.build("ff++", prepared=str(out), methods=("Deepfakes",), no_face="keep", clip_frames=2)
    assert clips.test.image_shape == (2, 3, 32, 32) and len(clips.test) == len(kept.test) // 2
    assert clips.test.batch([0]).x.shape == (1, 2, 3, 32, 32)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"methods": ("Face2Face",)}, "has no Face2Face fakes \\(it holds: Deepfakes\\)"),
        ({"compression": "c40"}, "prepared with compression=c23, not c40"),
        ({"clip_frames": 1}, "clip_frames=1"),
    ],
)
def test_ffpp_refuses_what_the_store_does_not_hold(ffpp_store, params, message):
    out, _, _ = ffpp_store
    with pytest.raises(ConfigError, match=message):
        DATASETS.build("ff++", prepared=str(out), **params)


def test_celebdf_inverts_the_test_list_labels(celebdf_store):
    out, summary, expected = celebdf_store
    bundle = DATASETS.build("celeb-df", prepared=str(out))
    label_of = dict(zip(bundle.test.video_ids, bundle.test.labels.tolist()))
    assert label_of == {
        "Celeb-real/id500_0001": 0,
        "YouTube-real/00001": 0,
        "Celeb-synthesis/id500_id9_0001": 1,
    }
    for split in SPLITS:
        assert set(bundle.split(split).video_ids) == {v for v, s in expected.items() if s == split}
    assert summary["videos_by_split"]["test"] == {"real": 2, "fake": 1}


def test_dfdc_keeps_a_fake_in_the_split_of_its_original(dfdc_store):
    out, summary, expected = dfdc_store
    bundle = DATASETS.build("dfdc", prepared=str(out))
    for split in SPLITS:
        part = bundle.split(split)
        assert set(part.video_ids) == {v for v, s in expected.items() if s == split}
        assert part.labels.tolist() == [int(v.startswith("fake_")) for v in part.video_ids]
    assert summary["missing_videos"] == 1 and "absent.mp4" in summary["missing_examples"][0]


def test_faceshifter_and_deeperforensics_use_ffpp_reals_and_splits(faceshifter_store, deeperforensics_store):
    out, _, _ = faceshifter_store
    shifter = DATASETS.build("faceshifter", prepared=str(out))
    assert set(shifter.train.methods) == {"real", "FaceShifter"}
    out, _, _ = deeperforensics_store
    dfo = DATASETS.build("deeperforensics", prepared=str(out))
    for split in SPLITS:
        fakes = {v for v, y in zip(dfo.split(split).video_ids, dfo.split(split).labels.tolist()) if y == 1}
        assert fakes == {f"DeeperForensics/{FFPP_PAIRS[split][0]}_M101"}


def test_a_store_of_another_data_set_is_refused(celebdf_store):
    out, _, _ = celebdf_store
    with pytest.raises(ConfigError, match="holds a prepared 'celeb-df' store"):
        DATASETS.build("dfdc", prepared=str(out))


def test_missing_store_says_where_what_and_how(tmp_path, monkeypatch):
    monkeypatch.setenv("AFSL_DATA", str(tmp_path / "data"))
    with pytest.raises(DataNotFoundError) as caught:
        DATASETS.build("celeb-df")
    text = str(caught.value)
    assert str(tmp_path / "data" / "celeb-df") in text and "Celeb-synthesis" in text
    assert "afsl-bench prepare celeb-df --root RAW_ROOT" in text
    outcome = CliRunner().invoke(app, ["run", "--dataset", "celeb-df", "--results-dir", str(tmp_path / "r")])
    assert outcome.exit_code == 2 and "afsl-bench prepare celeb-df" in outcome.output


def test_a_grey_video_is_prepared_as_rgb(tmp_path):
    root = tmp_path / "raw"
    frames = face_frames(7, n=4)
    write_mp4(root / "dfdc_train_part_0" / "greyish0.mp4", frames, codec="png", pix_fmt="gray")
    meta = {"greyish0.mp4": {"label": "REAL", "split": "train", "original": None}}
    (root / "dfdc_train_part_0" / "metadata.json").write_text(json.dumps(meta))
    summary = prepare("dfdc", root, tmp_path / "out", OPTIONS)
    assert summary["frames"] == 4 and summary["corrupt_videos"] == 0
    crops = np.load(next((tmp_path / "out" / "shards").glob("*.npy")))
    assert crops.shape == (4, 3, 32, 32) and (crops[:, 0] == crops[:, 1]).all()  # grey, as RGB


@pytest.mark.parametrize("name, store, extra", [
    # ff++'s only test fake has no face: kept (its centre square), or the test split would hold one class,
    # which a run refuses
    ("ff++", "ffpp_store", ["data.methods=Deepfakes", "data.no_face=keep"]), ("celeb-df", "celebdf_store", []),
    ("dfdc", "dfdc_store", []),
    ("faceshifter", "faceshifter_store", []), ("deeperforensics", "deeperforensics_store", []),
])
def test_run_end_to_end_on_a_prepared_store(name, store, extra, request, tmp_path):
    out, _, _ = request.getfixturevalue(store)
    args = ["run", "--dataset", name, "--set", f"data.prepared={out}", *(a for e in extra for a in ("--set", e))]
    args += ["--set", "train.epochs=1", "--no-checks", "--results-dir", str(tmp_path), "--json"]
    outcome = CliRunner().invoke(app, args)
    assert outcome.exit_code == 0, outcome.output
    record = json.loads(outcome.stdout)
    ffpp = {"methods": ("Deepfakes",), "no_face": "keep"} if name == "ff++" else {}
    test = DATASETS.build(name, prepared=str(out), **ffpp).test
    assert record["spec"]["eval_data"]["name"] == name
    assert record["n_samples"] == len(test) and record["n_videos"] == len(set(test.video_ids))
    assert "video_clean_acc" in record["metrics"]
