"""The standard record of one cell (schema: docs/records.md): the typed ``Record`` every reader uses, and
``make_record``, the one function that builds a finished cell's record from its per-sample table.

Every number in a record is computed here from the per-sample table the evaluation produced, so the
Parquet table beside a record can always reproduce it (worst case over attacks, video-level metrics).
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import torch

from afsl_bench.core.decision import DecisionRule, says_fake
from afsl_bench.core.env import environment
from afsl_bench.core.metrics import summarise
from afsl_bench.core.spec import SCHEMA_VERSION, CellSpec, EvalSettings, to_jsonable
from afsl_bench.core.types import DataBundle

STATUS_OK = "ok"
STATUS_FAILED = "failed"
#: what every record holds, finished or failed
REQUIRED = ("cell_id", "status", "spec")


@dataclass(frozen=True)
class Record:
    """One cell's record, read and written as the JSON of docs/records.md (``from_json`` / ``to_json`` are
    exact inverses, so every stored and committed record stays valid). The fields are the record's keys;
    a key the record does not have is None (a failed cell has no metrics; older records lack ``runtime``,
    ``decision`` and others), and keys this version does not know are kept in ``extra``."""

    cell_id: str
    status: str
    spec: dict[str, Any]
    train_id: str | None = None
    schema_version: int | None = None
    metrics: dict[str, float] | None = None
    not_learned: dict[str, Any] | None = None
    per_method: dict[str, dict[str, float]] | None = None
    n_samples: int | None = None
    n_reals: int | None = None
    n_fakes: int | None = None
    n_attacked: int | None = None
    n_videos: int | None = None
    perturbation: dict[str, Any] | None = None
    after_round_trip: dict[str, dict[str, float]] | None = None
    attack_info: dict[str, dict[str, Any]] | None = None
    surrogates: list[str] | None = None
    training: dict[str, Any] | None = None
    data: dict[str, Any] | None = None
    flags: dict[str, Any] | None = None
    env: dict[str, Any] | None = None
    timings: dict[str, float] | None = None
    runtime: dict[str, Any] | None = None
    decision: dict[str, Any] | None = None
    operating_points: dict[str, Any] | None = None
    error: dict[str, str] | None = None
    created: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Record:
        """A record from its JSON; ``ValueError`` naming the missing keys when it lacks a required one."""
        missing = [k for k in REQUIRED if k not in data]
        if missing:
            raise ValueError(f"a record without {', '.join(missing)}")
        known = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        return cls(
            **{k: v for k, v in data.items() if k in known},
            extra={k: v for k, v in data.items() if k not in known},
        )

    def to_json(self) -> dict[str, Any]:
        """The record's JSON: its keys that are set, and the unknown ones it was read with."""
        fields = (f.name for f in dataclasses.fields(self) if f.name != "extra")
        return {k: v for k in fields if (v := getattr(self, k)) is not None} | self.extra

    def replace(self, **changes: Any) -> Record:
        return dataclasses.replace(self, **changes)

    @property
    def ok(self) -> bool:
        """A finished cell (only such records are reused and reported)."""
        return self.status == STATUS_OK

    @property
    def evaluation(self) -> EvalSettings:
        """The decision rule and test-sample count the cell was evaluated with."""
        return EvalSettings.split(self.spec["eval_data"]["params"])[0]

    @property
    def rule(self) -> DecisionRule:
        return self.evaluation.threshold

    @property
    def attack_name(self) -> str:
        return self.spec["attack"]["name"]

    def metric(self, name: str) -> float:
        """A metric by name (``robust_acc``, ``clean_auc``, ...); NaN when the record has none."""
        return float((self.metrics or {}).get(name, math.nan))

    def per_class(self, stage: str = "robust") -> dict[str, float]:
        """Accuracy on reals and on fakes, clean or under attack (``stage``); NaN for an absent class or an
        older record."""
        return {cls: self.metric(f"{stage}_acc_{cls}") for cls in ("real", "fake")}

    @property
    def learned(self) -> bool:
        """False when the detector learned nothing on the evaluation set (``learning``)."""
        return not learning(self.metrics or {})["raised"]


#: below this clean AUC on the evaluation set a detector is taken to have learned nothing (0.5 is chance, and
#: training on a small or hard data set can end at 0.5-0.6): every robust number of the cell is then noise
NOT_LEARNED_AUC = 0.6


def learning(metrics: dict[str, Any]) -> dict[str, Any]:
    """The ``not_learned`` flag of a cell from its metrics: raised when the clean AUC is below
    ``NOT_LEARNED_AUC``, or undefined (NaN: a split of one class, which the runner refuses before any work,
    so only an older or hand-made record has one): nothing shows that the detector learned."""
    value = metrics.get("clean_auc")
    known = value is not None and not math.isnan(value)
    return {
        "raised": bool(not known or value < NOT_LEARNED_AUC),
        "clean_auc": value if known else None,
        "threshold": NOT_LEARNED_AUC,
    }


def not_learned(record: Record) -> bool:
    """Whether a record's detector did not learn (from its metrics, so older records are judged alike)."""
    return not record.learned


def make_record(
    spec: CellSpec,
    samples: pd.DataFrame,
    trained: Any,
    bundle: DataBundle,
    device: torch.device,
    timings: dict[str, float],
    *,
    resumed_after_epoch: int | None = None,
    surrogates: list[str] | None = None,
    runtime: dict[str, Any] | None = None,
    flags: dict[str, Any] | None = None,
    weights: dict[str, Any] | None = None,
    operating: tuple[dict[str, float], dict[str, Any]] | None = None,
) -> Record:
    """The standard record of one cell (schema in docs/records.md), complete: ``trained`` is the
    ``TrainResult`` the model came with (its threshold is the one the metrics used), ``surrogates`` the
    training ids of a transfer attack's surrogates, ``runtime`` how the frozen model and the training step
    ran, ``flags`` the probes' flags, ``weights`` where the detector's weights file came from (``source``,
    ``file``, ``sha256``; None when it was built from scratch), ``operating`` the deployment metrics and
    their thresholds (``core.operating``)."""
    deployment, points = operating or ({}, None)
    metrics = summarise(samples) | deployment
    rule = spec.evaluation.threshold
    return Record.from_json({
        "cell_id": spec.cell_id,
        "train_id": spec.training.train_id,
        "schema_version": SCHEMA_VERSION,
        "status": STATUS_OK,
        "spec": spec.to_json(),
        "metrics": metrics,
        "not_learned": learning(metrics),
        "per_method": per_method(samples),
        "n_samples": len(samples),
        "n_reals": int((samples["label"] == 0).sum()),
        "n_fakes": int((samples["label"] == 1).sum()),
        "n_attacked": int(samples["attacked"].sum()),
        "n_videos": int(samples["video_id"].nunique()),
        "perturbation": perturbation(samples),
        "after_round_trip": after_round_trip(samples),
        "attack_info": attack_info(samples),
        "training": {
            "epochs": spec.training.train.params.get("epochs"),
            "weights": weights,
            "cached": bool(trained.cached),
            "best_epoch": trained.best_epoch,
            "history": to_jsonable(trained.history),  # per epoch: losses, val accuracies, seconds
            "val_metrics": to_jsonable(trained.val_metrics),
            "resumed_after_epoch": resumed_after_epoch,
        },
        "data": to_jsonable(bundle.info),
        "surrogates": list(surrogates or []),
        "runtime": runtime or {},
        "decision": {"rule": rule.value, "threshold": float(trained.model.threshold)},
        "operating_points": points,
        "flags": dict(flags or {"checked": False}),
        "env": environment(device),
        "timings": {k: round(v, 3) for k, v in timings.items()},
        "created": now(),
    })


def failed_record(cell_id: str, train_id: str, spec: dict[str, Any], error: dict[str, str]) -> Record:
    """A cell that raised: its spec and error (``type``, ``message``, ``traceback``), status ``failed``."""
    return Record(cell_id, STATUS_FAILED, spec, train_id=train_id, error=error, created=now())


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


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
    broken = attacked[says_fake(attacked["clean_score"]) == attacked["label"].astype(bool)]
    broken = broken[says_fake(broken["adv_score"]) != broken["label"].astype(bool)]
    return {
        "linf_max": float(samples["linf"].max()),
        "l2_mean": float(attacked["l2"].mean()) if len(attacked) else 0.0,
        "l2_median_broken": float(broken["l2"].median()) if len(broken) else None,
        "linf_median_broken": float(broken["linf"].median()) if len(broken) else None,
        **perceptual_summary(attacked),
    }


def perceptual_summary(attacked: pd.DataFrame) -> dict[str, float | int | None]:
    """SSIM and PSNR (dB) of the attacked samples the attack changed (an unchanged image has PSNR inf):
    mean and median, and how many samples they summarise. Older per-sample tables have no such columns
    (docs/changelog.md): the keys are then absent."""
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
    correct_clean = says_fake(samples["clean_score"]).astype(int) == samples["label"]
    correct_adv = says_fake(samples["adv_score"]).astype(int) == samples["label"]
    table = pd.DataFrame({"method": samples["method"], "clean_acc": correct_clean, "robust_acc": correct_adv})
    grouped = table.groupby("method")[["clean_acc", "robust_acc"]].mean()
    return {
        m: {k: float(v) for k, v in row.items()} | {"n": int((samples["method"] == m).sum())}
        for m, row in grouped.iterrows()
    }
