"""Tables from the record store: one tidy row per finished cell, pivoted (defense x attack per detector and
data sets by default), mean over seeds with the spread and the count.

Everything is computed from the stored records; nothing is re-run. ``afsl-bench table`` prints these as a
rich table, CSV or Markdown.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from afsl_bench.core.errors import ConfigError
from afsl_bench.core.registry import did_you_mean
from afsl_bench.runner.describe import eps_label, row
from afsl_bench.store.disk import RecordStore
from afsl_bench.store.record import Record

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
    "settings",
    "median_norm",
    "cell_id",
    "not_learned",
)
#: appended to a table cell when one of its records' detectors did not learn (records.learning)
NOT_LEARNED_MARK = " [not learned]"


def tidy(records: Iterable[Record]) -> pd.DataFrame:
    """One row per finished (ok) record: its dimensions, every metric, a minimum-norm attack's median
    perturbation, and the cell id."""
    finished = [r for r in records if r.ok]
    return pd.DataFrame([row(r) | {"median_norm": median_norm(r)} for r in finished])


def load(results_dir: Path | str) -> pd.DataFrame:
    store = RecordStore(results_dir)
    frame = tidy(store)
    if frame.empty:
        raise ConfigError(f"no finished records under {store.records}: run a cell or a sweep first")
    return frame


def with_settings(frame: pd.DataFrame, column: str) -> pd.DataFrame:
    """``column``'s labels with each record's settings (``runner.describe.settings_label``) appended when
    the records' settings differ, so that no table or plot averages runs of other settings together."""
    if "settings" not in frame or frame["settings"].nunique() < 2:
        return frame
    labels = [f"{v} ({s})" if s else v for v, s in zip(frame[column], frame["settings"], strict=True)]
    return frame.assign(**{column: labels})


def select(
    frame: pd.DataFrame, *, attack: str | None = None, eps: str | None = None, detector: str | None = None
) -> pd.DataFrame:
    """The rows of one attack (its registered name or its label), budget (``8/255`` or a float) and
    detector (name or label); a filter that matches nothing names what there is."""
    from afsl_bench.core.params import parse_number

    wanted = frame
    for column, names, value in (
        ("attack", "attack_name", attack),
        ("detector", "detector_name", detector),
    ):
        if value is not None:
            wanted = wanted[(wanted[column] == value) | (wanted[names] == value)]
            if wanted.empty:
                there = sorted(set(frame[names]) | set(frame[column]))
                raise ConfigError(f"--{column} {value}: no record has it.{did_you_mean(value, there)} "
                                  f"Stored: {', '.join(there)}")  # fmt: skip
    if eps is not None:
        try:
            budget = parse_number(eps)
        except ValueError as error:
            raise ConfigError(f"--eps {error}") from None
        wanted = wanted[(wanted["eps"] - budget).abs() < 1e-9]
        if wanted.empty:
            there = sorted({eps_label(e, "linf") for e in frame["eps"].dropna()})
            raise ConfigError(f"--eps {eps}: no record at that budget. Stored: {', '.join(there) or 'none'}")
    return wanted


def median_norm(record: Record) -> float | None:
    """A minimum-norm attack's (C&W, FAB without a budget) median perturbation over the samples it broke
    (correct on clean input, wrong under attack: the record's ``perturbation``), in its norm: its robust
    accuracy alone says little (it breaks nearly everything), the size of what it needed is the result.
    None for a bounded attack, or when it broke nothing."""
    params = record.spec["attack"]["params"]
    if "eps" not in params or params["eps"] is not None:
        return None
    key = "l2_median_broken" if params.get("norm", "l2") == "l2" else "linf_median_broken"
    return (record.perturbation or {}).get(key)


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
    labelled = "settings" in frame and frame["settings"].nunique() > 1
    frame = with_settings(frame, rows)  # never average other settings together: each row says its own
    clash = frame[frame.duplicated([*groups, rows, columns, "seed"], keep=False)]
    if len(clash):
        raise ConfigError(
            "records that differ only in settings the table does not show (training settings; in a transfer "
            "matrix, the inner attack's parameters) would be averaged together "
            f"(cells {', '.join(clash['cell_id'][:4])}); keep such runs in separate --results-dir folders"
        )
    tables = []
    for key, part in frame.groupby(groups, sort=True):
        if "median_norm" not in part:
            part = part.assign(median_norm=None)
        stats = part.groupby([rows, columns]).agg(
            mean=(metric, "mean"),
            std=(metric, "std"),
            count=(metric, "count"),
            unlearned=("not_learned", "any"),
            norm=("median_norm", "median"),
            norm_name=("norm", "first"),
        )
        cells = stats.apply(
            lambda s: (
                _cell(s["mean"], s["std"], int(s["count"]))
                + _norm(s["norm"], s["norm_name"])
                + (NOT_LEARNED_MARK if s["unlearned"] else "")
            ),
            axis=1,
        )
        where = dict(zip(groups, key, strict=True)) | (
            {"settings": "differ, shown per row"} if labelled else {}
        )
        tables.append((where, cells.unstack(columns).fillna("-")))
    return tables


def _norm(value: float | None, norm: str | None) -> str:
    """' (median L2 0.412)' after a minimum-norm attack's accuracy; L-inf in k/255."""
    if value is None or pd.isna(value):
        return ""
    return f" (median L-inf {255 * value:.1f}/255)" if norm == "linf" else f" (median L2 {value:.3f})"


def _cell(mean: float, std: float, n: int) -> str:
    if n == 1:
        return f"{100 * mean:.1f}"
    return f"{100 * mean:.1f} ± {100 * std:.1f} (n={n})"


def to_markdown(table: pd.DataFrame) -> str:
    header = [table.index.name or "", *map(str, table.columns)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join([str(i), *map(str, row)]) + " |" for i, row in zip(table.index, table.values)]
    return "\n".join(lines)
