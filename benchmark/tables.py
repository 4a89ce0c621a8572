"""Tables from the record store: one tidy row per finished cell, pivoted (defense x attack per detector and
data sets by default), mean over seeds with the spread and the count.

Everything is computed from the stored records; nothing is re-run. ``afsl-bench table`` prints these as a
rich table, CSV or Markdown.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path
from typing import Any

import pandas as pd

from afsl_bench.core.errors import ConfigError
from afsl_bench.core.registry import did_you_mean
from afsl_bench.core.spec import to_jsonable
from afsl_bench.plan import DEFAULT_RULE, LEGACY_RULE, THRESHOLD
from afsl_bench.records import not_learned
from afsl_bench.store import STATUS_OK, RecordStore

#: the tidy columns a table can be pivoted on
DIMENSIONS = ("detector", "defense", "attack", "train_data", "eval_data", "seed")
#: the transfer matrix's axes: the model the attack was crafted on, and the attacked model (detector + defense)
TRANSFER = ("surrogate", "target")
#: the dimensions a transfer axis stands for (a transfer table is not split by them)
IMPLIED = {"target": ("detector", "defense"), "surrogate": ("attack",)}
#: other non-metric columns of the tidy frame
EXTRA = (
    *TRANSFER,
    "detector_name",
    "defense_name",
    "defense_params",
    "attack_name",
    "eps",
    "norm",
    "train",
    "cell_id",
    "not_learned",
)
#: appended to a table cell when one of its records' detectors did not learn (records.learning)
NOT_LEARNED_MARK = " [not learned]"


def eps_label(eps: Any, norm: str) -> str:
    """8/255 for L-inf budgets that are multiples of 1/255 (the field's convention), else the number."""
    if not isinstance(eps, float):
        return ""
    if norm == "linf":
        k = Fraction(eps * 255).limit_denominator(8)
        if abs(float(k) - eps * 255) < 1e-6:
            return f"{float(k):g}/255"
    return f"{eps:.3g}"


#: parameters a label never shows: the budget has its own notation. A detector's head is shown when it is not
#: the default (linear): any defense trains any head, so "tiny-cnn (head=cosine)" is another model
HIDDEN = {"attack": {"eps", "norm", "severity"}, "detector": set()}


def changed(registry: Any, component: dict[str, Any], hidden: set[str] = frozenset()) -> str:
    """' (k=v, ...)' for the parameters that differ from the registered defaults, else ''."""
    if component["name"] not in registry:
        return ""
    defaults = registry.params_of(component["name"])
    diff = [
        f"{k}={_show(v)}"
        for k, v in sorted(component["params"].items())
        if k not in hidden and k in defaults and to_jsonable(defaults[k].default) != v
    ]
    return f" ({', '.join(diff)})" if diff else ""


def _show(value: Any) -> str:
    return ",".join(map(str, value)) if isinstance(value, list) else str(value)


def attack_label(spec: dict[str, Any]) -> str:
    from afsl_bench.attacks import ATTACKS

    params = spec["attack"]["params"]
    name = spec["attack"]["name"]
    budget = eps_label(params.get("eps"), str(params.get("norm", "linf")))
    if budget and params.get("norm", "linf") != "linf":
        budget += f" {params['norm']}"
    if not budget and "severity" in params:
        budget = f"s{params['severity']}"
    extra = changed(ATTACKS, spec["attack"], HIDDEN["attack"])
    return f"{name} {budget}{extra}".strip() if budget else f"{name}{extra}"


def labels(spec: dict[str, Any]) -> dict[str, str]:
    """The table dimensions of one record, each with the parameters that differ from the defaults."""
    from afsl_bench.data import DATASETS
    from afsl_bench.defenses import DEFENSES
    from afsl_bench.detectors import DETECTORS

    return {
        "detector": spec["detector"]["name"] + changed(DETECTORS, spec["detector"], HIDDEN["detector"]),
        "defense": spec["defense"]["name"] + changed(DEFENSES, spec["defense"]),
        "attack": attack_label(spec),
        "train_data": spec["train_data"]["name"] + changed(DATASETS, spec["train_data"]),
        "eval_data": spec["eval_data"]["name"] + changed(DATASETS, spec["eval_data"]) + _rule(spec),
    }


def describe_spec(spec: dict[str, Any]) -> str:
    """'tiny-cnn + at (train: epochs=4) vs pgd 8/255, synthetic -> synthetic, seed 0': a cell on one line."""
    shown = labels(spec)
    return (
        f"{shown['detector']} + {shown['defense']}{train_label(spec)} vs {shown['attack']}, "
        f"{shown['train_data']} -> {shown['eval_data']}, seed {spec['seed']}"
    )


def train_label(spec: dict[str, Any]) -> str:
    """' (train: epochs=4, lr=0.001)' for training settings that differ from the defaults, else ''."""
    import dataclasses

    from afsl_bench.defenses.training import TrainSettings

    defaults = {f.name: to_jsonable(f.default) for f in dataclasses.fields(TrainSettings)}
    params = spec.get("train", {}).get("params", {})
    diff = [f"{k}={_show(v)}" for k, v in sorted(params.items()) if k in defaults and defaults[k] != v]
    return f" (train: {', '.join(diff)})" if diff else ""


def _rule(spec: dict[str, Any]) -> str:
    """' (threshold=eer)' for a cell evaluated at another decision rule than the default (margin)."""
    rule = spec["eval_data"]["params"].get(THRESHOLD, LEGACY_RULE.value)
    return "" if rule == DEFAULT_RULE.value else f" (threshold={rule})"


def surrogate_label(spec: dict[str, Any]) -> str | None:
    """'detector + defense' of a transfer attack's surrogate (with its data set and seed when they differ from
    the target's), else None."""
    params = spec["attack"]["params"]
    if "surrogate_detector" not in params:
        return None
    label = f"{params['surrogate_detector']} + {params['surrogate_defense']}"
    if params.get("surrogate_data"):
        label += f" on {params['surrogate_data']}"
    if params.get("surrogate_seed") is not None:
        label += f" seed {params['surrogate_seed']}"
    return label


def tidy(records: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """One row per finished (ok) record: its dimensions, every metric, and the cell id."""
    rows = []
    for r in records:
        if r.get("status") != STATUS_OK:
            continue
        spec = r["spec"]
        params = spec["attack"]["params"]
        shown = labels(spec)
        rows.append(
            {
                **shown,
                "surrogate": surrogate_label(spec),
                "target": f"{shown['detector']} + {shown['defense']}",
                "detector_name": spec["detector"]["name"],
                "defense_name": spec["defense"]["name"],
                "defense_params": json.dumps(spec["defense"]["params"], sort_keys=True),
                "attack_name": spec["attack"]["name"],
                "eps": params.get("eps") if isinstance(params.get("eps"), float) else None,
                "norm": params.get("norm"),
                "seed": spec["seed"],
                "train": json.dumps(spec["train"]["params"], sort_keys=True),
                **r["metrics"],
                "cell_id": r["cell_id"],
                "not_learned": not_learned(r),
            }
        )
    return pd.DataFrame(rows)


def load(results_dir: Path | str) -> pd.DataFrame:
    store = RecordStore(results_dir)
    frame = tidy(store)
    if frame.empty:
        raise ConfigError(f"no finished records under {store.records}: run a cell or a sweep first")
    return frame


def pivot(
    frame: pd.DataFrame, metric: str = "robust_acc", rows: str = "defense", columns: str = "attack"
) -> list[tuple[dict[str, Any], pd.DataFrame]]:
    """One table per combination of the other dimensions (seed aside): ({dimension: value}, rows x columns
    of 'mean ± std (n=seeds)' in %). ``--rows surrogate --columns target`` is the transfer matrix: transfer
    records only, one table per budget and data sets."""
    metrics = [c for c in frame.columns if c not in (*DIMENSIONS, *EXTRA)]
    if metric not in metrics:
        raise ConfigError(
            f"unknown metric '{metric}'.{did_you_mean(metric, metrics)} Valid: {', '.join(metrics)}"
        )
    valid = [d for d in (*DIMENSIONS, *TRANSFER) if d != "seed"]
    for name, value in (("rows", rows), ("columns", columns)):
        if value not in valid:
            raise ConfigError(f"--{name} {value}: choose one of {', '.join(valid)}")
    implied = {d for axis in (rows, columns) for d in IMPLIED.get(axis, ())}
    groups = [d for d in DIMENSIONS if d not in (rows, columns, "seed", *implied)]
    if "surrogate" in (rows, columns):
        frame = frame[frame["surrogate"].notna()]
        if frame.empty:
            raise ConfigError("no transfer records: the transfer matrix needs cells of the 'transfer' attack")
        frame = frame.assign(budget=[eps_label(e, "linf") for e in frame["eps"]])
        groups.append("budget")
    clash = frame[frame.duplicated([*groups, rows, columns, "seed"], keep=False)]
    if len(clash):
        raise ConfigError(
            "records that differ only in settings the table does not show (training settings; in a transfer "
            "matrix, the inner attack's parameters) would be averaged together "
            f"(cells {', '.join(clash['cell_id'][:4])}); keep such runs in separate --results-dir folders"
        )
    tables = []
    for key, part in frame.groupby(groups, sort=True):
        stats = part.groupby([rows, columns]).agg(
            mean=(metric, "mean"),
            std=(metric, "std"),
            count=(metric, "count"),
            unlearned=("not_learned", "any"),
        )
        cells = stats.apply(
            lambda s: (
                _cell(s["mean"], s["std"], int(s["count"])) + (NOT_LEARNED_MARK if s["unlearned"] else "")
            ),
            axis=1,
        )
        tables.append((dict(zip(groups, key, strict=True)), cells.unstack(columns).fillna("-")))
    return tables


def _cell(mean: float, std: float, n: int) -> str:
    if n == 1:
        return f"{100 * mean:.1f}"
    return f"{100 * mean:.1f} ± {100 * std:.1f} (n={n})"


def to_markdown(table: pd.DataFrame) -> str:
    header = [table.index.name or "", *map(str, table.columns)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join([str(i), *map(str, row)]) + " |" for i, row in zip(table.index, table.values)]
    return "\n".join(lines)
