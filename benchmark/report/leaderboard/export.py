"""The leaderboard's records: the compact copy of each finished record that the committed export
(``results/leaderboard/records.jsonl``) keeps, collected from the store for the suite's cells, and the banner of
a leaderboard whose suite is not fully run.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from afsl_bench.core.errors import ConfigError
from afsl_bench.core.io import atomic_write_text
from afsl_bench.runner.sweep import Suite
from afsl_bench.store.disk import RecordStore
from afsl_bench.store.record import Record

SUITE = Path("suites/leaderboard.toml")


EXPORT = Path("results/leaderboard/records.jsonl")


PLOTS = Path("results/leaderboard/plots")


MODEL_INFO = Path("results/leaderboard/model_info")


#: the compact copy of the suite's certifications (``[[certify]]``), one JSON object per line
CERTIFIED = Path("results/leaderboard/certified.jsonl")


#: why the committed leaderboard is incomplete, when it is (a test requires it then, and only then)
PENDING = Path("results/leaderboard/PENDING")


def compact(record: Record) -> Record:
    """What the leaderboard keeps of a record: enough to render every table and plot and to say how and
    where each number was produced (the per-epoch history and per-sample table stay in the store)."""
    flags = record.flags or {}
    return Record(
        cell_id=record.cell_id,
        train_id=record.train_id,
        status=record.status,
        spec=record.spec,
        metrics=record.metrics,
        n_samples=record.n_samples,
        n_attacked=record.n_attacked,
        perturbation=record.perturbation or {},
        flags={
            "checked": flags.get("checked", False),
            "raised": flags.get("raised", []),
            "store": [f["flag"] for f in flags.get("store", [])],
        },
        timings=record.timings,
        env={k: (record.env or {}).get(k) for k in ("afsl_bench", "git_sha", "torch", "device", "device_name")},
        created=record.created,
        extra={
            "test_of": (record.data or {}).get("test_samples_of"),
            "training_s": (record.timings or {}).get("train_s"),
        },
    )


def collect(
    suite: Suite, results_dir: Path | str, partial: bool = False, kept: Iterable[Record] = ()
) -> list[Record]:
    """The compact records of every cell of the suite: from the store, else from ``kept`` (the committed
    export, so a leaderboard finished over several sessions keeps what earlier ones ran); a record of a cell
    the suite no longer plans is dropped. A missing cell is an error unless ``partial``."""
    store = RecordStore(results_dir)
    earlier = {r.cell_id: r for r in kept}
    found = {}
    for cell in suite.cells:
        record = store.finished(cell.cell_id)
        found[cell.cell_id] = compact(record) if record is not None else earlier.get(cell.cell_id)
    missing = [cell_id for cell_id, record in found.items() if record is None]
    if missing and not partial:
        raise ConfigError(
            f"{len(missing)} of {len(found)} cells of {suite.path} have no finished record in {results_dir}: "
            f"run `afsl-bench sweep {suite.path}` first (or pass --partial to render what there is)"
        )
    return [r for r in found.values() if r is not None]


def collect_certified(
    suite: Suite, results_dir: Path | str, partial: bool = False, kept: Iterable[dict[str, Any]] = ()
) -> list[dict[str, Any]]:
    """The stored certification of each of the suite's ``[[certify]]`` jobs, from the store, else from
    ``kept`` (the committed copy); a missing one is an error unless ``partial``. What the leaderboard keeps
    of each: all but the platform details of its environment."""
    from afsl_bench.runner.certification import stored

    earlier = {r["certify_id"]: r for r in kept}
    found = {job.certify_id: stored(results_dir, job.certify_id) or earlier.get(job.certify_id)
             for job in suite.certifications}  # fmt: skip
    missing = [identity for identity, result in found.items() if result is None]
    if missing and not partial:
        raise ConfigError(
            f"{len(missing)} of {len(found)} certifications of {suite.path} are not stored in {results_dir}: run "
            f"`afsl-bench sweep {suite.path}` first (or pass --partial to render what there is)"
        )
    keep = ("afsl_bench", "git_sha", "torch", "device", "device_name")
    return [r | {"env": {k: r.get("env", {}).get(k) for k in keep}} for r in found.values() if r is not None]


def write_certified(path: Path, results: Iterable[dict[str, Any]]) -> None:
    lines = [json.dumps(r, sort_keys=True) for r in sorted(results, key=lambda r: r["certify_id"])]
    atomic_write_text(path, "".join(f"{line}\n" for line in lines))


def read_certified(path: Path) -> list[dict[str, Any]]:
    """The committed certifications (none when the file does not exist: a suite without ``[[certify]]``)."""
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def missing_cells(suite: Suite, records: Iterable[Record]) -> list[Any]:
    """The suite's cells that have no record."""
    held = {r.cell_id for r in records}
    return [c for c in suite.cells if c.cell_id not in held]


def pending_note(path: Path) -> str | None:
    """The committed reason why the leaderboard is incomplete (``PENDING`` beside the export), if any."""
    return path.read_text().strip() if path.is_file() else None


def incomplete(missing: list[Any], planned: int, note: str | None) -> str:
    """The banner of a leaderboard whose suite is not fully run: how much is missing, of which models, why."""
    if not missing:
        return ""
    from afsl_bench.runner.describe import labels

    models = sorted({"{detector} + {defense}".format(**labels(c.to_json())) for c in missing})
    shown = "; ".join(models[:12]) + (f"; and {len(models) - 12} more" if len(models) > 12 else "")
    return (
        f"> **Incomplete: {planned - len(missing)} of the {planned} cells of the suite have records; "
        f"{len(missing)} are still to run** (models: {shown}). Every number below comes from the current "
        f"code and protocol; the missing cells are simply absent. Why: {note or 'not stated'}"
    )


def write_export(path: Path, records: Iterable[Record]) -> None:
    lines = [json.dumps(r.to_json(), sort_keys=True) for r in sorted(records, key=lambda r: r.cell_id)]
    atomic_write_text(path, "\n".join(lines) + "\n")


def read_export(path: Path) -> list[Record]:
    if not path.is_file():
        raise ConfigError(f"'{path}' does not exist: run `afsl-bench leaderboard` to write it")
    return [Record.from_json(json.loads(line)) for line in path.read_text().splitlines() if line.strip()]
