"""Where a cell's model comes from: everything about a cell that depends on it, so that ``run_cell`` is the
one pipeline for every way of getting a model.

- ``Trained``: the detector + defense of the cell's training spec, trained now or loaded from the checkpoint
  cache (``afsl-bench run``, ``sweep``, ``afsl_bench.run``).
- ``Published``: the spec's detector with its weights file, evaluated as it is (``train.epochs=0``).
- ``Given``: a user's ``nn.Module`` as it is, trained elsewhere (``afsl_bench.evaluate``).

A source loads the data its model needs, hands over the model ready to attack (its threshold set by the
cell's decision rule), names the training spec a transfer attack's surrogate copies, and says whether the
store's caches may stand for it (a cached record, clean scores, probe results).
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import nn

from afsl_bench.core.decision import DecisionRule
from afsl_bench.core.errors import ConfigError
from afsl_bench.core.precision import training_dtype
from afsl_bench.core.runtime import Precision
from afsl_bench.core.spec import CellSpec, Component, EvalSettings, TrainSpec, to_jsonable
from afsl_bench.core.speed import Compile
from afsl_bench.core.types import DataBundle, Split
from afsl_bench.defenses.training import TrainResult, TrainSettings, train
from afsl_bench.defenses.validation import calibrate
from afsl_bench.detectors.base import Detector, fold_threshold
from afsl_bench.detectors.weights import split_source
from afsl_bench.runner.evaluation import model_digest, weights_digest
from afsl_bench.runner.plan import (
    build_defense,
    build_detector,
    build_settings,
    evaluation_only,
    load_dataset,
)
from afsl_bench.store import shared
from afsl_bench.store.disk import RecordStore


@dataclass(frozen=True)
class Job:
    """What a source may use to produce its model: the store (checkpoints), the device, the training
    progress callback and how training steps are compiled."""

    store: RecordStore
    device: torch.device
    on_train: Any  # Callable[[dict[str, Any]], None]
    compile: Compile
    batch_size: int
    #: what attacks craft in; training runs in it only when asked for explicitly (``auto`` trains in float32)
    precision: Precision = Precision.FP32


class ModelSource(Protocol):
    #: whether the store's caches (a finished record, clean scores, probes) may stand for this model
    cached: bool

    def data(self, spec: CellSpec) -> tuple[Component, DataBundle]:
        """The data set the model belongs to, with the component it was loaded from: the training data (a
        transfer attack's surrogate trains on it too), reused as the evaluation data when they are the same."""

    def model(self, spec: CellSpec, home: DataBundle, evaluation: DataBundle, job: Job) -> TrainResult:
        """The model, in eval mode, with its threshold set by the cell's decision rule; ``home`` is what
        ``data`` loaded, ``evaluation`` the cell's evaluation data."""

    def surrogate_target(self, spec: CellSpec) -> TrainSpec:
        """The training spec a transfer attack's surrogate copies (its settings, data set and seed)."""

    def identify(self, spec: CellSpec, model: nn.Module) -> CellSpec:
        """The cell's spec once the model is known (a given model's identity is a digest of its weights,
        which a lazy module has only after its first forward pass)."""


@dataclass(frozen=True)
class Trained:
    """The cell's own detector + defense, trained with its training spec or loaded from the checkpoint cache;
    the threshold its training calibrated on validation data is kept under ``eer`` and zeroed under
    ``margin`` (the checkpoint keeps its calibration either way)."""

    cached: bool = True

    def data(self, spec: CellSpec) -> tuple[Component, DataBundle]:
        return spec.training.train_data, load_dataset(spec.training.train_data)

    def model(self, spec: CellSpec, home: DataBundle, evaluation: DataBundle, job: Job) -> TrainResult:
        trained = train_model(spec.training, home, job)
        if spec.evaluation.threshold is DecisionRule.MARGIN:
            trained.model.threshold.zero_()
        return trained

    def surrogate_target(self, spec: CellSpec) -> TrainSpec:
        return spec.training

    def identify(self, spec: CellSpec, model: nn.Module) -> CellSpec:
        return spec


@dataclass(frozen=True)
class Published:
    """The spec's detector with its weights file (``detector.weights``: a published checkpoint, or a model
    trained elsewhere), evaluated as it is: ``train.epochs=0``, nothing trained. Its threshold is 0 under
    ``margin`` (the published model's own rule, P(fake) > 0.5) and the EER point of its clean scores on the
    data set's validation split under ``eer``. The weights file's SHA-256 is in the spec, so the store's
    caches may stand for it."""

    cached: bool = True

    def data(self, spec: CellSpec) -> tuple[Component, DataBundle]:
        return spec.training.train_data, load_dataset(spec.training.train_data)

    def model(self, spec: CellSpec, home: DataBundle, evaluation: DataBundle, job: Job) -> TrainResult:
        model = build_detector(spec.training.detector).to(job.device).eval()
        if spec.evaluation.threshold is DecisionRule.EER:
            metrics = calibrate_on(model, home.val, job)
        else:
            metrics = {"threshold": 0.0}
        return TrainResult(model, False, [], 0, metrics, 0.0)

    def surrogate_target(self, spec: CellSpec) -> TrainSpec:
        """A transfer attack's surrogate is trained (with the default settings) on the same data."""
        settings = Component("train", to_jsonable(dataclasses.asdict(TrainSettings())))
        return dataclasses.replace(spec.training, train=settings)

    def identify(self, spec: CellSpec, model: nn.Module) -> CellSpec:
        return spec


def weights_origin(spec: CellSpec) -> dict[str, Any] | None:
    """The weights file a cell's detector loaded (``detector.weights``): its source (None for a plain state
    dict), the file it resolved to (a built-in one's path in the package) and its SHA-256; None without."""
    weights = spec.training.detector.params.get("weights")
    if weights is None:
        return None
    source, path = split_source(str(weights))
    return {
        "source": source.name if source else None,
        "given": str(weights),
        "file": str(path),
        "sha256": spec.training.detector.params.get("weights_sha256"),
    }


def source_for(spec: CellSpec) -> ModelSource:
    """Where a planned cell's model comes from: its weights as they are with ``train.epochs=0``, else
    trained (or loaded from the checkpoint cache)."""
    return Published() if evaluation_only(spec.training.train) else Trained()


@dataclass(frozen=True)
class Given:
    """A user's model, evaluated as it is: wrapped as ``ExternalDetector`` (two logits, the threshold folded
    in), its threshold 0 under ``margin`` and the EER point of its clean scores on the evaluation data's
    validation split under ``eer``. Its identity is a digest of its classes, plain attributes, weights and
    buffers (``model_digest``); the caches are never read for it (a model's code can change under the same
    state)."""

    wrapped: ExternalDetector
    #: whether the user named the model (``name=``): required when its state cannot be digested
    named: bool = False
    cached: bool = False

    def data(self, spec: CellSpec) -> tuple[Component, DataBundle]:
        return spec.eval_data, load_dataset(spec.eval_data)

    def model(self, spec: CellSpec, home: DataBundle, evaluation: DataBundle, job: Job) -> TrainResult:
        model = self.wrapped.to(job.device).eval()
        with (
            torch.no_grad()
        ):  # the output contract checked on two images before any work (lazy modules built)
            model(evaluation.test.batch(range(min(2, len(evaluation.test)))).x.to(job.device))
        if spec.evaluation.threshold is DecisionRule.EER:
            metrics = calibrate_on(model, evaluation.val, job)
        else:
            model.threshold.zero_()
            metrics = {"threshold": 0.0}
        return TrainResult(model, True, [], 0, metrics, 0.0)

    def surrogate_target(self, spec: CellSpec) -> TrainSpec:
        """A model from outside has no training settings: its surrogate gets the default ones, on the
        evaluation data set's training split."""
        settings = Component("train", to_jsonable(dataclasses.asdict(TrainSettings())))
        return TrainSpec(
            Component("external"), Component("external"), spec.eval_data, settings, spec.training.seed
        )

    def identify(self, spec: CellSpec, model: nn.Module) -> CellSpec:
        """Its class, plain attributes, weights and buffers, digested; state that cannot be digested needs
        the user's ``name=`` (then the name and the weights identify it)."""
        digest, opaque = model_digest(self.wrapped.model)
        if opaque and not self.named:
            raise ConfigError(
                f"{type(self.wrapped.model).__name__} holds state that cannot be digested into its identity "
                f"({', '.join(opaque[:4])}): pass name= to afsl_bench.evaluate to say which model this is "
                "(two models under one name share one record)"
            )
        params = {"weights_sha256": weights_digest(self.wrapped.model)} if opaque else {"model_sha256": digest}
        named = Component(spec.training.detector.name, params)
        return dataclasses.replace(spec, training=dataclasses.replace(spec.training, detector=named))


def given_spec(
    name: str, defense: str, attack: Component, eval_data: Component, evaluation: EvalSettings, seed: int
) -> CellSpec:
    """The spec of a user's model: named by its class (or ``name``), identified by a digest of its weights
    once the pipeline has built it (``Given.identify``); it was trained elsewhere (``train_data``
    ``external``), and the calibration of its threshold is the only 'training' the suite does (said in
    ``train``)."""
    calibrated = evaluation.threshold is DecisionRule.EER
    calibration = {"calibrated_on": f"{eval_data.name} validation split (EER)" if calibrated else None}
    training = TrainSpec(
        Component(name), Component(defense), Component("external"), Component("train", calibration), seed
    )
    return CellSpec(training, attack, eval_data, evaluation)


def train_model(training: TrainSpec, bundle: DataBundle, job: Job) -> TrainResult:
    """The detector + defense of ``training``, trained on ``bundle`` (or loaded from the checkpoint cache,
    the store's or the one stores share: ``afsl_bench.store.shared``)."""
    shared.fetch(training.train_id, job.store.checkpoints)
    torch.manual_seed(training.seed)  # the initial weights are part of what the seed fixes
    result = train(
        build_detector(training.detector),
        build_defense(training.defense),
        bundle,
        build_settings(training.train),
        seed=training.seed,
        checkpoint_dir=job.store.checkpoints,
        train_id=training.train_id,
        device=job.device,
        on_progress=job.on_train,
        compile=job.compile,
        precision=training_dtype(job.precision),
    )
    shared.publish(training.train_id, job.store.checkpoints, result.runtime)
    return result


def calibrate_on(model: nn.Module, val: Split, job: Job) -> dict[str, float]:
    if len(val) == 0:
        raise ConfigError(
            "the data set has no validation split to fix an EER threshold on: use the margin rule "
            "(threshold='margin', --set eval.threshold=margin)"
        )
    return calibrate(model, val, job.batch_size, job.device)


class ExternalDetector(nn.Module):
    """A user's model behind the suite's detector interface: two logits (a single logit z becomes (0, z)),
    and the calibrated threshold folded in like every registered detector's."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = raw_margin(model)
        self.differentiable = getattr(model, "differentiable", True)
        self.register_buffer("threshold", torch.zeros(()))
        #: the model's own float type: inputs are cast to it and its logits back to float32, so float64,
        #: float16 and bfloat16 models are evaluated as they are and every reported score is float32
        self.dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.model(x.to(self.dtype)).float()
        if logits.dim() == 1 or (logits.dim() == 2 and logits.shape[1] == 1):
            z = logits.reshape(-1)
            logits = torch.stack([torch.zeros_like(z), z], dim=1)
        if logits.dim() != 2 or logits.shape[1] != 2 or len(logits) != len(x):
            raise ConfigError(
                f"{type(self.model).__name__} returned logits of shape {tuple(logits.shape)} for {len(x)} "
                "images; the model must return [N, 2] (index 1 = fake) or one logit per image ([N] or [N, 1])"
            )
        return fold_threshold(logits, self.threshold)


def raw_margin(model: nn.Module) -> nn.Module:
    """A detector of the suite scored by its raw logit margin: a copy without the threshold its training
    folded in (the caller's model is left as it is); any other model as it is."""
    if not isinstance(model, Detector) or not bool(model.threshold != 0):
        return model
    raw = copy.deepcopy(model)
    raw.threshold.zero_()
    return raw
