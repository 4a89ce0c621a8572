"""The CI regression gate: run (or read) a small deterministic suite and compare its metrics with a
committed baseline; a drop beyond the tolerance fails, naming the cell and the metric.

``results/baseline.json``::

    {"suite": "suites/ci.toml", "tolerance": 0.02, "metrics": ["robust_acc", "clean_acc"],
     "cells": {"<cell_id>": {"what": "tiny-cnn + at vs pgd ...", "robust_acc": 0.41, "clean_acc": 0.9}}}

A baseline cell the suite no longer produces (its spec, hence its id, changed) fails too: results of a
changed experiment are not comparable, so the baseline is rewritten deliberately with ``--update``. A cell
whose detector did not learn (clean AUC below ``records.NOT_LEARNED_AUC``) fails the gate, and ``--update``
refuses to write a baseline with one: its robust numbers are noise, and a gate on noise guards nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from afsl_bench.core.errors import ConfigError
from afsl_bench.core.io import atomic_write_text
from afsl_bench.runner.cell import RunOptions
from afsl_bench.runner.sweep import Suite, describe, load_suite, run_sweep
from afsl_bench.store.disk import RecordStore
from afsl_bench.store.record import learning

METRICS = ("robust_acc", "clean_acc")
TOLERANCE = 0.02


@dataclass
class GateResult:
    rows: list[dict[str, Any]] = field(default_factory=list)

    @property
    def failures(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if not r["ok"]]


def read_baseline(path: Path | str) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"baseline '{path}' does not exist; create it with: afsl-bench gate --update")
    try:
        baseline = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ConfigError(f"baseline '{path}' is not valid JSON: {err}") from None
    for key in ("suite", "cells"):
        if key not in baseline:
            raise ConfigError(f"baseline '{path}' has no '{key}'; rewrite it with: afsl-bench gate --update")
    return baseline


def current_metrics(suite: Suite, options: RunOptions) -> dict[str, dict[str, Any]]:
    """Run the suite's unfinished cells, then read every cell's metrics from the store."""
    outcome = run_sweep(suite, options)
    if outcome.failed:
        raise ConfigError(f"{len(outcome.failed)} cell(s) of {suite.path} failed; see their records")
    store = RecordStore(options.results_dir)
    return {
        cell.cell_id: {"what": describe(cell), **store.finished(cell.cell_id).metrics}
        for cell in suite.cells
    }


def compare(baseline: dict[str, Any], current: dict[str, dict[str, Any]], tolerance: float) -> GateResult:
    metrics = baseline.get("metrics", list(METRICS))
    result = GateResult()
    for cell_id, expected in sorted(baseline["cells"].items()):
        got = current.get(cell_id)
        for metric in metrics:
            row = {"cell": cell_id, "metric": metric, "baseline": expected.get(metric)}
            if got is None:
                why = "not produced by the suite any more (its spec changed): --update deliberately"
                result.rows.append(
                    row | {"what": expected.get("what", ""), "current": None, "ok": False, "why": why}
                )
                continue
            row |= {"what": got["what"], "current": got[metric]}
            drop = expected[metric] - got[metric]
            if (flag := learning(got))["raised"]:
                why = f"did not learn: clean AUC {flag['clean_auc']:.3f} < {flag['threshold']}"
            else:
                why = f"dropped by {drop:.4f} > {tolerance}" if drop > tolerance else ""
            result.rows.append(row | {"ok": not why, "why": why})
    for cell_id in sorted(set(current) - set(baseline["cells"])):
        result.rows.append(
            {
                "cell": cell_id,
                "what": current[cell_id]["what"],
                "metric": "-",
                "baseline": None,
                "current": None,
                "ok": True,
                "why": "new cell, not in the baseline (--update adds it)",
            }
        )
    return result


def write_baseline(
    path: Path | str, suite: Suite, current: dict[str, dict[str, Any]], tolerance: float
) -> None:
    unlearned = {cell_id: learning(values) for cell_id, values in current.items()}
    unlearned = {cell_id: flag for cell_id, flag in unlearned.items() if flag["raised"]}
    if unlearned:
        named = "; ".join(
            f"{current[c]['what']} ({c}): clean AUC {f['clean_auc']:.3f}"
            for c, f in sorted(unlearned.items())
        )
        raise ConfigError(
            f"refusing to write a baseline on {len(unlearned)} cell(s) whose detector did not learn (clean AUC "
            f"< {next(iter(unlearned.values()))['threshold']}): {named}; train longer or fix the data, then --update"
        )
    baseline = {
        "suite": str(suite.path),
        "tolerance": tolerance,
        "metrics": list(METRICS),
        "cells": {
            cell_id: {"what": values["what"], **{m: values[m] for m in METRICS}}
            for cell_id, values in sorted(current.items())
        },
    }
    atomic_write_text(Path(path), json.dumps(baseline, indent=2, sort_keys=True) + "\n")


def suite_of(baseline: dict[str, Any] | None, suite: Path | None) -> Suite:
    if suite is not None:
        return load_suite(suite)
    if baseline is None:
        raise ConfigError("--update without a baseline file needs --suite (e.g. --suite suites/ci.toml)")
    return load_suite(baseline["suite"])
