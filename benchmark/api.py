"""The Python API: benchmark your own model, load or train a registered one, run a cell.

RobustBench's most used entry point is ``benchmark(model, ...)`` on a plain ``nn.Module``; this is ours::

    import afsl_bench
    result = afsl_bench.evaluate(my_model, dataset="synthetic", attack="apgd", eps=8/255)
    print(result.record["metrics"]["robust_acc"], result.row())

``my_model`` is any ``nn.Module`` that maps RGB images in [0, 1] ([N, 3, H, W]) to two logits [N, 2]
(index 1 = fake) or to one logit [N] / [N, 1] (> 0 = fake; it is read as the logits (0, z)). Like every
cell of the suite it is scored at its own decision rule, fake when z_fake > z_real (``threshold="margin"``,
as RobustBench and the attack libraries; a detector of the suite is scored by its raw margin, without the
threshold its training calibrated), or with the threshold fixed at the equal-error-rate point of its clean
scores on the data set's VALIDATION split (``threshold="eer"``), clean and under the attack on the test
split. The result is the record the CLI writes (docs/records.md) with
its per-sample table; ``results_dir`` also stores it there.

The CLI is a thin layer over ``run``, ``train`` and ``load_detector``.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from afsl_bench.attacks import ATTACKS
from afsl_bench.attacks.base import AttackContext
from afsl_bench.core.env import resolve_device
from afsl_bench.core.errors import ConfigError
from afsl_bench.core.spec import CellSpec, Component, TrainSpec, to_jsonable
from afsl_bench.core.speed import Compile, FrozenModel
from afsl_bench.data import DATASETS
from afsl_bench.defenses.training import TrainResult, TrainSettings
from afsl_bench.defenses.validation import calibrate as calibrate_threshold
from afsl_bench.detectors import DETECTORS
from afsl_bench.detectors.base import Detector, fold_threshold
from afsl_bench.detectors.weights import load_state, read_state_dict, split_source
from afsl_bench.run.cell import (
    CellOutcome,
    Progress,
    RunOptions,
    _surrogate_trainer,
    cell_checks,
    run_cell,
    subset_test,
    trained_model,
)
from afsl_bench.run.evaluation import evaluate as score_split
from afsl_bench.run.evaluation import weights_digest
from afsl_bench.run.plan import (
    DEFAULT_RULE,
    SAMPLES,
    THRESHOLD,
    DecisionRule,
    build_attack,
    check_surrogates,
    component_of,
    load_dataset,
    parse_decision_rule,
    plan_cell,
    plan_training,
)
from afsl_bench.store.disk import RecordStore
from afsl_bench.store.record import make_record

__all__ = ["CellOutcome", "evaluate", "load_detector", "run", "train"]


def run(
    detector: str = "tiny-cnn",
    defense: str = "none",
    attack: str = "pgd",
    dataset: str = "synthetic",
    *,
    eval_dataset: str | None = None,
    overrides: Sequence[str] = (),
    seed: int = 0,
    results_dir: str | Path = "results",
    device: str = "auto",
    batch_size: int = 256,
    force: bool = False,
    checks: bool = True,
    compile: Compile | str = Compile.AUTO,
    progress: Progress | None = None,
) -> CellOutcome:
    """One cell by registered names, exactly as ``afsl-bench run``: train (or load) the detector with the
    defense, attack it, store and return the record. ``overrides`` are ``--set`` strings (``attack.eps=4/255``)."""
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    spec = plan_cell(detector, defense, attack, dataset, eval_dataset, list(overrides), seed)
    options = RunOptions(Path(results_dir), device, batch_size, force, checks, compile=Compile(compile))
    return run_cell(spec, options, progress)


def train(
    detector: str = "tiny-cnn",
    defense: str = "none",
    dataset: str = "synthetic",
    *,
    overrides: Sequence[str] = (),
    seed: int = 0,
    results_dir: str | Path = "results",
    device: str = "auto",
) -> Detector:
    """A registered detector trained with a defense on a data set (or loaded from the checkpoint cache under
    ``results_dir``), its threshold calibrated on validation data, in eval mode on ``device``.
    ``overrides``: ``--set`` strings of kinds detector, defense, data and train (``train.epochs=10``)."""
    spec = plan_training(detector, defense, dataset, list(overrides), seed)
    model, _ = trained_model(spec, RunOptions(results_dir=Path(results_dir), device=device))
    return model


def load_detector(name: str, weights: str | Path | None = None, **params: Any) -> Detector:
    """A registered detector built with ``params`` (``afsl-bench list detectors --params``), in eval mode,
    with a weights file loaded into it when ``weights`` is given: a local state dict (read with
    ``weights_only=True``) or a published checkpoint as ``SOURCE:PATH`` (``deepfakebench:xception.pth``)."""
    if weights is None:
        return DETECTORS.build(name, **params).eval()
    if "weights" in DETECTORS.params_of(name):
        return DETECTORS.build(name, weights=str(weights), **params).eval()
    source, path = split_source(str(weights))
    if source is not None:
        source.layout(name)  # no source has a layout for a detector without a weights parameter: says so
    model = DETECTORS.build(name, **params)
    load_state(model, read_state_dict(path), str(path))
    return model.eval()


def evaluate(
    model: nn.Module,
    dataset: str = "synthetic",
    attack: str = "apgd",
    eps: float | None = None,
    *,
    attack_params: dict[str, Any] | None = None,
    data_params: dict[str, Any] | None = None,
    samples: int | None = None,
    name: str | None = None,
    defense: str = "external",
    threshold: str = DEFAULT_RULE.value,
    seed: int = 0,
    device: str = "auto",
    batch_size: int = 256,
    checks: bool = True,
    results_dir: str | Path | None = None,
    compile: Compile | str = Compile.AUTO,
) -> CellOutcome:
    """Evaluate ``model`` clean and under ``attack`` on ``dataset``'s test split; see the module docstring.

    ``eps``: the attack's budget (None: the attack's default, 8/255 L-inf for the gradient attacks);
    ``attack_params`` / ``data_params``: any other parameter of the attack or data set by name
    (``afsl-bench list attacks --params``); ``threshold``: the decision rule, ``margin`` or ``eer``
    (``--set eval.threshold``, afsl_bench.run.plan.DecisionRule);
    ``samples``: a fixed subset of N test images (the one the CLI's ``--set eval.samples=N`` picks);
    ``name`` / ``defense``: how the model is labelled in the record and tables (default: its class name,
    ``external``); ``compile``: how the frozen model is prepared for the attack (``afsl_bench.core.speed``;
    ``off`` runs ``model`` as given); ``results_dir``: also store the record there (and a transfer attack's surrogate
    checkpoints; default ``results``)."""
    device_ = resolve_device(device)
    attack_c = _attack_component(attack, eps, attack_params or {})
    attack_ = build_attack(attack_c)
    check_surrogates(attack_)
    eval_c = component_of(DATASETS, dataset, data_params or {})
    tic = time.perf_counter()
    bundle = subset_test(load_dataset(eval_c), samples)
    timings = {"data_s": time.perf_counter() - tic}
    rule = parse_decision_rule(threshold)
    wrapped = ExternalDetector(_raw_margin(model)).to(device_).eval()
    with (
        torch.no_grad()
    ):  # the output contract checked on two images before any work (and lazy modules built)
        wrapped(bundle.test.batch(range(min(2, len(bundle.test)))).x.to(device_))
    tic = time.perf_counter()
    val_metrics = _calibrate(wrapped, bundle, rule, batch_size, device_)
    timings["calibrate_s"] = time.perf_counter() - tic
    settings = {THRESHOLD: rule.value} | ({SAMPLES: samples} if samples is not None else {})
    eval_c = dataclasses.replace(eval_c, params=eval_c.params | settings)
    spec = _external_spec(wrapped, name or type(model).__name__, defense, eval_c, attack_c, rule, seed)
    store = RecordStore(results_dir if results_dir is not None else RunOptions().results_dir)
    if results_dir is not None:
        store.check_writable()  # before the attack runs, not after
    used: list[str] = []
    trainer = _surrogate_trainer(_surrogate_target(eval_c, seed), bundle, store, device_, Progress(), used)
    context = AttackContext(surrogate=trainer, seed=seed, used=used)
    bound = attack_.prepare(context)
    tic = time.perf_counter()
    fast = FrozenModel(wrapped, compile)
    table = score_split(fast, bound, bundle.test, batch_size=batch_size, device=device_, seed=seed)
    timings |= {"train_s": 0.0, "eval_s": time.perf_counter() - tic}  # trained elsewhere: no training here
    flags = (
        cell_checks(fast, bound, bundle, table, device_, seed, RunOptions(device=device))
        if checks
        else {"checked": False}
    )
    trained = TrainResult(wrapped, True, [], 0, val_metrics, 0.0)
    record = make_record(spec, table, trained, bundle, device_, timings)
    record["surrogates"], record["flags"] = used, flags | {"store": []}
    record["runtime"] = fast.runtime()
    record["decision"] = {"rule": rule.value, "threshold": float(wrapped.threshold)}
    if results_dir is not None:
        store.write(record, table)
    return CellOutcome(record, cached=False, samples=table)


class ExternalDetector(nn.Module):
    """A user's model behind the suite's detector interface: two logits (a single logit z becomes (0, z)),
    and the calibrated threshold folded in like every registered detector's."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.differentiable = getattr(model, "differentiable", True)
        self.register_buffer("threshold", torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.model(x)
        if logits.dim() == 1 or (logits.dim() == 2 and logits.shape[1] == 1):
            z = logits.reshape(-1)
            logits = torch.stack([torch.zeros_like(z), z], dim=1)
        if logits.dim() != 2 or logits.shape[1] != 2 or len(logits) != len(x):
            raise ConfigError(
                f"{type(self.model).__name__} returned logits of shape {tuple(logits.shape)} for {len(x)} "
                "images; the model must return [N, 2] (index 1 = fake) or one logit per image ([N] or [N, 1])"
            )
        return fold_threshold(logits, self.threshold)


def _raw_margin(model: nn.Module) -> nn.Module:
    """A detector of the suite scored by its raw logit margin: a copy without the threshold its training
    folded in (the caller's model is left as it is); any other model as it is."""
    if not isinstance(model, Detector) or not bool(model.threshold != 0):
        return model
    raw = copy.deepcopy(model)
    raw.threshold.zero_()
    return raw


def _attack_component(attack: str, eps: float | None, params: dict[str, Any]) -> Component:
    if eps is not None:
        if "eps" not in ATTACKS.params_of(attack):
            raise ConfigError(f"attack '{attack}' has no budget eps (a distortion has a severity): drop eps=")
        params = params | {"eps": eps}
    return component_of(ATTACKS, attack, params)


def _calibrate(
    model: ExternalDetector, bundle: Any, rule: DecisionRule, batch_size: int, device: torch.device
) -> dict[str, float]:
    if rule is DecisionRule.MARGIN:
        return {"threshold": 0.0}
    if len(bundle.val) == 0:
        raise ConfigError(
            "the data set has no validation split to fix an EER threshold on: pass threshold='margin'"
        )
    return calibrate_threshold(model, bundle.val, batch_size, device)


def _external_spec(
    model: ExternalDetector,
    name: str,
    defense: str,
    eval_c: Component,
    attack_c: Component,
    rule: DecisionRule,
    seed: int,
) -> CellSpec:
    """The spec of an external model: named by its class (or ``name``) and identified by a digest of its
    weights, so two models never share a cell id; it was trained elsewhere (``train_data`` ``external``),
    and the calibration of its threshold is the only 'training' the suite did."""
    detector_c = Component(name, {"weights_sha256": weights_digest(model.model)})
    calibrated = rule is DecisionRule.EER
    calibration = {"calibrated_on": f"{eval_c.name} validation split (EER)" if calibrated else None}
    training = TrainSpec(
        detector_c, Component(defense), Component("external"), Component("train", calibration), seed
    )
    return CellSpec(training, attack_c, eval_c)


def _surrogate_target(eval_c: Component, seed: int) -> TrainSpec:
    """What a transfer attack's surrogate is trained like when the target came from outside: the default
    training settings on the evaluation data set's training split."""
    settings = Component("train", to_jsonable(dataclasses.asdict(TrainSettings())))
    return TrainSpec(Component("external"), Component("external"), eval_c, settings, seed)
