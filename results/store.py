"""One JSON record + one Parquet per-sample table per cell, under ``<root>/records/``.

Writes are atomic (a temporary file in the same folder, then ``os.replace``), the Parquet table first and
the JSON record last, so a record that exists always has its table and a killed process leaves either the
old state or the new one, never half a file. Trained checkpoints live in ``<root>/checkpoints/``.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

STATUS_OK = "ok"
STATUS_FAILED = "failed"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_parquet(path: Path, table: pd.DataFrame) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        table.to_parquet(tmp, index=False)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class RecordStore:
    """Records of finished cells, addressed by ``cell_id``."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self.records = self.root / "records"
        self.checkpoints = self.root / "checkpoints"

    def record_path(self, cell_id: str) -> Path:
        return self.records / f"{cell_id}.json"

    def samples_path(self, cell_id: str) -> Path:
        return self.records / f"{cell_id}.parquet"

    def write(self, record: dict[str, Any], samples: pd.DataFrame) -> Path:
        cell_id = record["cell_id"]
        atomic_write_parquet(self.samples_path(cell_id), samples)
        text = json.dumps(record, indent=2, sort_keys=True, allow_nan=True) + "\n"
        atomic_write_bytes(self.record_path(cell_id), text.encode())
        return self.record_path(cell_id)

    def write_failure(self, cell_id: str, train_id: str, spec: dict[str, Any], error: dict[str, str]) -> Path:
        """A cell that raised: its spec and error, status ``failed`` (no table); a rerun retries it."""
        record = {
            "cell_id": cell_id,
            "train_id": train_id,
            "status": STATUS_FAILED,
            "spec": spec,
            "error": error,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        atomic_write_bytes(
            self.record_path(cell_id), (json.dumps(record, indent=2, sort_keys=True) + "\n").encode()
        )
        return self.record_path(cell_id)

    def read(self, cell_id: str) -> dict[str, Any] | None:
        path = self.record_path(cell_id)
        if not path.exists():
            return None
        return json.loads(path.read_text())

    def read_samples(self, cell_id: str) -> pd.DataFrame:
        return pd.read_parquet(self.samples_path(cell_id))

    def finished(self, cell_id: str) -> dict[str, Any] | None:
        """The record of a cell that completed (status ok), else None."""
        record = self.read(cell_id)
        return record if record and record.get("status") == STATUS_OK else None

    def __iter__(self) -> Iterator[dict[str, Any]]:
        """Every record, failed ones included (filter on ``status``)."""
        for path in sorted(self.records.glob("*.json")):
            yield json.loads(path.read_text())
