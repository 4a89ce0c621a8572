"""The tuning budget: each defense's loss weights chosen on VALIDATION data only (``afsl-bench tune``).

A tuning suite (``suites/tuning.toml``) trains every candidate once; training ends by attacking the kept
model on a fixed validation subset with APGD-CE (``TrainSettings.robust_val_*``) and stores that accuracy in
the record as ``training.val_metrics.val_robust_acc``. ``choose`` reads only those validation numbers, never a
test metric of the record:

1. per detector (its head included) and defense, the candidate with the highest validation robust accuracy
   (at the model's own rule, margin > 0) wins; ties go to the higher clean validation accuracy (at the
   threshold calibrated on validation), then to the defense's default parameters (the paper's), then to the
   alphabetical order of the labels;
2. per detector name, the head whose chosen defenses score the highest mean validation robust accuracy is the
   head every defense is compared on (the leaderboard's rule: one head for all defenses); a tie goes to the
   linear head, the simpler one.

``write`` stores the choice with every candidate's numbers in ``<results>/tuning/<suite>.json``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from afsl_bench.core.errors import ConfigError
from afsl_bench.core.io import atomic_write_text
from afsl_bench.runner.describe import changed
from afsl_bench.runner.sweep import Suite
from afsl_bench.store.disk import RecordStore
from afsl_bench.store.record import Record

ROBUST = "val_robust_acc"
CLEAN = "val_clean_acc"


@dataclass(frozen=True)
class Candidate:
    """One trained candidate: its detector and defense (name + parameters) and its validation numbers."""

    detector: str
    head: str
    defense: str
    params: str  # the defense's parameters that differ from its defaults, e.g. "beta=1.0" ('' for none)
    val_robust_acc: float
    val_clean_acc: float
    order: int  # position in the suite's run order (tables list candidates in it)
    train_id: str

    @property
    def label(self) -> str:
        return f"{self.defense} ({self.params})" if self.params else self.defense

    def rank(self) -> tuple[float, float, bool, str]:
        """Sorts the best candidate first (module doc)."""
        return (-self.val_robust_acc, -self.val_clean_acc, self.params != "", self.label)


def candidates(suite: Suite, results_dir: Path | str) -> list[Candidate]:
    """Every distinct trained model of the suite with its validation numbers; a model none of whose cells has
    a finished record is an error."""
    store = RecordStore(results_dir)
    first: dict[str, tuple[int, Any]] = {}  # train_id -> (order, cell) of the model's first cell
    record: dict[str, Record | None] = {}
    for order, cell in enumerate(suite.cells):  # a model counts once any of its cells has a record
        train_id = cell.training.train_id
        first.setdefault(train_id, (order, cell))
        record[train_id] = record.get(train_id) or store.finished(cell.cell_id)
    missing = [train_id for train_id, found in record.items() if found is None]
    if missing:
        raise ConfigError(
            f"{len(missing)} trained models of {suite.path} have no finished record in {results_dir}: run "
            f"`afsl-bench sweep {suite.path}` first"
        )
    return [_candidate(order, cell, record[train_id]) for train_id, (order, cell) in first.items()]


def _candidate(order: int, cell: Any, record: Record) -> Candidate:
    from afsl_bench.defenses import DEFENSES

    val = (record.training or {}).get("val_metrics", {})
    if ROBUST not in val:
        raise ConfigError(
            f"the record of cell {cell.cell_id} has no validation robust accuracy (it was trained with "
            "train.robust_val_samples=0 or by an older version): rerun it with the defaults"
        )
    spec = cell.to_json()
    return Candidate(
        detector=spec["detector"]["name"],
        head=str(spec["detector"]["params"].get("head", "linear")),
        defense=spec["defense"]["name"],
        params=changed(DEFENSES, spec["defense"]).strip(" ()"),
        val_robust_acc=float(val[ROBUST]),
        val_clean_acc=float(val.get(CLEAN, float("nan"))),
        order=order,
        train_id=cell.training.train_id,
    )


def choose(found: list[Candidate]) -> dict[str, Any]:
    """The choice (module doc): per detector, the head and, per defense, the parameters."""
    best: dict[tuple[str, str, str], Candidate] = {}
    for c in sorted(found, key=Candidate.rank):
        best.setdefault((c.detector, c.head, c.defense), c)
    out: dict[str, Any] = {}
    for detector in sorted({c.detector for c in found}):
        heads = {}
        for head in sorted({h for d, h, _ in best if d == detector}):
            chosen = [c for (d, h, _), c in best.items() if d == detector and h == head]
            heads[head] = {
                "mean_val_robust_acc": sum(c.val_robust_acc for c in chosen) / len(chosen),
                "defenses": {c.defense: _entry(c) for c in sorted(chosen, key=lambda c: c.order)},
            }
        head = max(heads, key=lambda h: (heads[h]["mean_val_robust_acc"], h == "linear"))
        out[detector] = {"head": head, "heads": heads}
    return out


def _entry(c: Candidate) -> dict[str, Any]:
    return {"params": c.params, ROBUST: c.val_robust_acc, CLEAN: c.val_clean_acc, "train_id": c.train_id}


def write(path: Path, suite: Suite, found: list[Candidate], choice: dict[str, Any]) -> Path:
    """The choice and every candidate's validation numbers, as JSON (atomic)."""
    payload = {
        "suite": str(suite.path),
        "rule": "per defense: max val_robust_acc, then val_clean_acc, then the default parameters, then the "
        "label; per detector: the head with the highest mean val_robust_acc of its chosen defenses (ties: "
        "linear)",
        "choice": choice,
        "candidates": [
            {"detector": c.detector, "head": c.head, "defense": c.defense, "params": c.params,
             ROBUST: c.val_robust_acc, CLEAN: c.val_clean_acc, "train_id": c.train_id}
            for c in sorted(found, key=lambda c: c.order)
        ],
    }
    atomic_write_text(path, json.dumps(payload, indent=2, sort_keys=True) + "\n")
    return path
