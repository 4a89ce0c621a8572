"""Two processes writing one store at once: every record parses and has the table it describes.

Both writers write the same cell ids (a sweep run twice by accident, or two workers on one grid) and cell ids
of their own, many times, with tables of different sizes, so a record paired with the other writer's table
shows as a wrong ``n_samples`` or ``writer``.
"""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

import numpy as np
import pandas as pd

from afsl_bench.store.disk import RecordStore
from afsl_bench.store.record import Record

WRITES = 50
ROWS = {"a": 20_000, "b": 30_000}  # different sizes: a mixed pair cannot match by accident
SHARED = [f"shared{i}" for i in range(3)]


def _table(writer: str, step: int) -> pd.DataFrame:
    n = ROWS[writer]
    rng = np.random.default_rng(step)
    return pd.DataFrame(
        {
            "sample_id": [f"s{i}" for i in range(n)],
            "writer": writer,
            "step": step,
            "adv_score": rng.standard_normal(n).astype("float32"),
        }
    )


def _writer(root: str, writer: str, start: multiprocessing.synchronize.Barrier) -> None:
    store = RecordStore(root)
    start.wait(timeout=120)
    for step in range(WRITES):
        cell_id = SHARED[step % len(SHARED)] if step % 2 == 0 else f"{writer}{step % 4}"
        table = _table(writer, step)
        record = Record.from_json({
            "cell_id": cell_id,
            "train_id": "model0",
            "status": "ok",
            "spec": {},
            "writer": writer,  # keys a record does not know are kept (``Record.extra``)
            "step": step,
            "n_samples": len(table),
        })
        store.write(record, table)


def _matches(record: Record, table: pd.DataFrame) -> bool:
    return (record.extra["writer"], record.extra["step"], record.n_samples) == (
        table["writer"][0],
        table["step"][0],
        len(table),
    )


def _read_while_running(store: RecordStore, workers: list) -> int:
    """Read every record while the writers run: each has its table, and a pair read with
    ``finished_with_samples`` matches. Returns how many pairs were checked."""
    checked, deadline = 0, time.monotonic() + 300  # a hung writer fails the test instead of hanging it
    while any(w.is_alive() for w in workers) and time.monotonic() < deadline:
        for path in store.records.glob("*.json"):
            store.read_samples(path.stem)  # unlocked: a record that exists has its table
            record, table = store.finished_with_samples(path.stem)
            assert _matches(record, table), (record, table.iloc[0])
            checked += 1
    return checked


def test_two_processes_writing_the_same_store_leave_matching_records_and_tables(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(len(ROWS))
    workers = [context.Process(target=_writer, args=(str(tmp_path), w, start)) for w in ROWS]
    for worker in workers:
        worker.start()
    store = RecordStore(tmp_path)
    seen = _read_while_running(store, workers)
    for worker in workers:
        worker.join(timeout=120)
    assert [w.exitcode for w in workers] == [0, 0]
    assert seen > 0, "the reader saw records while the writers ran"

    records = list(store)
    assert sorted(r.cell_id for r in records) == sorted(
        [*SHARED, *(f"{w}{i}" for w in ROWS for i in (1, 3))]
    )
    for record in records:
        table = store.read_samples(record.cell_id)
        assert record.n_samples == len(table) == ROWS[record.extra["writer"]], record.cell_id
        assert set(table["writer"]) == {record.extra["writer"]} and set(table["step"]) == {record.extra["step"]}
        assert record.extra["step"] >= WRITES - 6, "the record is one of the last writes of its cell"
    leftovers = [p.name for p in tmp_path.rglob("*") if p.is_file() and p.name.endswith(".tmp")]
    assert leftovers == []
    assert sorted(r.cell_id for r in store.by_train("model0")) == sorted(r.cell_id for r in records)
