"""Plan a cell from names and ``--set`` overrides, then run it: train (or load), evaluate, write the record.

Data flows one way: names + overrides -> ``CellSpec`` (pure, validated, content-addressed) -> ``run_cell``
-> record + per-sample table in the ``RecordStore``. A finished cell is never recomputed unless forced; an
interrupted one leaves no record and its training resumes from the partial checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Callable, Iterator, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from attacks import ATTACKS, Attack
from attacks.base import AttackContext
from benchmark.checks import ProbeSettings, probe_indices, run_checks, store_flags
from benchmark.data import DATASETS
from benchmark.env import environment, resolve_device
from benchmark.errors import ConfigError
from benchmark.evaluate import clean_fingerprint, evaluate
from benchmark.metrics import summarise
from benchmark.params import coerce, split_overrides, typed_params
from benchmark.registry import Registry, params_of_builder
from benchmark.spec import SCHEMA_VERSION, CellSpec, Component, TrainSpec, content_hash, to_jsonable
from benchmark.types import DataBundle
from defenses import DEFENSES
from defenses.base import Defense
from defenses.training import TrainSettings, train
from detectors import DETECTORS
from detectors.base import Detector
from results.store import STATUS_OK, RecordStore, atomic_write_bytes

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
    #: run the gradient-masking / sanity probes (benchmark/checks.py) and record their flags
    checks: bool = True
    probe: ProbeSettings = field(default_factory=ProbeSettings)


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
    samples = _test_samples(raw["eval"].pop(SAMPLES, None))
    eval_c = _factory_component(DATASETS, "eval", eval_name, inherited | raw["eval"])
    if samples is not None:  # absent unless set: the ids of full-split cells do not change
        eval_c = dataclasses.replace(eval_c, params=eval_c.params | {SAMPLES: samples})
    training = TrainSpec(detector_c, defense_c, data_c, train_c, seed)
    return CellSpec(training, attack_c, eval_c)


#: ``--set eval.samples=N``: evaluate on a fixed subset of N test images (RobustBench's ``n_examples``)
SAMPLES = "samples"


def _test_samples(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise ConfigError(f"eval.samples={text}: give a positive number of test images (or leave it unset)")
    return n


def evaluation_set(spec: CellSpec, train_bundle: DataBundle) -> DataBundle:
    """The evaluation data of a cell: the training data's bundle when the set is the same, and with
    ``eval.samples`` the first N test images of a fixed shuffle (seed 0: every cell sees the same images)."""
    samples = spec.eval_data.params.get(SAMPLES)
    full = dataclasses.replace(
        spec.eval_data, params={k: v for k, v in spec.eval_data.params.items() if k != SAMPLES}
    )
    bundle = train_bundle if full == spec.training.train_data else load_dataset(full)
    if samples is None or samples >= len(bundle.test):
        return bundle
    rows = torch.randperm(len(bundle.test), generator=torch.Generator().manual_seed(0))[:samples].sort().values
    info = bundle.info | {"test_samples": samples, "test_samples_of": len(bundle.test)}
    return dataclasses.replace(bundle, test=bundle.test.subset(rows), info=info)


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
    eval_bundle = evaluation_set(spec, train_bundle)
    timings["data_s"] = time.perf_counter() - start

    progress.on_stage("train")
    resumed: list[int] = []
    trained = _train(spec.training, train_bundle, store, device, _watch_resume(progress, resumed))
    timings["train_s"] = trained.seconds

    progress.on_stage("attack")
    used: list[str] = []  # the training ids of surrogates (transfer attacks), recorded
    trainer = _surrogate_trainer(spec.training, train_bundle, store, device, progress, used)
    context = AttackContext(surrogate=trainer, seed=spec.training.seed, used=used)
    attack = build_attack(spec.attack).prepare(context)
    tic = time.perf_counter()
    clean_key, fingerprint = _clean_key(spec), clean_fingerprint(trained.model, eval_bundle.test)
    clean_scores = store.clean_scores(clean_key, fingerprint)  # shared by every attack on this model + set
    samples = evaluate(
        trained.model,
        attack,
        eval_bundle.test,
        batch_size=options.batch_size,
        device=device,
        seed=spec.training.seed,
        on_batch=progress.on_eval,
        clean_scores=clean_scores,
    )
    if clean_scores is None:
        store.write_clean_scores(clean_key, torch.tensor(samples["clean_score"].to_numpy()), fingerprint)
    timings["eval_s"] = time.perf_counter() - tic

    tic = time.perf_counter()
    if options.checks:
        progress.on_stage("checks")
        memo = ProbeMemo(store.root / "cache" / "probes" / content_hash([spec.training.train_id, spec.eval_data]))
        flags = cell_checks(
            trained.model, attack, eval_bundle, samples, device, spec.training.seed, options, memo=memo
        )
    else:
        flags = {"checked": False}
    timings["checks_s"] = time.perf_counter() - tic
    timings["total_s"] = time.perf_counter() - start

    record = make_record(
        spec, samples, trained, eval_bundle, device, timings, resumed[0] if resumed else None
    )
    record["surrogates"] = context.used
    record["flags"] = flags | {"store": store_flags([*_related(store, spec), record])}
    store.write(record, samples)
    return CellOutcome(record, cached=False, samples=samples)


def cell_checks(
    model: torch.nn.Module,
    attack: Attack,
    bundle: DataBundle,
    samples: pd.DataFrame,
    device: torch.device,
    seed: int,
    options: RunOptions,
    memo: MutableMapping[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The per-cell flags of ``benchmark/checks.py`` on a seeded probe of the evaluation split; the checks of
    the model alone are shared through ``memo`` by the cells of one trained model and evaluation set."""
    rows = probe_indices(len(bundle.test), options.probe.samples, seed)
    batch = bundle.test.batch(rows).to(device)
    table = samples.iloc[rows.numpy()]
    adv_correct = torch.tensor(((table["adv_score"] > 0).astype(int) == table["label"]).to_numpy())
    return {"checked": True} | run_checks(
        model, attack, batch.x, batch.y, adv_correct.to(device), options.probe, seed=seed, memo=memo
    )


class ProbeMemo(MutableMapping[str, dict[str, Any]]):
    """The model-level probe results of one trained model and evaluation set, one JSON file per budget and
    probe (``<results>/cache/probes/<model+eval hash>/<key hash>.json``, written atomically)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def _path(self, key: str) -> Path:
        return self.folder / f"{content_hash(key)}.json"

    def __getitem__(self, key: str) -> dict[str, Any]:
        path = self._path(key)
        if not path.is_file():
            raise KeyError(key)
        return json.loads(path.read_text())["value"]

    def __setitem__(self, key: str, value: dict[str, Any]) -> None:
        text = json.dumps({"key": key, "value": value}, sort_keys=True)
        atomic_write_bytes(self._path(key), text.encode())

    def __delitem__(self, key: str) -> None:
        self._path(key).unlink()

    def __iter__(self) -> Iterator[str]:
        return (json.loads(p.read_text())["key"] for p in sorted(self.folder.glob("*.json")))

    def __len__(self) -> int:
        return len(list(self.folder.glob("*.json")))


def _related(store: RecordStore, spec: CellSpec) -> list[dict[str, Any]]:
    """Finished records of the same trained model on the same evaluation set (for cross-record flags), read
    through the store's by-training-id index rather than a scan of every record."""
    eval_json = spec.to_json()["eval_data"]
    return [
        r
        for r in store.by_train(spec.training.train_id)
        if r.get("status") == STATUS_OK
        and r["spec"]["eval_data"] == eval_json
        and r["cell_id"] != spec.cell_id
    ]


def _clean_key(spec: CellSpec) -> str:
    """The clean-score cache key: the trained model and the evaluation set, not the attack."""
    return content_hash([spec.training.train_id, spec.to_json()["eval_data"]])


def trained_model(training: TrainSpec, options: RunOptions | None = None) -> tuple[Detector, DataBundle]:
    """The trained detector of a training spec (trained now, or loaded from the checkpoint cache) and its
    data: for scripts and notebooks that attack a model outside a cell."""
    options = options or RunOptions()
    store, device = RecordStore(options.results_dir), resolve_device(options.device)
    bundle = load_dataset(training.train_data)
    model = _train(training, bundle, store, device, Progress()).model
    return model.to(device).eval(), bundle


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


def _surrogate_trainer(
    target: TrainSpec,
    bundle: DataBundle,
    store: RecordStore,
    device: torch.device,
    progress: Progress,
    used: list[str],
) -> Callable[[str, str, int | None, str | None], torch.nn.Module]:
    """For attacks that need a surrogate (transfer): train, or load from the cache, a detector + defense
    with the target's training settings, on the target's training data unless another data set is named;
    the target's own spec gives the target's checkpoint."""

    def surrogate(detector: str, defense: str, seed: int | None, data: str | None) -> torch.nn.Module:
        data_c = target.train_data if data is None else _factory_component(DATASETS, "data", data, {})
        spec = TrainSpec(
            _factory_component(DETECTORS, "detector", detector, _with_head({}, defense)),
            _dataclass_component(DEFENSES, "defense", defense, {}),
            data_c,
            target.train,
            target.seed if seed is None else seed,
        )
        progress.on_stage("surrogate")
        data_bundle = bundle if data_c == target.train_data else load_dataset(data_c)
        model = _train(spec, data_bundle, store, device, progress).model
        used.append(spec.train_id)
        return model.to(device).eval()

    return surrogate


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
    {"sample_id", "video_id", "method", "label", "clean_score", "adv_score", "linf", "l2", "attacked"}
)
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
            summary |= {"mean": float(known.mean()), "median": float(known.median()), "max": float(known.max())}
            if (known == known.round()).all() and known.nunique() <= 10:
                summary["counts"] = {str(int(k)): int(v) for k, v in known.value_counts().sort_index().items()}
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
