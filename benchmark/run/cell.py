"""Running one planned cell: train (or load) the model, evaluate it clean and under attack, run the probes,
and hand the record to the store.

Data flows one way: a ``CellSpec`` (``afsl_bench.run.plan``) -> ``run_cell`` -> a record (``afsl_bench.store.record``)
-> the ``RecordStore``. A finished cell is never recomputed unless forced; an interrupted one leaves no record
and its training resumes from the partial checkpoint.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from afsl_bench.attacks import Attack
from afsl_bench.attacks.base import AttackContext
from afsl_bench.core.env import resolve_device
from afsl_bench.core.spec import CellSpec, TrainSpec, content_hash
from afsl_bench.core.speed import Compile, FrozenModel
from afsl_bench.core.types import DataBundle
from afsl_bench.defenses.training import TrainResult, train
from afsl_bench.detectors.base import Detector
from afsl_bench.run.describe import row
from afsl_bench.run.evaluation import clean_fingerprint, evaluate
from afsl_bench.run.plan import (
    EVAL_ONLY,
    SAMPLES,
    DecisionRule,
    build_attack,
    build_defense,
    build_detector,
    build_settings,
    decision_rule,
    load_dataset,
    surrogate_spec,
)
from afsl_bench.run.probes import ProbeSettings, probe_indices, run_checks, store_flags
from afsl_bench.store.disk import STATUS_OK, RecordStore
from afsl_bench.store.record import make_record

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunOptions:
    """How to run, not what: none of these enter the cell id (they must not change results)."""

    results_dir: Path = Path("results")
    device: str = "auto"
    batch_size: int = 256
    force: bool = False
    #: run the gradient-masking / sanity probes (afsl_bench/run/probes.py) and record their flags
    checks: bool = True
    probe: ProbeSettings = field(default_factory=ProbeSettings)
    #: how the frozen model is prepared for the attacks and the training step run (afsl_bench/core/speed.py); the record notes it
    compile: Compile = Compile.AUTO


@dataclass
class Progress:
    """Callbacks the CLI implements to draw progress; the library never prints."""

    on_train: Callable[[dict[str, Any]], None] = lambda event: None
    on_eval: Callable[[int, int], None] = lambda done, total: None
    on_stage: Callable[[str], None] = lambda stage: None


@dataclass
class CellOutcome:
    """One cell's record (docs/records.md), whether it came from the store, and its per-sample table (None
    for a cached record: ``RecordStore.read_samples`` has it)."""

    record: dict[str, Any]
    cached: bool
    samples: pd.DataFrame | None = field(default=None, repr=False)

    def row(self) -> pd.Series:
        """The record as one row of ``afsl-bench table``'s tidy frame: labels, every metric, the cell id."""
        return pd.Series(row(self.record))


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
    store.check_writable()  # before the training and the attack, not after them

    progress.on_stage("train")
    resumed: list[int] = []
    trained = _train(
        spec.training, train_bundle, store, device, _watch_resume(progress, resumed), options.compile
    )
    timings["train_s"] = trained.seconds
    rule = decision_rule(spec)
    if rule is DecisionRule.MARGIN:
        trained.model.threshold.zero_()  # the model's own rule; the checkpoint keeps its calibration

    progress.on_stage("attack")
    used: list[str] = []  # the training ids of surrogates (transfer attacks), recorded
    trainer = _surrogate_trainer(spec.training, train_bundle, store, device, progress, used, options.compile)
    context = AttackContext(surrogate=trainer, seed=spec.training.seed, used=used)
    attack = build_attack(spec.attack).prepare(context)
    tic = time.perf_counter()
    clean_key, fingerprint = _clean_key(spec), clean_fingerprint(trained.model, eval_bundle.test)
    clean_scores = store.clean_scores(clean_key, fingerprint)  # shared by every attack on this model + set
    fast = FrozenModel(trained.model.to(device).eval(), options.compile)
    samples = evaluate(
        fast,
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
        memo = store.probe_memo(content_hash([spec.training.train_id, spec.eval_data]))
        flags = cell_checks(
            fast, attack, eval_bundle, samples, device, spec.training.seed, options, memo=memo
        )
    else:
        flags = {"checked": False}
    timings["checks_s"] = time.perf_counter() - tic
    timings["total_s"] = time.perf_counter() - start

    record = make_record(
        spec, samples, trained, eval_bundle, device, timings, resumed[0] if resumed else None
    )
    record["surrogates"] = context.used
    record["runtime"] = fast.runtime() | {"training": trained.runtime}
    record["decision"] = {"rule": rule.value, "threshold": float(trained.model.threshold)}
    record["flags"] = flags | {"store": store_flags([*_related(store, spec), record])}
    store.write(record, samples)
    return CellOutcome(record, cached=False, samples=samples)


def evaluation_set(spec: CellSpec, train_bundle: DataBundle) -> DataBundle:
    """The evaluation data of a cell: the training data's bundle when the set is the same, and with
    ``eval.samples`` a fixed subset of its test split (``subset_test``)."""
    samples = spec.eval_data.params.get(SAMPLES)
    full = dataclasses.replace(
        spec.eval_data, params={k: v for k, v in spec.eval_data.params.items() if k not in EVAL_ONLY}
    )
    bundle = train_bundle if full == spec.training.train_data else load_dataset(full)
    return subset_test(bundle, samples)


def subset_test(bundle: DataBundle, samples: int | None) -> DataBundle:
    """The first ``samples`` test images of a fixed shuffle (seed 0: every cell and seed sees the same
    images, RobustBench's ``n_examples``); the whole split when unset or larger (said in the record's
    ``data`` as ``test_samples_requested`` and in a warning)."""
    if samples is None:
        return bundle
    if samples >= len(bundle.test):
        if samples > len(bundle.test):
            log.warning("eval.samples=%d: %s has only %d test samples; all %d are used", samples, bundle.name,
                        len(bundle.test), len(bundle.test))  # fmt: skip
        info = bundle.info | {"test_samples_requested": samples, "test_samples_of": len(bundle.test)}
        return dataclasses.replace(bundle, info=info)
    rows = (
        torch.randperm(len(bundle.test), generator=torch.Generator().manual_seed(0))[:samples].sort().values
    )
    info = bundle.info | {"test_samples": samples, "test_samples_of": len(bundle.test)}
    return dataclasses.replace(bundle, test=bundle.test.subset(rows), info=info)


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
    """The per-cell flags of ``afsl_bench/run/probes.py`` on a seeded probe of the evaluation split; the checks of
    the model alone are shared through ``memo`` by the cells of one trained model and evaluation set."""
    rows = probe_indices(len(bundle.test), options.probe.samples, seed)
    batch = bundle.test.batch(rows).to(device)
    table = samples.iloc[rows.numpy()]
    adv_correct = torch.tensor(((table["adv_score"] > 0).astype(int) == table["label"]).to_numpy())
    return {"checked": True} | run_checks(
        model, attack, batch.x, batch.y, adv_correct.to(device), options.probe, seed=seed, memo=memo
    )


def trained_model(training: TrainSpec, options: RunOptions | None = None) -> tuple[Detector, DataBundle]:
    """The trained detector of a training spec (trained now, or loaded from the checkpoint cache) and its
    data: for scripts and notebooks that attack a model outside a cell."""
    options = options or RunOptions()
    store, device = RecordStore(options.results_dir), resolve_device(options.device)
    bundle = load_dataset(training.train_data)
    model = _train(training, bundle, store, device, Progress(), options.compile).model
    return model.to(device).eval(), bundle


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


def _watch_resume(progress: Progress, resumed: list[int]) -> Progress:
    """Pass training events on, noting the epoch a resumed run starts after (recorded in the result)."""

    def on_train(event: dict[str, Any]) -> None:
        if event.get("phase") == "resume":
            resumed.append(int(event["epoch"]))
        progress.on_train(event)

    return dataclasses.replace(progress, on_train=on_train)


def _train(
    training: TrainSpec,
    bundle: DataBundle,
    store: RecordStore,
    device: torch.device,
    progress: Progress,
    compile: Compile = Compile.AUTO,
) -> TrainResult:
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
        compile=compile,
    )


def _surrogate_trainer(
    target: TrainSpec,
    bundle: DataBundle,
    store: RecordStore,
    device: torch.device,
    progress: Progress,
    used: list[str],
    compile: Compile = Compile.AUTO,
) -> Callable[[str, str, int | None, str | None], torch.nn.Module]:
    """For attacks that need a surrogate (transfer): train, or load from the cache, a detector + defense
    with the target's training settings, on the target's training data unless another data set is named;
    the target's own spec gives the target's checkpoint."""

    def surrogate(detector: str, defense: str, seed: int | None, data: str | None) -> torch.nn.Module:
        spec = surrogate_spec(target, detector, defense, target.seed if seed is None else seed, data)
        progress.on_stage("surrogate")
        data_bundle = bundle if spec.train_data == target.train_data else load_dataset(spec.train_data)
        model = _train(spec, data_bundle, store, device, progress, compile).model
        used.append(spec.train_id)
        return FrozenModel(model.to(device).eval(), compile)

    return surrogate
