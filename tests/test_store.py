"""The record store: round trips, atomic writes, only finished records count, the by-training-id index
and the clean-score cache."""

import json
import shutil

import pandas as pd
import pytest
import torch

from afsl_bench.core.errors import ConfigError
from afsl_bench.store.disk import RecordStore
from afsl_bench.store.record import Record


def _record(cell_id: str = "abc", status: str = "ok") -> Record:
    return Record(cell_id, status, {}, metrics={"clean_acc": 0.9, "robust_acc": 0.4})


def test_write_then_read_round_trips_json_and_parquet(tmp_path) -> None:
    store = RecordStore(tmp_path)
    samples = pd.DataFrame({"sample_id": ["a", "b"], "adv_score": [0.5, -1.25]})
    store.write(_record(), samples)
    assert store.read("abc").metrics["robust_acc"] == 0.4
    pd.testing.assert_frame_equal(store.read_samples("abc"), samples)
    assert [r.cell_id for r in store] == ["abc"]


def test_failed_write_keeps_the_previous_record_and_leaves_no_temp_file(tmp_path, monkeypatch) -> None:
    store = RecordStore(tmp_path)
    store.write(_record(), pd.DataFrame({"x": [1]}))

    def explode(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("afsl_bench.store.disk.os.replace", explode)
    with pytest.raises(KeyboardInterrupt):
        store.write(_record().replace(metrics={"robust_acc": 0.0}), pd.DataFrame({"x": [2]}))
    assert json.loads(store.record_path("abc").read_text())["metrics"]["robust_acc"] == 0.4
    assert sorted(p.name for p in store.records.iterdir()) == [".lock", "abc.json", "abc.parquet"]


def test_only_ok_records_are_finished(tmp_path) -> None:
    store = RecordStore(tmp_path)
    store.write(_record("bad", status="failed"), pd.DataFrame({"x": [1]}))
    assert store.finished("bad") is None and store.read("bad").status == "failed"
    assert store.finished("missing") is None


def _model_record(cell_id: str, train_id: str, status: str = "ok") -> Record:
    return _record(cell_id, status).replace(train_id=train_id)


def test_by_train_lists_exactly_the_records_of_one_model_and_iteration_lists_only_records(tmp_path) -> None:
    store = RecordStore(tmp_path)
    for cell_id, train_id in [("c1", "m1"), ("c2", "m2"), ("c3", "m1"), ("c4", "m2")]:
        store.write(_model_record(cell_id, train_id), pd.DataFrame({"x": [1]}))
    store.write_failure("c5", "m1", {}, {"type": "ValueError", "message": "boom", "traceback": ""})
    store.write(_model_record("c1", "m1"), pd.DataFrame({"x": [2]}))  # a rewrite is listed once
    assert [(r.cell_id, r.status) for r in store.by_train("m1")] == [
        ("c1", "ok"),
        ("c3", "ok"),
        ("c5", "failed"),
    ]
    assert [r.cell_id for r in store.by_train("m2")] == ["c2", "c4"]
    assert list(store.by_train("never-trained")) == []
    assert [r.cell_id for r in store] == ["c1", "c2", "c3", "c4", "c5"]

    store.record_path("c3").unlink()  # a record deleted by hand (to rerun the cell) is not listed
    assert [r.cell_id for r in store.by_train("m1")] == ["c1", "c5"]


def test_a_store_written_before_the_index_existed_is_indexed_on_first_use(tmp_path) -> None:
    store = RecordStore(tmp_path)
    store.write(_model_record("c1", "m1"), pd.DataFrame({"x": [1]}))
    store.write(_model_record("c2", "m2"), pd.DataFrame({"x": [1]}))
    shutil.rmtree(store.by_train_index)  # as an older version left it
    store.write(_model_record("c3", "m1"), pd.DataFrame({"x": [1]}))  # the new version lists its own
    assert [r.cell_id for r in store.by_train("m1")] == ["c1", "c3"]
    assert [r.cell_id for r in store.by_train("m2")] == ["c2"]


def test_clean_scores_round_trip_exactly_and_only_for_the_same_fingerprint(tmp_path) -> None:
    store = RecordStore(tmp_path)
    scores = torch.tensor([0.1, -2.5e-7, 3.0e5, -0.0], dtype=torch.float32)
    assert store.clean_scores("k", "weights1") is None
    store.write_clean_scores("k", scores, "weights1")
    assert torch.equal(store.clean_scores("k", "weights1"), scores)
    assert store.clean_scores("k", "weights2") is None, "other weights: recompute"
    assert store.clean_scores("other", "weights1") is None
    assert [p.name for p in store.clean_cache.iterdir()] == ["k.pt"]


def test_a_record_of_another_spec_under_the_same_cell_id_is_never_replaced(tmp_path) -> None:
    store = RecordStore(tmp_path)
    first = _record().replace(spec={"detector": {"name": "a", "params": {}, "version": 1}})
    store.write(first, pd.DataFrame({"x": [1]}))
    store.write(first.replace(metrics={"robust_acc": 0.1}), pd.DataFrame({"x": [1]}))  # the same model: fine
    other = first.replace(spec={"detector": {"name": "b", "params": {}, "version": 1}})
    with pytest.raises(ConfigError, match=r"holds a record of another model.*\(a vs b\)"):
        store.write(other, pd.DataFrame({"x": [2]}))
    assert store.read("abc").spec["detector"]["name"] == "a"
    data = {"name": "folder", "params": {"root": "/here"}, "version": 1, "location": ["root"]}
    here = Record("loc", "ok", {"data": data})
    store.write(here, pd.DataFrame({"x": [1]}))
    elsewhere = here.replace(spec={"data": data | {"params": {"root": "/elsewhere"}}})
    store.write(elsewhere, pd.DataFrame({"x": [1]}))  # a copy of the data elsewhere: the same data set
    assert store.read("loc").spec["data"]["params"]["root"] == "/elsewhere"


def test_records_are_written_with_the_users_umask(tmp_path) -> None:
    """Not 0600 (the temporary file's mode): a shared results folder stays readable by the team."""
    import os

    before = os.umask(0o022)
    try:
        path = RecordStore(tmp_path).write(_record(), pd.DataFrame({"x": [1]}))
    finally:
        os.umask(before)
    assert path.stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "records" / "abc.parquet").stat().st_mode & 0o777 == 0o644


def test_a_shared_checkpoint_folder_trains_a_model_once_across_stores(tmp_path, monkeypatch) -> None:
    """``AFSL_CHECKPOINT_CACHE``: a second store copies the model the first trained instead of training it
    (the same weights: the same record); a model trained in bf16 is kept out of the shared folder."""
    from afsl_bench import api

    shared = tmp_path / "shared"
    monkeypatch.setenv("AFSL_CHECKPOINT_CACHE", str(shared))
    small = ["data.n_identities=20", "data.images_per_identity=6", "data.resolution=32", "train.epochs=1",
             "eval.samples=16", "attack.steps=2"]  # fmt: skip
    first = api.run(overrides=small, results_dir=tmp_path / "a", checks=False, progress=False).record
    (trained,) = shared.glob("*.pt")
    assert trained.name == f"{first.train_id}.pt" and first.training["cached"] is False
    second = api.run(overrides=small, results_dir=tmp_path / "b", checks=False, progress=False).record
    assert second.training["cached"] is True and (tmp_path / "b" / "checkpoints" / trained.name).is_file()
    assert second.metrics == first.metrics
    other = [*small[:-3], "train.epochs=2", *small[-2:]]
    api.run(overrides=other, results_dir=tmp_path / "c", checks=False, progress=False, precision="bf16")
    assert list(shared.glob("*.pt")) == [trained], "a bf16-trained checkpoint is not shared"
