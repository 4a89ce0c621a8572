"""Making the standard record of one cell (schema: docs/records.md) from its per-sample table.

Every number in a record is computed here from the per-sample table the evaluation produced, so the
Parquet table beside a record can always reproduce it (worst case over attacks, video-level metrics).
"""

from __future__ import annotations

import math
import time
from typing import Any

import pandas as pd
import torch

from afsl_bench.core.env import environment
from afsl_bench.core.metrics import summarise
from afsl_bench.core.spec import SCHEMA_VERSION, CellSpec, to_jsonable
from afsl_bench.core.types import DataBundle
from afsl_bench.store.disk import STATUS_OK

#: below this clean AUC on the evaluation set a detector is taken to have learned nothing (0.5 is chance;
#: issue 14: on a user's own data training can end at 0.5-0.6): every robust number of the cell is noise
NOT_LEARNED_AUC = 0.6


def learning(metrics: dict[str, Any]) -> dict[str, Any]:
    """The ``not_learned`` flag of a cell from its metrics: raised when the clean AUC is below
    ``NOT_LEARNED_AUC`` (not when the AUC is undefined: a test split of one class)."""
    value = metrics.get("clean_auc")
    known = value is not None and not math.isnan(value)  # NaN: one class only
    return {
        "raised": bool(known and value < NOT_LEARNED_AUC),
        "clean_auc": value if known else None,
        "threshold": NOT_LEARNED_AUC,
    }


def not_learned(record: dict[str, Any]) -> bool:
    """Whether a record's detector did not learn (from its metrics, so older records are judged alike)."""
    return learning(record["metrics"])["raised"]


def make_record(
    spec: CellSpec,
    samples: pd.DataFrame,
    trained: Any,
    bundle: DataBundle,
    device: torch.device,
    timings: dict[str, float],
    resumed_after_epoch: int | None = None,
) -> dict[str, Any]:
    """The standard record of one cell (schema in docs/records.md)."""
    metrics = summarise(samples)
    return {
        "cell_id": spec.cell_id,
        "train_id": spec.training.train_id,
        "schema_version": SCHEMA_VERSION,
        "status": STATUS_OK,
        "spec": spec.to_json(),
        "metrics": metrics,
        "not_learned": learning(metrics),
        "per_method": per_method(samples),
        "n_samples": len(samples),
        "n_attacked": int(samples["attacked"].sum()),
        "n_videos": int(samples["video_id"].nunique()),
        "perturbation": perturbation(samples),
        "after_round_trip": after_round_trip(samples),
        "attack_info": attack_info(samples),
        "training": {
            "cached": bool(trained.cached),
            "best_epoch": trained.best_epoch,
            "history": to_jsonable(trained.history),  # per epoch: losses, val accuracies, seconds
            "val_metrics": to_jsonable(trained.val_metrics),
            "resumed_after_epoch": resumed_after_epoch,
        },
        "data": to_jsonable(bundle.info),
        "flags": {"checked": False},
        "env": environment(device),
        "timings": {k: round(v, 3) for k, v in timings.items()},
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


#: the per-sample table's own columns; any other column was reported by the attack (``AttackOutput.info``)
TABLE_COLUMNS = frozenset(
    {"sample_id", "video_id", "method", "label", "clean_score", "adv_score", "linf", "l2", "ssim", "psnr",
     "attacked"}
)  # fmt: skip
ROUND_TRIP_PREFIX = "adv_score_after_"


def perturbation(samples: pd.DataFrame) -> dict[str, float | None]:
    """Sizes of the perturbations of attacked samples; the L2 a minimum-norm attack (C&W) needed is the
    median over the samples it broke."""
    attacked = samples[samples["attacked"]]
    broken = attacked[(attacked["clean_score"] > 0) == attacked["label"].astype(bool)]
    broken = broken[(broken["adv_score"] > 0) != broken["label"].astype(bool)]
    return {
        "linf_max": float(samples["linf"].max()),
        "l2_mean": float(attacked["l2"].mean()) if len(attacked) else 0.0,
        "l2_median_broken": float(broken["l2"].median()) if len(broken) else None,
        "linf_median_broken": float(broken["linf"].median()) if len(broken) else None,
        **perceptual_summary(attacked),
    }


def perceptual_summary(attacked: pd.DataFrame) -> dict[str, float | int | None]:
    """SSIM and PSNR (dB) of the attacked samples the attack changed (an unchanged image has PSNR inf):
    mean and median, and how many samples they summarise. Tables written before 2026-12-01 have no such
    columns: the keys are then absent."""
    if "ssim" not in attacked.columns:
        return {}
    changed = attacked[(attacked["linf"] > 0) & attacked["ssim"].notna()]

    def stat(column: str, how: str) -> float | None:
        return float(getattr(changed[column], how)()) if len(changed) else None

    return {
        "ssim_mean": stat("ssim", "mean"),
        "ssim_median": stat("ssim", "median"),
        "psnr_mean": stat("psnr", "mean"),
        "psnr_median": stat("psnr", "median"),
        "perceptual_n": len(changed),
    }


def after_round_trip(samples: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Metrics with the adversarial scores after a codec round trip (columns ``adv_score_after_<name>``,
    reported by EOT attacks): does the perturbation survive compression?"""
    return {
        column.removeprefix(ROUND_TRIP_PREFIX): summarise(samples.assign(adv_score=samples[column]))
        for column in samples.columns
        if column.startswith(ROUND_TRIP_PREFIX)
    }


def attack_info(samples: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Summary of the per-sample columns an attack reported: mean, median, max over the attacked samples,
    and counts for small integer codes (``broken_by``: the ensemble member that broke a sample)."""
    out: dict[str, dict[str, Any]] = {}
    for column in samples.columns:
        if column in TABLE_COLUMNS or column.startswith(ROUND_TRIP_PREFIX):
            continue
        values = samples.loc[samples["attacked"], column].astype(float)
        known = values.dropna()
        summary: dict[str, Any] = {"n": len(known)}
        if len(known):
            summary |= {
                "mean": float(known.mean()),
                "median": float(known.median()),
                "max": float(known.max()),
            }
            if (known == known.round()).all() and known.nunique() <= 10:
                summary["counts"] = {
                    str(int(k)): int(v) for k, v in known.value_counts().sort_index().items()
                }
        out[column] = summary
    return out


def per_method(samples: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Clean and robust accuracy per manipulation method ('real' included)."""
    correct_clean = (samples["clean_score"] > 0).astype(int) == samples["label"]
    correct_adv = (samples["adv_score"] > 0).astype(int) == samples["label"]
    table = pd.DataFrame({"method": samples["method"], "clean_acc": correct_clean, "robust_acc": correct_adv})
    grouped = table.groupby("method")[["clean_acc", "robust_acc"]].mean()
    return {
        m: {k: float(v) for k, v in row.items()} | {"n": int((samples["method"] == m).sum())}
        for m, row in grouped.iterrows()
    }
