"""Plan a cell from names and ``--set`` overrides, then run it: train (or load), evaluate, write the record.

Data flows one way: names + overrides -> ``CellSpec`` (pure, validated, content-addressed) -> ``run_cell``
-> record + per-sample table in the ``RecordStore``. A finished cell is never recomputed unless forced; an
interrupted one leaves no record and its training resumes from the partial checkpoint.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from attacks import ATTACKS, Attack
from benchmark.data import DATASETS
from benchmark.env import environment, resolve_device
from benchmark.errors import ConfigError
from benchmark.evaluate import evaluate
from benchmark.metrics import summarise
from benchmark.params import coerce, split_overrides, typed_params
from benchmark.registry import Registry, params_of_builder
from benchmark.spec import SCHEMA_VERSION, CellSpec, Component, TrainSpec, to_jsonable
from benchmark.types import DataBundle
from defenses import DEFENSES
from defenses.base import Defense
from defenses.training import TrainSettings, train
from detectors import DETECTORS
from detectors.base import Detector
from results.store import STATUS_OK, RecordStore

log = logging.getLogger(__name__)

#: the prefixes ``--set`` accepts: ``data`` is the training set, ``eval`` the evaluation set
KINDS = ("detector", "defense", "attack", "data", "eval", "train")


@dataclass(frozen=True)
class RunOptions:
    """How to run, not what: none of these enter the cell id (they must not change results)."""

    results_dir: Path = Path("results")
    device: str = "auto"
    batch_size: int = 256
    force: bool = False


@dataclass
class Progress:
    """Callbacks the CLI implements to draw progress; the library never prints."""

    on_train: Callable[[dict[str, Any]], None] = lambda event: None
    on_eval: Callable[[int, int], None] = lambda done, total: None
    on_stage: Callable[[str], None] = lambda stage: None


@dataclass
class CellOutcome:
    record: dict[str, Any]
    cached: bool
    samples: pd.DataFrame | None = field(default=None, repr=False)


def plan_cell(
    detector: str,
    defense: str,
    attack: str,
    dataset: str,
    eval_dataset: str | None = None,
    overrides: list[str] | None = None,
    seed: int = 0,
) -> CellSpec:
    """Validate names and overrides and build the content-addressed spec (no training, no data)."""
    raw = split_overrides(overrides or [], list(KINDS))
    defense_c = _dataclass_component(DEFENSES, "defense", defense, raw["defense"])
    detector_c = _factory_component(DETECTORS, "detector", detector, _with_head(raw["detector"], defense))
    attack_c = _dataclass_component(ATTACKS, "attack", attack, raw["attack"])
    train_c = _settings_component(raw["train"])
    data_c = _factory_component(DATASETS, "data", dataset, raw["data"])
    eval_name = eval_dataset or dataset
    eval_params = DATASETS.params_of(eval_name)
    inherited = {k: v for k, v in raw["data"].items() if k in eval_params}  # e.g. resolution, seed
    eval_c = _factory_component(DATASETS, "eval", eval_name, inherited | raw["eval"])
    training = TrainSpec(detector_c, defense_c, data_c, train_c, seed)
    return CellSpec(training, attack_c, eval_c)


def _with_head(detector_raw: dict[str, str], defense: str) -> dict[str, str]:
    """A defense that needs a head (AFSL: cosine) sets it unless the user chose one; a clash is an error."""
    needed = getattr(DEFENSES.get(defense), "head", None)
    if needed is None:
        return detector_raw
    chosen = detector_raw.get("head")
    if chosen is not None and chosen != str(needed):
        raise ConfigError(
            f"defense '{defense}' needs detector.head={needed}; remove --set detector.head={chosen}"
        )
    return detector_raw | {"head": str(needed)}


def _dataclass_component(registry: Registry, kind: str, name: str, raw: dict[str, str]) -> Component:
    typed = typed_params(kind, name, raw, registry.params_of(name))
    instance = registry.build(name, **typed)  # validates values in __post_init__
    params = {f.name: getattr(instance, f.name) for f in dataclasses.fields(instance)}
    return Component(name, to_jsonable(params), getattr(instance, "version", 1))


def _factory_component(registry: Registry, kind: str, name: str, raw: dict[str, str]) -> Component:
    params = registry.params_of(name)
    typed = typed_params(kind, name, raw, params)
    full = {key: typed.get(key, p.default) for key, p in params.items()}
    return Component(name, to_jsonable(full), getattr(registry.get(name), "version", 1))


def _settings_component(raw: dict[str, str]) -> Component:
    typed = typed_params("train", "settings", raw, params_of_builder(TrainSettings))
    try:
        settings = TrainSettings(**typed)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"train settings: {err}") from err
    return Component("train", to_jsonable(dataclasses.asdict(settings)))


def typed_from_spec(builder: Callable[..., Any], c: Component) -> dict[str, Any]:
    """A stored component's JSON params back to typed values via the builder's own annotations."""
    params = params_of_builder(builder)
    return {k: coerce(v, params[k].annotation) for k, v in c.params.items() if k in params}


def build_attack(c: Component) -> Attack:
    return ATTACKS.build(c.name, **typed_from_spec(ATTACKS.get(c.name), c))


def build_defense(c: Component) -> Defense:
    return DEFENSES.build(c.name, **typed_from_spec(DEFENSES.get(c.name), c))


def build_detector(c: Component) -> Detector:
    return DETECTORS.build(c.name, **typed_from_spec(DETECTORS.get(c.name), c))


def build_settings(c: Component) -> TrainSettings:
    return TrainSettings(**typed_from_spec(TrainSettings, c))


def load_dataset(c: Component) -> DataBundle:
    return DATASETS.build(c.name, **typed_from_spec(DATASETS.get(c.name), c))


def run_cell(
    spec: CellSpec, options: RunOptions | None = None, progress: Progress | None = None
) -> CellOutcome:
    """Train or load the model, evaluate it clean and under attack, and write the record atomically."""
    options, progress = options or RunOptions(), progress or Progress()
    store = RecordStore(options.results_dir)
    if not options.force and (done := store.finished(spec.cell_id)):
        return CellOutcome(done, cached=True)
    device = resolve_device(options.device)
    timings: dict[str, float] = {}
    start = time.perf_counter()

    progress.on_stage("data")
    train_bundle = load_dataset(spec.training.train_data)
    eval_bundle = train_bundle if spec.eval_data == spec.training.train_data else load_dataset(spec.eval_data)
    timings["data_s"] = time.perf_counter() - start

    progress.on_stage("train")
    resumed: list[int] = []
    trained = _train(spec.training, train_bundle, store, device, _watch_resume(progress, resumed))
    timings["train_s"] = trained.seconds

    progress.on_stage("attack")
    attack = build_attack(spec.attack)
    tic = time.perf_counter()
    samples = evaluate(
        trained.model,
        attack,
        eval_bundle.test,
        batch_size=options.batch_size,
        device=device,
        seed=spec.training.seed,
        on_batch=progress.on_eval,
    )
    timings["eval_s"] = time.perf_counter() - tic
    timings["total_s"] = time.perf_counter() - start

    record = make_record(
        spec, samples, trained, eval_bundle, device, timings, resumed[0] if resumed else None
    )
    store.write(record, samples)
    return CellOutcome(record, cached=False, samples=samples)


def _watch_resume(progress: Progress, resumed: list[int]) -> Progress:
    """Pass training events on, noting the epoch a resumed run starts after (recorded in the result)."""

    def on_train(event: dict[str, Any]) -> None:
        if event.get("phase") == "resume":
            resumed.append(int(event["epoch"]))
        progress.on_train(event)

    return dataclasses.replace(progress, on_train=on_train)


def _train(
    training: TrainSpec, bundle: DataBundle, store: RecordStore, device: torch.device, progress: Progress
):
    torch.manual_seed(training.seed)  # the initial weights are part of what the seed fixes
    return train(
        build_detector(training.detector),
        build_defense(training.defense),
        bundle,
        build_settings(training.train),
        seed=training.seed,
        checkpoint_dir=store.checkpoints,
        train_id=training.train_id,
        device=device,
        on_progress=progress.on_train,
    )


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
    return {
        "cell_id": spec.cell_id,
        "train_id": spec.training.train_id,
        "schema_version": SCHEMA_VERSION,
        "status": STATUS_OK,
        "spec": spec.to_json(),
        "metrics": summarise(samples),
        "per_method": per_method(samples),
        "n_samples": int(len(samples)),
        "n_attacked": int(samples["attacked"].sum()),
        "n_videos": int(samples["video_id"].nunique()),
        "perturbation": {
            "linf_max": float(samples["linf"].max()),
            "l2_mean": float(samples.loc[samples["attacked"], "l2"].mean())
            if samples["attacked"].any()
            else 0.0,
        },
        "training": {
            "cached": bool(trained.cached),
            "best_epoch": trained.best_epoch,
            "history": to_jsonable(trained.history),  # per epoch: losses, val accuracies, seconds
            "val_metrics": to_jsonable(trained.val_metrics),
            "resumed_after_epoch": resumed_after_epoch,
        },
        "data": to_jsonable(bundle.info),
        "flags": {},
        "env": environment(device),
        "timings": {k: round(v, 3) for k, v in timings.items()},
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


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
