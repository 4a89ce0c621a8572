"""The record store: round trips, atomic writes, and only finished records count."""

import json

import pandas as pd
import pytest

from results.store import RecordStore


def _record(cell_id: str = "abc", status: str = "ok") -> dict:
    return {"cell_id": cell_id, "status": status, "metrics": {"clean_acc": 0.9, "robust_acc": 0.4}}


def test_write_then_read_round_trips_json_and_parquet(tmp_path) -> None:
    store = RecordStore(tmp_path)
    samples = pd.DataFrame({"sample_id": ["a", "b"], "adv_score": [0.5, -1.25]})
    store.write(_record(), samples)
    assert store.read("abc")["metrics"]["robust_acc"] == 0.4
    pd.testing.assert_frame_equal(store.read_samples("abc"), samples)
    assert [r["cell_id"] for r in store] == ["abc"]


def test_failed_write_keeps_the_previous_record_and_leaves_no_temp_file(tmp_path, monkeypatch) -> None:
    store = RecordStore(tmp_path)
    store.write(_record(), pd.DataFrame({"x": [1]}))

    def explode(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("results.store.os.replace", explode)
    with pytest.raises(KeyboardInterrupt):
        store.write({**_record(), "metrics": {"robust_acc": 0.0}}, pd.DataFrame({"x": [2]}))
    assert json.loads(store.record_path("abc").read_text())["metrics"]["robust_acc"] == 0.4
    assert sorted(p.name for p in store.records.iterdir()) == ["abc.json", "abc.parquet"]


def test_only_ok_records_are_finished(tmp_path) -> None:
    store = RecordStore(tmp_path)
    store.write(_record("bad", status="failed"), pd.DataFrame({"x": [1]}))
    assert store.finished("bad") is None and store.read("bad")["status"] == "failed"
    assert store.finished("missing") is None
