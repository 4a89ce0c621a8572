"""Running one planned cell: train (or load) the model, evaluate it clean and under attack, run the probes,
and hand the record to the store.

Data flows one way: a ``CellSpec`` (``afsl_bench.runner.plan``) -> ``run_cell`` -> a record (``afsl_bench.store.record``)
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
from afsl_bench.core.decision import DecisionRule, says_fake
from afsl_bench.core.env import resolve_device
from afsl_bench.core.errors import ConfigError
from afsl_bench.core.operating import operating_points
from afsl_bench.core.precision import crafting_dtype
from afsl_bench.core.runtime import Precision
from afsl_bench.core.spec import CellSpec, Component, TrainSpec, content_hash
from afsl_bench.core.speed import Compile, FrozenModel
from afsl_bench.core.types import DataBundle
from afsl_bench.detectors.base import Detector
from afsl_bench.runner.describe import row
from afsl_bench.runner.evaluation import clean_fingerprint, real_scores, score_split
from afsl_bench.runner.plan import build_attack, check_locations, load_dataset, surrogate_spec
from afsl_bench.runner.probes import ProbeSettings, probe_indices, run_checks, store_flags
from afsl_bench.runner.sources import Job, ModelSource, Trained, source_for, train_model, weights_origin
from afsl_bench.store.disk import RecordStore
from afsl_bench.store.record import Record, make_record

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunOptions:
    """How to run, not what: none of these enter the cell id (they must not change results)."""

    results_dir: Path = Path("results")
    device: str = "auto"
    batch_size: int = 256
    force: bool = False
    #: run the gradient-masking / sanity probes (afsl_bench/runner/probes.py) and record their flags
    checks: bool = True
    probe: ProbeSettings = field(default_factory=ProbeSettings)
    #: how the frozen model is prepared for the attacks and the training step run (afsl_bench/core/speed.py); the record notes it
    compile: Compile = Compile.AUTO
    #: what attacks craft in (afsl_bench/core/precision.py); reported scores are float32 whatever it is
    precision: Precision = Precision.FP32
    #: write the record and its table to the store (the API without ``results_dir`` only returns them)
    write: bool = True


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

    record: Record
    cached: bool
    samples: pd.DataFrame | None = field(default=None, repr=False)

    def row(self) -> pd.Series:
        """The record as one row of ``afsl-bench table``'s tidy frame: labels, every metric, the cell id."""
        return pd.Series(row(self.record))


def run_cell(
    spec: CellSpec,
    options: RunOptions | None = None,
    progress: Progress | None = None,
    source: ModelSource | None = None,
) -> CellOutcome:
    """The one cell pipeline: get the model from ``source`` (default: train the spec's detector + defense or
    load its checkpoint; with ``train.epochs=0`` its weights as they are), evaluate it clean and under the spec's attack, probe it for gradient masking, and
    write the record atomically (``options.write``). ``afsl-bench run``, ``sweep``, ``afsl_bench.run`` and
    ``afsl_bench.evaluate`` all come here."""
    options, progress, source = options or RunOptions(), progress or Progress(), source or source_for(spec)
    store = RecordStore(options.results_dir)
    if source.cached and not options.force and (done := store.finished(spec.cell_id)):
        return CellOutcome(done, cached=True)
    device = resolve_device(options.device)
    timings: dict[str, float] = {}
    start = time.perf_counter()

    progress.on_stage("data")
    check_locations(spec)
    home_c, home = source.data(spec)
    eval_bundle = evaluation_set(spec, home_c, home)
    check_classes(eval_bundle, "test", "the metrics (AUC, EER, per-class accuracy) need both")
    if isinstance(source, Trained):
        check_classes(home, "train", "a detector cannot learn a boundary from one class")
        check_classes(home, "val", "the threshold and the kept model are chosen on both")
    elif spec.evaluation.threshold is DecisionRule.EER:
        check_classes(home, "val", "the EER threshold is fixed between both")
    timings["data_s"] = time.perf_counter() - start
    if options.write:
        store.check_writable()  # before the training and the attack, not after them

    progress.on_stage("train" if isinstance(source, Trained) else "model")  # "model": given or published
    resumed: list[int] = []
    on_train = _watch_resume(progress, resumed).on_train
    job = Job(store, device, on_train, options.compile, options.batch_size, options.precision)
    tic = time.perf_counter()
    trained = source.model(spec, home, eval_bundle, job)
    timings["train_s"], timings["model_s"] = trained.seconds, time.perf_counter() - tic
    spec = source.identify(spec, trained.model)

    progress.on_stage("attack")
    used: list[str] = []  # the training ids of surrogates (transfer attacks), recorded
    surrogates = _surrogate_trainer(source.surrogate_target(spec), home, job, progress, used)
    attack = build_attack(spec.attack).prepare(
        AttackContext(surrogate=surrogates, seed=spec.training.seed, used=used)
    )
    tic = time.perf_counter()
    clean_key, fingerprint = _clean_key(spec), clean_fingerprint(trained.model, eval_bundle.test)
    clean_scores = store.clean_scores(clean_key, fingerprint) if source.cached else None
    fast = FrozenModel(
        trained.model.to(device).eval(), options.compile, crafting_dtype(options.precision, device)
    )
    samples = score_split(
        fast,
        attack,
        eval_bundle.test,
        batch_size=options.batch_size,
        device=device,
        seed=spec.training.seed,
        on_batch=progress.on_eval,
        clean_scores=clean_scores,  # shared by every attack on this model + set
    )
    if clean_scores is None and source.cached:
        store.write_clean_scores(clean_key, torch.tensor(samples["clean_score"].to_numpy()), fingerprint)
    operating = operating_at_fixed_fpr(fast, home, samples, options.batch_size, device)
    timings["eval_s"] = time.perf_counter() - tic

    tic = time.perf_counter()
    flags: dict[str, Any] = {"checked": False}
    if options.checks:
        progress.on_stage("checks")
        memo = store.probe_memo(_clean_key(spec)) if source.cached else None
        flags = cell_checks(
            fast, attack, eval_bundle, samples, device, spec.training.seed, options, memo=memo
        )
    timings["checks_s"] = time.perf_counter() - tic
    timings["total_s"] = time.perf_counter() - start

    record = make_record(
        spec,
        samples,
        trained,
        eval_bundle,
        device,
        timings,
        resumed_after_epoch=resumed[0] if resumed else None,
        surrogates=used,
        runtime=fast.runtime() | ({"training": trained.runtime} if trained.runtime else {}),
        flags=flags,
        weights=weights_origin(spec),
        operating=operating,
    )
    across = store_flags([*_related(store, spec), record]) if source.cached else []
    record = record.replace(flags=record.flags | {"store": across})
    if options.write:
        store.write(record, samples)
    return CellOutcome(record, cached=False, samples=samples)


def operating_at_fixed_fpr(
    model: FrozenModel, home: DataBundle, samples: pd.DataFrame, batch_size: int, device: torch.device
) -> tuple[dict[str, float], dict[str, Any]]:
    """The deployment metrics (``core.operating``): thresholds set on the clean scores of the model's own
    validation reals, as a deployer fixes them before any attack; none without validation reals (published
    weights scoring a whole folder), said in the record."""
    if not (home.val.labels == 0).any():
        return {}, {"skipped": f"{home.name} has no validation reals to set a false-positive rate on"}
    return operating_points(real_scores(model, home.val, batch_size, device), samples)


def check_classes(bundle: DataBundle, split: str, why: str) -> None:
    """A split of one class is refused before any work, naming the split, its counts and the fix."""
    labels = getattr(bundle, split).labels
    fakes = int(labels.sum())
    reals = len(labels) - fakes
    if reals and fakes:
        return
    where = bundle.info.get("root", bundle.name)
    fix = (
        "add images of the missing class, or change data.val_fraction / data.test_fraction"
        if bundle.name == "folder"
        else "use more samples (data.*) or another split"
    )
    raise ConfigError(
        f"the {split} split of {bundle.name} ({where}) holds {reals} real and {fakes} fake images: {why} "
        f"classes; {fix}"
    )


def evaluation_set(spec: CellSpec, home_c: Component, home: DataBundle) -> DataBundle:
    """The evaluation data of a cell: the model's own data set (``home``) when it is the same, and with
    ``eval.samples`` a fixed subset of its test split (``subset_test``)."""
    bundle = home if spec.eval_data == home_c else load_dataset(spec.eval_data)
    return subset_test(bundle, spec.evaluation.samples)


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
    """The per-cell flags of ``afsl_bench/runner/probes.py`` on a seeded probe of the evaluation split; the checks of
    the model alone are shared through ``memo`` by the cells of one trained model and evaluation set."""
    rows = probe_indices(len(bundle.test), options.probe.samples, seed)
    batch = bundle.test.batch(rows).to(device)
    table = samples.iloc[rows.numpy()]
    adv_correct = torch.tensor((says_fake(table["adv_score"]).astype(int) == table["label"]).to_numpy())
    return {"checked": True} | run_checks(
        model, attack, batch.x, batch.y, adv_correct.to(device), options.probe, seed=seed, memo=memo
    )


def trained_model(
    training: TrainSpec, options: RunOptions | None = None, progress: Progress | None = None
) -> tuple[Detector, DataBundle]:
    """The trained detector of a training spec (trained now, or loaded from the checkpoint cache) and its
    data: for scripts and notebooks that attack a model outside a cell."""
    options, progress = options or RunOptions(), progress or Progress()
    store, device = RecordStore(options.results_dir), resolve_device(options.device)
    progress.on_stage("data")
    bundle = load_dataset(training.train_data)
    progress.on_stage("train")
    job = Job(store, device, progress.on_train, options.compile, options.batch_size, options.precision)
    return train_model(training, bundle, job).model.to(device).eval(), bundle


def _related(store: RecordStore, spec: CellSpec) -> list[Record]:
    """Finished records of the same trained model on the same evaluation set (for cross-record flags), read
    through the store's by-training-id index rather than a scan of every record."""
    where, identity = set(spec.eval_data.location), spec.eval_identity()

    def same_data(stored: dict[str, Any]) -> bool:  # the stored JSON names the location; ids do not
        params = {k: v for k, v in stored["params"].items() if k not in where}
        return {**stored, "params": params} == identity

    return [
        r
        for r in store.by_train(spec.training.train_id)
        if r.ok and same_data(r.spec["eval_data"]) and r.cell_id != spec.cell_id
    ]


def _clean_key(spec: CellSpec) -> str:
    """The clean-score cache key: the trained model and the evaluation set, not the attack."""
    return content_hash([spec.training.train_id, spec.eval_identity()])


def _watch_resume(progress: Progress, resumed: list[int]) -> Progress:
    """Pass training events on, noting the epoch a resumed run starts after (recorded in the result)."""

    def on_train(event: dict[str, Any]) -> None:
        if event.get("phase") == "resume":
            resumed.append(int(event["epoch"]))
        progress.on_train(event)

    return dataclasses.replace(progress, on_train=on_train)


def _surrogate_trainer(
    target: TrainSpec, bundle: DataBundle, job: Job, progress: Progress, used: list[str]
) -> Callable[[str, str, int | None, str | None], torch.nn.Module]:
    """For attacks that need a surrogate (transfer): train, or load from the cache, a detector + defense
    with the target's training settings, on the target's training data (``bundle``) unless another data set
    is named; the target's own spec gives the target's checkpoint."""

    def surrogate(detector: str, defense: str, seed: int | None, data: str | None) -> torch.nn.Module:
        spec = surrogate_spec(target, detector, defense, target.seed if seed is None else seed, data)
        progress.on_stage("surrogate")
        data_bundle = bundle if spec.train_data == target.train_data else load_dataset(spec.train_data)
        model = train_model(spec, data_bundle, job).model
        used.append(spec.train_id)
        return FrozenModel(
            model.to(job.device).eval(), job.compile, crafting_dtype(job.precision, job.device)
        )

    return surrogate
