"""`afsl-bench prepare` on tiny raw data sets in the real layouts: counts, the store, resume, bad input."""

import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from _video_fixtures import FRAMES, celebdf_tree, face_video, ffpp_tree
from typer.testing import CliRunner

from afsl_bench.cli import app
from afsl_bench.core.errors import ConfigError, DataNotFoundError
from afsl_bench.prepare import FACE_DETECTORS, PrepareOptions, pipeline, prepare
from afsl_bench.prepare.faces import Face
from afsl_bench.prepare.frames import even_indices, square_around

pytestmark = pytest.mark.usefixtures("one_thread")
OPTIONS = PrepareOptions(frames=FRAMES, size=32, workers=0)
DEEPFAKES = {"methods": ("Deepfakes",)}


@pytest.fixture(scope="module")
def ffpp_raw(tmp_path_factory):
    return ffpp_tree(tmp_path_factory.mktemp("ffpp-raw"))


@pytest.fixture(scope="module")
def ffpp_store(ffpp_raw, tmp_path_factory):
    out = tmp_path_factory.mktemp("ffpp-store")
    return out, prepare("ff++", ffpp_raw, out, OPTIONS, DEEPFAKES)


def test_even_indices_span_the_video():
    assert even_indices(300, 4) == [0, 100, 199, 299]
    assert even_indices(5, 32) == [0, 1, 2, 3, 4]


def test_face_crop_is_scaled_square_clipped_to_the_frame():
    left, top, side = square_around(Face(40, 40, 80, 90, 1.0), 1.3, 200, 200)
    assert side == 65 and (left, top) == (int(60 - 32.5), int(65 - 32.5))
    left, top, side = square_around(Face(0, 0, 100, 100, 1.0), 1.3, 100, 100)
    assert (left, top) == (0, 0) and side == 100


def test_summary_counts_every_video_and_frame(ffpp_store):
    out, summary = ffpp_store
    assert summary["videos"] == 12
    assert summary["videos_by_split"] == {s: {"real": 2, "fake": 2} for s in ("train", "val", "test")}
    assert summary["corrupt_videos"] == 1 and list(summary["corrupt"]) == ["Deepfakes/054_071"]
    assert summary["frames"] == 11 * FRAMES
    assert summary["faces_found"] + summary["no_face_frames"] == summary["frames"]
    assert summary["videos_without_faces"] >= 1  # the blank video (Haar may miss a synthetic face too)
    assert summary["faces_found"] >= 0.7 * 10 * FRAMES  # synthetic faces, H.264: Haar finds most
    assert summary["missing_videos"] == 2 * (1000 - 6)  # the official splits name 1000 reals, 1000 fakes
    assert json.loads((out / "summary.json").read_text())["faces_found"] == summary["faces_found"]


def test_manifest_has_a_row_per_frame_with_status_box_and_shard(ffpp_store):
    out, summary = ffpp_store
    manifest = pd.read_parquet(out / "manifest.parquet")
    assert manifest["status"].value_counts().to_dict() == {
        "face": summary["faces_found"],
        "no-face": summary["no_face_frames"],
        "corrupt": 1,
    }
    blank = manifest[manifest["video_id"] == "Deepfakes/974_953"]
    assert list(blank["status"]) == ["no-face"] * FRAMES and blank["score"].isna().all()
    faces = manifest[manifest["status"] == "face"]
    assert (faces["x1"] > faces["x0"]).all() and faces["score"].notna().all()
    row = faces.iloc[0]
    shard = np.load(out / row["shard"], mmap_mode="r")
    assert shard.shape == (FRAMES, 3, 32, 32) and shard.dtype == np.uint8
    assert manifest.loc[manifest["status"] == "corrupt", "error"].str.contains("Invalid data").all()


def test_rerun_skips_done_videos_and_redoes_a_lost_one(ffpp_raw, ffpp_store):
    out, _ = ffpp_store
    again = prepare("ff++", ffpp_raw, out, OPTIONS, DEEPFAKES)
    assert again["this_run"] == {"prepared": 0, "corrupt": 0, "skipped": 12}
    next(iter((out / "parts").glob("youtube_071-*.parquet"))).unlink()
    redo = prepare("ff++", ffpp_raw, out, OPTIONS, DEEPFAKES)
    assert redo["this_run"]["prepared"] == 1 and redo["videos"] == 12


def test_rerun_with_other_settings_is_refused(ffpp_raw, ffpp_store):
    out, _ = ffpp_store
    with pytest.raises(ConfigError, match="size 32 \\(now 64\\)"):
        prepare("ff++", ffpp_raw, out, PrepareOptions(frames=FRAMES, size=64, workers=0), DEEPFAKES)


@pytest.mark.parametrize(
    ("dataset", "params", "message"),
    [
        ("ff++", {}, "manipulated_sequences/Face2Face/c23/videos"),  # only Deepfakes is on disk
        ("ff++", {"compression": "c40"}, "original_sequences/youtube/c40/videos"),
        ("ff++", {"methods": ("Deepfake",)}, "Did you mean 'Deepfakes'"),
        ("celeb-df", {}, "Celeb-real"),
    ],
)
def test_wrong_layout_names_the_expected_folder(ffpp_raw, tmp_path, dataset, params, message):
    with pytest.raises(ConfigError, match=message):
        prepare(dataset, ffpp_raw, tmp_path, OPTIONS, params)


def test_missing_root_says_to_pass_it(tmp_path):
    with pytest.raises(DataNotFoundError, match="--root"):
        prepare("dfdc", tmp_path / "nowhere", tmp_path / "out", OPTIONS)


def test_parallel_workers_give_the_same_store(tmp_path):
    raw = tmp_path / "raw"
    celebdf_tree(raw)
    one = prepare("celeb-df", raw, tmp_path / "one", OPTIONS)
    two = prepare("celeb-df", raw, tmp_path / "two", PrepareOptions(frames=FRAMES, size=32, workers=2))
    assert {k: v for k, v in one.items() if k != "this_run"} == {
        k: v for k, v in two.items() if k != "this_run"
    }
    a, b = (pd.read_parquet(tmp_path / s / "manifest.parquet") for s in ("one", "two"))
    pd.testing.assert_frame_equal(a.drop(columns="source"), b.drop(columns="source"))


def test_a_failure_inside_one_video_is_recorded_and_the_rest_prepared(tmp_path, monkeypatch):
    raw = tmp_path / "raw"
    celebdf_tree(raw)
    haar, calls = FACE_DETECTORS.get("haar"), []

    def crashes_once(frames):
        calls.append(len(frames))
        if len(calls) == 2:  # call 1 is prepare's up-front check of the detector
            raise RuntimeError("detector crashed")
        return haar(frames)

    monkeypatch.setattr(pipeline, "FACE_DETECTORS", SimpleNamespace(get=lambda name: crashes_once))
    summary = prepare("celeb-df", raw, tmp_path / "out", OPTIONS)
    assert summary["corrupt_videos"] == 1 and summary["videos"] == 7
    assert list(summary["corrupt"].values()) == ["RuntimeError: detector crashed"]
    assert summary["this_run"] == {"prepared": 6, "corrupt": 1, "skipped": 0}


def test_mtcnn_finds_the_faces(tmp_path):
    pytest.importorskip("facenet_pytorch")
    raw = tmp_path / "raw"
    celebdf_tree(raw)
    options = PrepareOptions(frames=4, size=32, detector="mtcnn", workers=0)
    summary = prepare("celeb-df", raw, tmp_path / "out", options)
    assert summary["faces_found"] == summary["frames"] == 7 * 4


def test_cli_prepare_prints_the_counts_and_reports_corrupt_videos(ffpp_raw, tmp_path):
    root = tmp_path / "celeb"
    celebdf_tree(root)
    (root / "Celeb-real" / "id7_0003.mp4").write_bytes(b"not a video")
    args = ["prepare", "celeb-df", "--root", str(root), "--out", str(tmp_path / "out"), "--frames", "4"]
    outcome = CliRunner().invoke(app, [*args, "--size", "32", "--workers", "0"])
    assert outcome.exit_code == 0, outcome.output
    assert "corrupt videos" in outcome.output and "corrupt: Celeb-real/id7_0003" in outcome.output
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["videos"] == 8


def test_cli_prepare_bad_input_is_one_line(tmp_path):
    face_video(tmp_path / "x.mp4", "x")
    outcome = CliRunner().invoke(
        app, ["prepare", "ff++", "--root", str(tmp_path), "--set", "compression=c50"]
    )
    assert outcome.exit_code == 2 and "'c50' is not one of raw, c23, c40" in outcome.output
    for spelled in ("compression=c50", "layout.compression=c50"):  # the one --set parser: both spellings
        outcome = CliRunner().invoke(app, ["prepare", "ff++", "--root", str(tmp_path), "--set", spelled])
        assert outcome.exit_code == 2
        assert "--set layout.compression=c50: 'c50' is not one of" in outcome.output
    outcome = CliRunner().invoke(app, ["prepare", "ff++", "--root", str(tmp_path), "--set", "compression"])
    assert outcome.exit_code == 2
    assert "--set 'compression' must look like KEY=VALUE, e.g. compression=c40" in outcome.output
    outcome = CliRunner().invoke(app, ["prepare", "ff++", "--root", str(tmp_path), "--face-detector", "dlib"])
    assert outcome.exit_code == 2 and "unknown face detector 'dlib'" in outcome.output


def test_the_face_track_drops_unconfident_boxes_and_jumps_to_the_background():
    from afsl_bench.prepare.faces import track

    face = [Face(100 + 4 * t, 80, 160 + 4 * t, 150, 3.0) for t in range(6)]  # a face drifting right
    patch = Face(5, 5, 95, 95, 0.24)  # a large background patch the cascade accepted weakly
    far = Face(400, 300, 470, 380, 2.0)  # a confident box on the other side of the frame
    candidates = [[face[0], patch], [face[1]], [far], [patch], [face[4], far], [face[5]]]
    kept = track(candidates, min_score=1.0)
    assert kept == [face[0], face[1], None, None, face[4], face[5]]
    assert track([[patch], []], min_score=1.0) == [None, None], "no confident face: no face at all"
    # the track starts at the most confident face, and follows it backwards as well
    strong = Face(104, 80, 164, 150, 9.0)
    assert track([[face[0]], [strong, far]], min_score=1.0) == [face[0], strong]
