"""RobustBench-style ``model_info`` entries (Croce et al., NeurIPS 2021 Datasets and Benchmarks,
https://arxiv.org/abs/2010.09670): one JSON file per model, written without importing robustbench (its PyPI
release cannot be imported). ``autoattack_acc`` is ``autoattack-binary``'s robust accuracy: the binary-safe
ensemble (docs/attacks.md).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from afsl_bench.core.io import atomic_write_text
from afsl_bench.report.leaderboard.sections import RANKING
from afsl_bench.report.tables import tidy
from afsl_bench.runner.describe import eps_label
from afsl_bench.store.record import Record


def model_info(records: list[Record]) -> dict[Path, dict[str, Any]]:
    """One RobustBench ``model_info`` entry per (detector, defense, train set, eval set) with a ranking
    record, mean over seeds; keyed by its relative path ``<eval set>/Linf/<name>.json``."""
    frame = tidy(records)
    rows = frame[(frame["attack_name"] == RANKING) & (frame["norm"] == "linf")]
    out = {}
    for (detector, defense, train_data, eval_data, eps), part in rows.groupby(
        ["detector", "defense", "train_data", "eval_data", "eps"]
    ):
        name = f"{detector}-{defense}-{train_data}".replace(" ", "").replace("(", "_").replace(")", "")
        name = name.replace(",", "_").replace("=", "-")
        out[Path(eval_data) / "Linf" / f"{name}.json"] = {
            "link": "",
            "name": f"{detector} + {defense} (afsl-bench)",
            "authors": "afsl-bench",
            "additional_data": False,
            "number_forward_passes": 1,
            "dataset": eval_data,
            "venue": "afsl-bench leaderboard",
            "architecture": detector,
            "eps": eps_label(eps, "linf"),
            "clean_acc": f"{100 * part['clean_acc'].mean():.2f}",
            "reported": "",
            "autoattack_acc": f"{100 * part['robust_acc'].mean():.2f}",
            "footnote": (
                f"Trained on {train_data}; mean of {part['seed'].nunique()} seeds. autoattack_acc is "
                "afsl-bench's binary-safe ensemble (APGD-CE, APGD-margin, Square), not AutoAttack's standard "
                "version, whose DLR and targeted members need three or more classes."
            ),
            "unreliable": False,
        } | _deployment(part)
    return out


def _deployment(part: Any) -> dict[str, str]:
    """The fakes caught at 1 % false positives (threshold fixed on clean validation reals, core/operating.py),
    clean and under the ranking attack, where every record carries them (older records lack them)."""
    keys = {"clean_tpr_at_1fpr": "clean_tpr_at_fpr1", "autoattack_tpr_at_1fpr": "robust_tpr_at_fpr1"}
    if any(column not in part or part[column].isna().any() for column in keys.values()):
        return {}
    return {name: f"{100 * part[column].mean():.2f}" for name, column in keys.items()}


def write_model_info(root: Path, entries: dict[Path, dict[str, Any]]) -> list[Path]:
    """Write the entries and remove every other entry under ``root``: a model the records no longer hold
    must not stay listed."""
    for old in root.rglob("*.json") if root.is_dir() else []:
        if old.relative_to(root) not in entries:
            old.unlink()
    written = []
    for relative, entry in sorted(entries.items()):
        path = root / relative
        atomic_write_text(path, json.dumps(entry, indent=2) + "\n")
        written.append(path)
    return written
