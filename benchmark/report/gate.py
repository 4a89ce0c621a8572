"""The CI regression gate: run a small deterministic suite and compare its metrics with a committed
baseline; a change beyond the tolerance fails, naming the cell and the metric, in either direction.

A drop is a regression of the model or the data; a rise is as bad for a benchmark: robust accuracy going up
means the attack may have become weaker, which makes every defense look better. Either is accepted only by
rewriting the baseline deliberately (``--update``). The suite is evaluated afresh every time (the CLI runs
it in a new temporary store unless given one, and recomputes every cell of a store it is given), so a code
change is always measured, never read back from a record the old code wrote; the gradient-masking probes
run too, and a flag the baseline's cell did not raise fails.

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
import math
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


def check_tolerance(value: Any, where: str) -> float:
    """A tolerance is a finite number >= 0 (NaN would pass every comparison, a negative one fail all)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise ConfigError(f"{where}: the tolerance must be a finite number >= 0 (e.g. 0.02), got {value!r}")
    return float(value)


def check_baseline_values(baseline: dict[str, Any], path: Path) -> None:
    """Every metric of every baseline cell is a number in [0, 1]: a NaN or a string would compare as
    'within tolerance' or crash mid-gate."""
    for cell_id, values in baseline["cells"].items():
        for metric in baseline.get("metrics", list(METRICS)):
            value = values.get(metric) if isinstance(values, dict) else None
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
                raise ConfigError(
                    f"baseline '{path}': cell {cell_id} has {metric}={value!r}, not a fraction in [0, 1]; "
                    "restore the committed file or rewrite it with: afsl-bench gate --update"
                )


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
    if "tolerance" in baseline:
        check_tolerance(baseline["tolerance"], f"baseline '{path}'")
    check_baseline_values(baseline, path)
    return baseline


def current_metrics(suite: Suite, options: RunOptions) -> dict[str, dict[str, Any]]:
    """Run every cell of the suite (``options.force``: also those the store holds), then read each cell's
    metrics and raised flags from the store."""
    outcome = run_sweep(suite, options)
    if outcome.failed:
        raise ConfigError(f"{len(outcome.failed)} cell(s) of {suite.path} failed; see their records")
    store = RecordStore(options.results_dir)
    current = {}
    for cell in suite.cells:
        record = store.finished(cell.cell_id)
        flags = record.flags or {}
        raised = sorted({*flags.get("raised", []), *(f["flag"] for f in flags.get("store", []))})
        current[cell.cell_id] = {"what": describe(cell), **record.metrics, "flags": raised}
    return current


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
            if (flag := learning(got))["raised"]:
                why = f"did not learn: clean AUC {flag['clean_auc']:.3f} < {flag['threshold']}"
            else:
                why = change(metric, got[metric] - expected[metric], tolerance)
            result.rows.append(row | {"ok": not why, "why": why})
        if got is not None:
            result.rows.append(flags_row(cell_id, expected, got))
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


def change(metric: str, delta: float, tolerance: float) -> str:
    """Why a metric's change fails the gate ('' when within the tolerance): a drop, or a rise, which for
    robust accuracy most often means a weaker attack."""
    if not math.isfinite(delta):
        return f"is not a number now ({delta})"
    if delta < -tolerance:
        return f"dropped by {-delta:.4f} > {tolerance}"
    if delta > tolerance:
        cause = "the attack may have become weaker" if metric.startswith("robust") else "the model changed"
        return (
            f"rose by {delta:.4f} > {tolerance}: {cause}; if the defense really improved, update the baseline "
            "deliberately (afsl-bench gate --update)"
        )
    return ""


def flags_row(cell_id: str, expected: dict[str, Any], got: dict[str, Any]) -> dict[str, Any]:
    """The gradient-masking flags of a cell: a flag the baseline's cell did not raise fails (its robust
    numbers may be optimistic); a baseline written before flags were recorded is only told."""
    row = {"cell": cell_id, "what": got["what"], "metric": "flags", "baseline": None, "current": None}
    known = expected.get("flags")
    if known is None:
        shown = ", ".join(got.get("flags", [])) or "none"
        return row | {
            "ok": True,
            "why": f"raised: {shown} (the baseline records no flags: --update to record them)",
        }
    new = sorted(set(got.get("flags", [])) - set(known))
    why = (
        f"newly raised: {', '.join(new)}; the robust numbers may be optimistic (docs/checks.md)"
        if new
        else ""
    )
    return row | {"ok": not new, "why": why}


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
        "tolerance": check_tolerance(tolerance, "--tolerance"),
        "metrics": list(METRICS),
        "cells": {
            cell_id: {
                "what": values["what"],
                **{m: values[m] for m in METRICS},
                "flags": values.get("flags", []),
            }
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
