"""One JSON record + one Parquet per-sample table per cell, under ``<root>/records/``.

Writes are atomic (a temporary file in the same folder, then ``os.replace``), the Parquet table first and
the JSON record last, so a record that exists always has its table and a killed process leaves either the
old state or the new one, never half a file. The pair is written under an exclusive lock on
``records/.lock`` (``flock``), so two processes writing the same cell cannot leave one's record with the
other's table; ``finished_with_samples`` reads a pair under the shared lock. Each record is also listed in the
index ``records/by-train/<train_id>/<cell_id>`` (an empty marker written after the record), so the records
of one trained model are found without reading the whole store.

Only this module knows the folder layout of a results directory:

    <root>/records/<cell_id>.json, <cell_id>.parquet   one record + per-sample table per cell
    <root>/records/by-train/<train_id>/<cell_id>        the index of records by trained model
    <root>/checkpoints/<train_id>.pt (.partial.pt)      trained (and interrupted) models
    <root>/cache/clean/<key>.pt                         clean scores of a model on an evaluation set
    <root>/cache/probes/<key>/<hash>.json               the model-level gradient-masking probes
    <root>/plots/                                       ``afsl-bench plot``'s default output

All of it is runtime output (git-ignored); every file goes through the one atomic writer (``core.io``).
"""

from __future__ import annotations

import io
import json
import logging
import os
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from afsl_bench.core.errors import ConfigError
from afsl_bench.core.io import UNREADABLE, atomic_write, atomic_write_bytes, check_writable
from afsl_bench.core.spec import content_hash, spec_identity
from afsl_bench.store.record import Record, failed_record

try:
    import fcntl
except ImportError:  # Windows: no flock; a single writer per store is then the user's job
    fcntl = None


log = logging.getLogger(__name__)


def read_record(path: Path) -> Record | None:
    """The record in ``path``, or None with a warning naming the file when it is unreadable (not JSON, empty,
    truncated, or missing a required field): the store treats it as absent, so the cell is recomputed and
    the file rewritten, and listings skip it. None, silently, when there is no file."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        problem = f"not a JSON record ({str(err).splitlines()[0]})"
    else:
        try:
            if isinstance(data, dict):
                return Record.from_json(data)
            problem = "not a JSON object"
        except ValueError as err:
            problem = str(err)
    log.warning(
        "%s is %s: ignored; the cell is recomputed when run again (or delete the file)", path, problem
    )
    return None


def atomic_write_parquet(path: Path, table: pd.DataFrame) -> Path:
    return atomic_write(path, lambda tmp: table.to_parquet(tmp, index=False))


@contextmanager
def file_lock(path: Path, *, shared: bool = False) -> Iterator[None]:
    """An ``flock`` on ``path`` (created if missing) for the duration of the block; released on close."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


class RecordStore:
    """Records of finished cells, addressed by ``cell_id``."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self.records = self.root / "records"
        self.checkpoints = self.root / "checkpoints"
        self.by_train_index = self.records / "by-train"
        self.clean_cache = self.root / "cache" / "clean"
        self.probes = self.root / "cache" / "probes"
        self.plots = self.root / "plots"

    def check_writable(self) -> None:
        """Refuse, before any training or attack, a results directory this process cannot write (a file, a
        read-only folder): the work would be lost at the end."""
        for folder in (self.records, self.checkpoints):
            check_writable(folder, "the results directory's folder", "pass a writable --results-dir")

    def record_path(self, cell_id: str) -> Path:
        return self.records / f"{cell_id}.json"

    def samples_path(self, cell_id: str) -> Path:
        return self.records / f"{cell_id}.parquet"

    def probe_memo(self, key: str) -> ProbeMemo:
        """The memo of model-level probe results for one trained model and evaluation set (``key``)."""
        return ProbeMemo(self.probes / key)

    def _locked(self, *, shared: bool = False):
        return file_lock(self.records / ".lock", shared=shared)

    def write(self, record: Record, samples: pd.DataFrame) -> Path:
        """Write a finished cell's record and table; a record of another spec under the same cell id (which
        only a changed identity rule or a hash collision could give) is never replaced: that is an error."""
        text = json.dumps(record.to_json(), indent=2, sort_keys=True, allow_nan=True) + "\n"
        with self._locked():
            existing = self.read(record.cell_id)
            if existing is not None and spec_identity(existing.spec) != spec_identity(record.spec):
                raise ConfigError(
                    f"{self.record_path(record.cell_id)} holds a record of another model or setting under the same "
                    f"cell id ({existing.spec.get('detector', {}).get('name')} vs "
                    f"{record.spec.get('detector', {}).get('name')}): refusing to replace it; use another "
                    "--results-dir, or name the model (name=) if it was given to afsl_bench.evaluate"
                )
            atomic_write_parquet(self.samples_path(record.cell_id), samples)
            atomic_write_bytes(self.record_path(record.cell_id), text.encode())
            self._index(record)
        return self.record_path(record.cell_id)

    def _index(self, record: Record) -> None:
        """List the record under its training id (after the record exists: a marker always has its record)."""
        if record.train_id:
            marker = self.by_train_index / record.train_id / record.cell_id
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.touch()

    def write_failure(self, cell_id: str, train_id: str, spec: dict[str, Any], error: dict[str, str]) -> Path:
        """A cell that raised: its spec and error, status ``failed`` (no table); a rerun retries it."""
        record = failed_record(cell_id, train_id, spec, error)
        with self._locked():
            atomic_write_bytes(
                self.record_path(cell_id), (json.dumps(record.to_json(), indent=2, sort_keys=True) + "\n").encode()
            )
            self._index(record)
        return self.record_path(cell_id)

    def read(self, cell_id: str) -> Record | None:
        """The cell's record; None when there is none or it is unreadable (``read_record``)."""
        return read_record(self.record_path(cell_id))

    def read_samples(self, cell_id: str) -> pd.DataFrame:
        """The cell's per-sample table; a ConfigError naming the file and the fix when it is unreadable."""
        path = self.samples_path(cell_id)
        try:
            # one open file: reading by path, pyarrow opens the file more than once, and a rewrite of the
            # cell in between pairs one version's footer with the other's pages ("Page was smaller ...")
            with path.open("rb") as handle:
                return pd.read_parquet(handle)
        except (OSError, ValueError) as err:  # pyarrow's errors are ValueErrors (ArrowInvalid, ...)
            reason = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise ConfigError(f"{path} is unreadable ({reason}): recompute the cell with --force") from None

    def finished_with_samples(self, cell_id: str) -> tuple[Record, pd.DataFrame] | None:
        """The record of a finished cell and its table as one consistent pair, even while another process
        rewrites the cell (``finished``, then ``read_samples``, could pair the old record with the new
        table)."""
        with self._locked(shared=True):
            record = self.finished(cell_id)
            return None if record is None else (record, self.read_samples(cell_id))

    def finished(self, cell_id: str) -> Record | None:
        """The record of a cell that completed (status ok), else None."""
        record = self.read(cell_id)
        return record if record and record.ok else None

    def __iter__(self) -> Iterator[Record]:
        """Every readable record, failed ones included (filter on ``status``); unreadable ones are skipped
        with a warning naming the file."""
        for path in sorted(self.records.glob("*.json")):
            if (record := read_record(path)) is not None:
                yield record

    def by_train(self, train_id: str) -> Iterator[Record]:
        """The records of one trained model, failed ones included (filter on ``status``), from the index."""
        self._build_index_once()
        folder = self.by_train_index / train_id
        for marker in sorted(folder.iterdir()) if folder.is_dir() else []:
            record = self.read(marker.name)  # None when the record was deleted by hand
            if record is not None and record.train_id == train_id:
                yield record

    def _build_index_once(self) -> None:
        """Stores written before the index existed: list their records once (later writes list their own)."""
        complete = self.by_train_index / ".complete"
        if complete.exists() or not self.records.is_dir():
            return
        with self._locked():
            for record in self:
                self._index(record)
            complete.parent.mkdir(parents=True, exist_ok=True)
            complete.touch()

    def clean_scores_path(self, key: str) -> Path:
        return self.clean_cache / f"{key}.pt"

    def clean_scores(self, key: str, fingerprint: str) -> torch.Tensor | None:
        """Cached clean scores (float32, in split order) if written for the same ``fingerprint`` (the
        weights and sample ids they came from), else None."""
        path = self.clean_scores_path(key)
        if not path.exists():
            return None
        try:
            entry = torch.load(path, weights_only=True)
            return entry["scores"] if entry.get("fingerprint") == fingerprint else None
        except UNREADABLE as err:  # a cache: anything unreadable is recomputed (and rewritten)
            log.warning("%s is unreadable (%s): recomputing the clean scores", path, type(err).__name__)
            return None

    def write_clean_scores(self, key: str, scores: torch.Tensor, fingerprint: str) -> Path:
        buffer = io.BytesIO()
        torch.save({"scores": scores.detach().cpu().float().clone(), "fingerprint": fingerprint}, buffer)
        atomic_write_bytes(self.clean_scores_path(key), buffer.getvalue())
        return self.clean_scores_path(key)


class ProbeMemo(MutableMapping[str, dict[str, Any]]):
    """The model-level probe results of one trained model and evaluation set, one JSON file per budget and
    probe (``<results>/cache/probes/<model+eval hash>/<key hash>.json``, written atomically)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def _path(self, key: str) -> Path:
        return self.folder / f"{content_hash(key)}.json"

    def __getitem__(self, key: str) -> dict[str, Any]:
        path = self._path(key)
        try:
            return json.loads(path.read_text())["value"]
        except FileNotFoundError:
            raise KeyError(key) from None
        except UNREADABLE:  # a cache: an unreadable entry is recomputed
            log.warning("%s is unreadable: the probe is run again", path)
            raise KeyError(key) from None

    def __setitem__(self, key: str, value: dict[str, Any]) -> None:
        text = json.dumps({"key": key, "value": value}, sort_keys=True)
        atomic_write_bytes(self._path(key), text.encode())

    def __delitem__(self, key: str) -> None:
        self._path(key).unlink()

    def __iter__(self) -> Iterator[str]:
        for path in sorted(self.folder.glob("*.json")):
            try:
                yield json.loads(path.read_text())["key"]
            except UNREADABLE:
                continue

    def __len__(self) -> int:
        return len(list(self.folder.glob("*.json")))
