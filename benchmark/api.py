"""The Python API: benchmark your own model, load or train a registered one, run a cell.

RobustBench's most used entry point is ``benchmark(model, ...)`` on a plain ``nn.Module``; this is ours::

    import afsl_bench
    result = afsl_bench.evaluate(my_model, dataset="synthetic", attack="apgd", eps=8/255)
    print(result.record.metric("robust_acc"), result.row())

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

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from torch import nn

from afsl_bench.attacks import ATTACKS
from afsl_bench.core.decision import DEFAULT_RULE, parse_decision_rule
from afsl_bench.core.errors import ConfigError
from afsl_bench.core.params import coerce
from afsl_bench.core.runtime import Precision
from afsl_bench.core.spec import Component, EvalSettings
from afsl_bench.core.speed import Compile
from afsl_bench.data import DATASETS
from afsl_bench.detectors import DETECTORS
from afsl_bench.detectors.base import Detector
from afsl_bench.detectors.weights import load_state, read_state_dict, split_source
from afsl_bench.runner.cell import CellOutcome, Progress, RunOptions, run_cell, trained_model
from afsl_bench.runner.plan import (
    build_attack,
    check_surrogates,
    component_of,
    parse_samples,
    plan_cell,
    plan_training,
)
from afsl_bench.runner.sources import ExternalDetector, Given, given_spec

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
    precision: Precision | str = Precision.FP32,
    progress: bool | Progress | None = None,
) -> CellOutcome:
    """One cell by registered names, exactly as ``afsl-bench run``: train (or load) the detector with the
    defense, attack it, store and return the record. ``overrides`` are ``--set`` strings (``attack.eps=4/255``)."""
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    spec = plan_cell(detector, defense, attack, dataset, eval_dataset, list(overrides), seed)
    options = RunOptions(
        Path(results_dir), device, batch_size, force, checks, compile=Compile(compile),
        precision=_precision(precision),
    )  # fmt: skip
    with shown(progress) as callbacks:
        return run_cell(spec, options, callbacks)


def train(
    detector: str = "tiny-cnn",
    defense: str = "none",
    dataset: str = "synthetic",
    *,
    overrides: Sequence[str] = (),
    seed: int = 0,
    results_dir: str | Path = "results",
    device: str = "auto",
    progress: bool | Progress | None = None,
) -> Detector:
    """A registered detector trained with a defense on a data set (or loaded from the checkpoint cache under
    ``results_dir``), its threshold calibrated on validation data, in eval mode on ``device``.
    ``overrides``: ``--set`` strings of kinds detector, defense, data and train (``train.epochs=10``)."""
    spec = plan_training(detector, defense, dataset, list(overrides), seed)
    with shown(progress) as callbacks:
        model, _ = trained_model(spec, RunOptions(results_dir=Path(results_dir), device=device), callbacks)
    return model


@contextmanager
def shown(progress: bool | Progress | None) -> Iterator[Progress]:
    """What ``progress=`` asks for, as the library's callbacks: ``True`` bars on stderr in a terminal (time-
    stamped lines at each milestone elsewhere: a log, CI); ``None`` (the default) the same in a terminal and
    one line per phase elsewhere (a notebook or a script's log stays short); ``False`` nothing; a
    ``runner.cell.Progress`` is used as given."""
    if isinstance(progress, Progress):
        yield progress
        return
    if progress is False:
        yield Progress()
        return
    from afsl_bench.cli.console import err
    from afsl_bench.cli.progress import PhaseLines, RunProgress, quiet

    drawer = PhaseLines(err) if progress is None and quiet() else RunProgress(err)
    with drawer:
        yield drawer.callbacks()


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
    eps: float | str | None = None,
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
    precision: Precision | str = Precision.FP32,
    progress: bool | Progress | None = None,
) -> CellOutcome:
    """Evaluate ``model`` clean and under ``attack`` on ``dataset``'s test split; see the module docstring.

    ``eps``: the attack's budget (None: the attack's default, 8/255 L-inf for the gradient attacks);
    ``attack_params`` / ``data_params``: any other parameter of the attack or data set by name
    (``afsl-bench list attacks --params``); ``threshold``: the decision rule, ``margin`` or ``eer``
    (``--set eval.threshold``, ``afsl_bench.core.decision``);
    ``samples``: a fixed subset of N test images (the one the CLI's ``--set eval.samples=N`` picks);
    ``name`` / ``defense``: how the model is labelled in the record and tables (default: its class name,
    ``external``); ``compile``: how the frozen model (and a transfer attack's surrogate) is prepared for the
    attack (``afsl_bench.core.speed``; ``off`` runs ``model`` as given); ``precision``: what the attack
    crafts in, ``fp32``, ``bf16``, ``fp16`` or ``auto`` (``afsl_bench.core.precision``: every reported score
    is float32 either way); ``results_dir``: also store the record
    there (and a transfer attack's surrogate checkpoints; default ``results``). The same pipeline as
    ``afsl-bench run`` (``afsl_bench.runner.cell.run_cell``) with the model given instead of trained."""
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    if samples is not None and (isinstance(samples, bool) or not isinstance(samples, int) or samples < 1):
        raise ConfigError(
            f"samples must be positive (a number of test images, or None for all), got {samples!r}"
        )
    attack_c = _attack_component(attack, eps, attack_params or {})
    check_surrogates(build_attack(attack_c))
    evaluation = EvalSettings(parse_decision_rule(threshold), parse_samples(samples))
    eval_c = component_of(DATASETS, dataset, data_params or {})
    wrapped = ExternalDetector(model)
    label = name or type(model).__name__
    spec = given_spec(label, defense, attack_c, eval_c, evaluation, seed)
    options = RunOptions(
        Path(results_dir if results_dir is not None else RunOptions().results_dir),
        device,
        batch_size,
        force=True,
        checks=checks,
        compile=Compile(compile),
        precision=_precision(precision),
        write=results_dir is not None,
    )
    with shown(progress) as callbacks:
        return run_cell(spec, options, callbacks, source=Given(wrapped, named=name is not None))


def _precision(precision: Precision | str) -> Precision:
    try:
        return Precision(precision)
    except ValueError:
        choices = ", ".join(p.value for p in Precision)
        raise ConfigError(f"precision={precision!r}: choose one of {choices}") from None


def _attack_component(attack: str, eps: float | str | None, params: dict[str, Any]) -> Component:
    if isinstance(eps, str):  # "8/255", as the CLI takes it
        eps = coerce(eps, float)
    if eps is not None:
        if "eps" not in ATTACKS.params_of(attack):
            raise ConfigError(f"attack '{attack}' has no budget eps (a distortion has a severity): drop eps=")
        params = params | {"eps": eps}
    return component_of(ATTACKS, attack, params)
