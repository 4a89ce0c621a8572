"""The one training loop every defense shares: a defense says what to minimise on a batch, this owns the rest.

``train()`` seeds torch, returns a finished checkpoint ``<train_id>.pt`` untouched when it exists, resumes
from ``<train_id>.partial.pt`` when an earlier run was interrupted, and otherwise trains epoch by epoch:
after each epoch it measures validation accuracy (clean; robust under APGD-CE when selecting on it), keeps
the selected state (by default the last epoch's), and writes the resumable partial checkpoint atomically. At
the end it reloads the selected state, measures its robust validation accuracy (APGD-CE, the same for every
defense: what ``afsl-bench tune`` compares), fixes the decision threshold on clean VALIDATION scores (equal-error-rate point of the margin
z_fake - z_real; thresholds are never fixed on test data, README "Threat model and metrics"), and saves the final checkpoint.
Checkpoints hold tensors and plain Python only, so ``torch.load(..., weights_only=True)`` reads them.

NaN guard: the first non-finite loss, or non-finite gradient of a finite loss, raises ``NonFiniteLossError``
naming the defense, epoch and step.
Skipping such steps would hide a diverging run; the partial checkpoint of the last finished epoch is kept.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

import torch

from afsl_bench.core.errors import ConfigError, NonFiniteLossError
from afsl_bench.core.io import UNREADABLE, atomic_write
from afsl_bench.core.precision import autocast
from afsl_bench.core.spec import to_jsonable
from afsl_bench.core.speed import Compile, FastTraining
from afsl_bench.core.types import DataBundle, Split
from afsl_bench.defenses.base import Defense, TrainContext
from afsl_bench.defenses.validation import calibrate, robust_margins, robust_subset, validate
from afsl_bench.detectors.base import Detector

log = logging.getLogger(__name__)

Progress = Callable[[dict[str, Any]], None]


class OptimizerName(StrEnum):
    ADAM = "adam"  # AdamW: weight decay decoupled from the adaptive step (Loshchilov & Hutter, ICLR 2019)
    SGD = "sgd"  # momentum 0.9, Nesterov: the usual choice for adversarial training of large CNNs


class SelectOn(StrEnum):
    """Which epoch's weights to keep, judged on the validation split (never test)."""

    CLEAN = "clean"  # best clean accuracy
    ROBUST = "robust"  # best robust accuracy under APGD-CE (robust_val_*), for every defense
    LAST = "last"  # the final epoch (the default: see TrainSettings.select_on)


@dataclass(frozen=True)
class TrainSettings:
    """Optimisation settings; defaults train AFSL + tiny-cnn on 1,800 64x64 images in ~2.5 min on a CPU."""

    # 16: PGD-AT 8/255 on `synthetic` (data version 2) stays at chance on validation for 7 epochs and
    # learns the bounded cues between epochs 8 and 10 on one draw of the data (docs/data-design.md), so 8
    # epochs were too few
    epochs: int = 16
    # 64 gives ~30 optimiser steps per epoch on 2,000 images; larger batches buy no speed on a CPU
    batch_size: int = 64
    lr: float = 2e-3  # AdamW on a small CNN with batch norm; stable with the scale-64 cosine head
    weight_decay: float = 5e-4  # the usual CIFAR value (Madry et al., TRADES)
    optimizer: OptimizerName = OptimizerName.ADAM
    cosine: bool = True  # cosine decay to 0 over all steps (Loshchilov & Hutter, SGDR, ICLR 2017)
    # a short linear warm-up keeps the first steps of the scale-64 cosine head from overshooting
    warmup_epochs: float = 0.5
    # the last epoch: with the cosine-decayed learning rate, the last and the best-on-validation epoch of the
    # stable defenses differ by 0.5-1.4 points of APGD accuracy on this data (docs/afsl.md, "Epoch
    # selection"), while robust selection (Rice et al., ICML 2020, https://arxiv.org/abs/2002.11569) picked
    # degenerate early epochs of unstable runs (a model answering one class scores 50 % under any attack)
    select_on: SelectOn = SelectOn.LAST
    # robust validation: APGD-CE at this budget on a fixed subset of this many validation samples, every
    # epoch when select_on=robust and once for the kept model (its val_robust_acc; 0: never)
    robust_val_samples: int = 512
    robust_val_steps: int = 20
    robust_val_eps: float = 8 / 255

    def __post_init__(self) -> None:
        if self.epochs < 0 or self.batch_size < 1:
            raise ValueError(
                f"epochs ({self.epochs}) must be >= 0 (0: evaluate the detector's weights as they are) and "
                f"batch_size ({self.batch_size}) >= 1"
            )
        numbers = {"lr": self.lr, "weight_decay": self.weight_decay, "warmup_epochs": self.warmup_epochs}
        if not all(math.isfinite(v) for v in numbers.values()):
            raise ValueError(
                f"{', '.join(f'{k}={v}' for k, v in numbers.items())}: every one must be a finite number"
            )
        if self.lr <= 0 or self.weight_decay < 0 or self.warmup_epochs < 0:
            raise ValueError("lr must be > 0, weight_decay and warmup_epochs >= 0")
        if self.robust_val_samples < 0 or self.robust_val_steps < 1 or not 0 < self.robust_val_eps <= 1:
            raise ValueError(
                "robust_val_samples must be >= 0, robust_val_steps >= 1 and robust_val_eps in (0, 1]"
            )
        OptimizerName(self.optimizer), SelectOn(self.select_on)  # bad names fail here, not mid-run


@dataclass
class TrainResult:
    """A trained (or cached) detector with its threshold calibrated, and how it got there."""

    model: Detector
    cached: bool
    history: list[dict[str, float]]  # one dict per epoch: epoch, train losses, val accuracies, seconds
    best_epoch: int
    # clean val metrics after calibration (val_clean_acc, ..., threshold) and val_robust_acc of the kept model
    val_metrics: dict[str, float]
    seconds: float  # training time (summed over resumed runs; the original time for a cached model)
    #: how the training step ran (``FastTraining.runtime``: compile mode, channels-last, compiled); empty
    #: for older checkpoints, which trained eagerly (docs/changelog.md)
    runtime: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunState:
    """Everything needed to resume training after the last finished epoch."""

    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    epoch: int = 0  # epochs finished (1-based numbering elsewhere: epoch k is the k-th)
    best_state: dict[str, torch.Tensor] = field(default_factory=dict)
    best_score: list[float] = field(default_factory=list)
    best_epoch: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0


def train(
    model: Detector,
    defense: Defense,
    bundle: DataBundle,
    settings: TrainSettings,
    *,
    seed: int,
    checkpoint_dir: Path,
    train_id: str,
    device: torch.device | str,
    on_progress: Progress | None = None,
    compile: Compile | str = Compile.AUTO,
    precision: torch.dtype | None = None,
) -> TrainResult:
    """Train ``model`` with ``defense`` on ``bundle.train`` (or load ``<train_id>.pt``); see module doc.
    ``compile``: how the training step is made fast (``afsl_bench.core.speed.FastTraining``; not part of the
    training's identity: the modes agree up to float rounding); ``precision``: the autocast type of the
    training step (None: float32; ``afsl_bench.core.precision``), recorded in the checkpoint's runtime."""
    notify = on_progress or (lambda event: None)
    torch.manual_seed(seed)
    model.to(device)
    final = Path(checkpoint_dir) / f"{train_id}.pt"
    if final.exists() and (cached := _load_or_set_aside(model, final, load_trained)) is not None:
        notify({"phase": "cached", "train_id": train_id})
        return cached
    final.parent.mkdir(parents=True, exist_ok=True)
    partial = final.with_name(f"{train_id}.partial.pt")
    run = start_or_resume(model, settings, len(bundle.train), partial, notify)
    with FastTraining(model, compile, precision) as fast:
        for epoch in range(run.epoch + 1, settings.epochs + 1):
            run_epoch(
                model, defense, bundle, settings, run, epoch, seed=seed, device=device, notify=notify,
                precision=precision,
            )  # fmt: skip
            save_atomic(partial_payload(model, run), partial)
            kept = {} if SelectOn(settings.select_on) is SelectOn.LAST else {"best_epoch": run.best_epoch}
            notify({"phase": "epoch", "epochs": settings.epochs, **run.history[-1], **kept})
    result = finish(model, bundle.val, run, settings, final, device, fast.runtime(), notify)
    partial.unlink(missing_ok=True)
    notify({"phase": "done", "best_epoch": result.best_epoch, **result.val_metrics})
    return result


# ----------------------------------------------------------------------------------------------- setup


def make_optimizer(model: Detector, settings: TrainSettings) -> torch.optim.Optimizer:
    if OptimizerName(settings.optimizer) is OptimizerName.SGD:
        return torch.optim.SGD(
            model.parameters(),
            lr=settings.lr,
            momentum=0.9,
            nesterov=True,
            weight_decay=settings.weight_decay,
        )
    return torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)


def lr_factor(step: int, total: int, warmup: int, cosine: bool) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine decay to 0 at ``total`` (or constant)."""
    if step < warmup:
        return (step + 1) / warmup
    if not cosine:
        return 1.0
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def steps_per_epoch(n_train: int, settings: TrainSettings) -> int:
    return math.ceil(n_train / settings.batch_size)


def new_run(model: Detector, settings: TrainSettings, n_train: int) -> RunState:
    optimizer = make_optimizer(model, settings)
    per_epoch = steps_per_epoch(n_train, settings)
    total, warmup = settings.epochs * per_epoch, round(settings.warmup_epochs * per_epoch)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, total, warmup, settings.cosine)
    )
    return RunState(optimizer, scheduler)


def start_or_resume(
    model: Detector, settings: TrainSettings, n_train: int, partial: Path, notify: Progress
) -> RunState:
    """A fresh run, or the one saved in ``partial`` after its last finished epoch."""
    if partial.exists():
        initial = {k: v.clone() for k, v in model.state_dict().items()}
        run = _load_or_set_aside(model, partial, lambda m, p: _resume(m, p, new_run(m, settings, n_train)))
        if run is None:
            model.load_state_dict(initial)  # the set-aside file may have loaded part of itself
    else:
        run = None
    if run is None:
        model.threshold.zero_()  # train on the raw margin; a threshold is fixed on val at the end
        return new_run(model, settings, n_train)
    log.info("resuming %s after epoch %d", partial.name, run.epoch)
    notify({"phase": "resume", "epoch": run.epoch, "epochs": settings.epochs})
    return run


# ------------------------------------------------------------------------------------------- one epoch


def run_epoch(
    model: Detector,
    defense: Defense,
    bundle: DataBundle,
    settings: TrainSettings,
    run: RunState,
    epoch: int,
    *,
    seed: int,
    device: torch.device | str,
    notify: Progress,
    precision: torch.dtype | None = None,
) -> None:
    """Train one epoch, validate, update the best state and the history."""
    start = time.perf_counter()
    losses = train_epoch(
        model, defense, bundle.train, settings, run, epoch, seed=seed, device=device, notify=notify,
        precision=precision,
    )  # fmt: skip
    robust = settings.robust_val_samples if wants_robust(settings) else 0
    val = validate(
        model,
        bundle.val,
        batch_size=settings.batch_size,
        robust_samples=robust,
        robust_eps=settings.robust_val_eps,
        robust_steps=settings.robust_val_steps,
        device=device,
        on_batch=lambda done, total: notify(
            {"phase": "robust_val", "epoch": epoch, "done": done, "total": total}
        ),
    )
    seconds = time.perf_counter() - start
    run.seconds += seconds
    run.history.append({"epoch": epoch, **losses, **val, "seconds": seconds})
    score = selection_score(settings, epoch, val)
    if not run.best_score or score >= run.best_score:  # ties go to the later, longer-trained epoch
        run.best_score, run.best_epoch = score, epoch
        run.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    run.epoch = epoch
    log.info("epoch %d/%d: %s", epoch, settings.epochs, run.history[-1])


def train_epoch(
    model: Detector,
    defense: Defense,
    split: Split,
    settings: TrainSettings,
    run: RunState,
    epoch: int,
    *,
    seed: int,
    device: torch.device | str,
    notify: Progress,
    precision: torch.dtype | None = None,
) -> dict[str, float]:
    """One pass over the training split; returns the sample-weighted mean of the loss and its logged terms.
    ``precision``: the loss (the defense's inner attack too) under autocast in that type; float16 with loss
    scaling (``torch.amp.GradScaler``), which skips a step whose gradients overflowed."""
    model.train()
    device = torch.device(device)
    scaler = torch.amp.GradScaler(device.type) if precision is torch.float16 else None
    prior_fake = fake_prior(split)
    steps, totals, seen = steps_per_epoch(len(split), settings), {}, 0
    batches = split.batches(settings.batch_size, shuffle=True, seed=seed * 1000 + epoch)
    for step, batch in enumerate(batches, 1):
        batch = batch.to(device)
        ctx = TrainContext(prior_fake=prior_fake, epoch=epoch, step=(epoch - 1) * steps + step)
        with autocast(precision, device):
            loss, logs = defense.loss(model, batch, ctx)
        loss = loss.float()
        check_finite(loss, defense, epoch, step)
        run.optimizer.zero_grad(set_to_none=True)
        if scaler is None:
            loss.backward()
            check_finite_gradients(model, defense, epoch, step)
            run.optimizer.step()
        else:  # an overflow is the scaler's to handle: it lowers the scale and skips the step
            scaler.scale(loss).backward()
            scaler.step(run.optimizer)
            scaler.update()
        run.scheduler.step()
        logs = {"loss": loss.item(), **logs}
        for key, value in logs.items():
            totals[key] = totals.get(key, 0.0) + value * len(batch)
        seen += len(batch)
        notify(
            {
                "phase": "train",
                "epoch": epoch,
                "epochs": settings.epochs,
                "step": step,
                "steps": steps,
                "lr": run.scheduler.get_last_lr()[0],
                **logs,
            }
        )
    return {f"train_{key}": total / seen for key, total in totals.items()}


def fake_prior(split: Split) -> float:
    real, fake = split.class_counts()
    if real == 0 or fake == 0:
        raise ConfigError(f"the training split needs both classes; it has {real} real, {fake} fake samples")
    return fake / (real + fake)


def check_finite_gradients(model: Detector, defense: Defense, epoch: int, step: int) -> None:
    """A finite loss can still have NaN gradients (an underflow inside the loss); one optimiser step would
    then write NaN into every weight, and the next loss would be blamed."""
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    if grads and not torch.isfinite(torch.nn.utils.get_total_norm(grads)):
        bad = [
            name for name, p in model.named_parameters() if p.grad is not None and not p.grad.isfinite().all()
        ]
        raise NonFiniteLossError(
            f"defense '{type(defense).__name__}' produced non-finite gradients at epoch {epoch}, step {step} "
            f"(in {', '.join(bad[:3])}{', ...' if len(bad) > 3 else ''}) from a finite loss: lower the learning "
            "rate (--set train.lr=...) or check the defense's loss for an underflow"
        )


def check_finite(loss: torch.Tensor, defense: Defense, epoch: int, step: int) -> None:
    if not torch.isfinite(loss).all():
        raise NonFiniteLossError(
            f"defense '{type(defense).__name__}' produced a non-finite loss ({loss.item()}) at epoch "
            f"{epoch}, step {step}: lower the learning rate (--set train.lr=...) or check the data for NaNs"
        )


# ------------------------------------------------------------------------------------------ selection


def wants_robust(settings: TrainSettings) -> bool:
    """Whether every epoch is attacked on validation (``select_on=robust``, for any defense)."""
    return SelectOn(settings.select_on) is SelectOn.ROBUST and settings.robust_val_samples > 0


def selection_score(settings: TrainSettings, epoch: int, val: dict[str, float]) -> list[float]:
    """Larger is better; compared as a list, so clean accuracy breaks ties in robust accuracy."""
    if SelectOn(settings.select_on) is SelectOn.LAST:
        return [float(epoch)]
    if wants_robust(settings):
        return [val["val_robust_acc"], val["val_clean_acc"]]
    return [val["val_clean_acc"]]


# ----------------------------------------------------------------------------------- finish and files


def finish(
    model: Detector,
    val: Split,
    run: RunState,
    settings: TrainSettings,
    final: Path,
    device: torch.device | str,
    runtime: dict[str, Any] | None = None,
    notify: Progress = lambda event: None,
) -> TrainResult:
    """Load the selected state, measure its robust validation accuracy (APGD-CE at the model's own rule, the
    number ``afsl-bench tune`` compares), calibrate the threshold on clean validation data, save."""
    model.load_state_dict(run.best_state)
    robust = {}
    if settings.robust_val_samples > 0:
        sub = robust_subset(val, settings.robust_val_samples)
        adv = robust_margins(
            model,
            sub,
            eps=settings.robust_val_eps,
            steps=settings.robust_val_steps,
            batch_size=2 * settings.batch_size,
            device=device,
            on_batch=lambda done, total: notify({"phase": "robust_val", "done": done, "total": total}),
        )
        robust = {"val_robust_acc": float(((adv > 0) == sub.labels.numpy()).mean())}
    val_metrics = calibrate(model, val, 4 * settings.batch_size, device) | robust
    meta = {
        "epochs_run": run.epoch,
        "best_epoch": run.best_epoch,
        "val_metrics": val_metrics,
        "train_seconds": run.seconds,
        "history": run.history,
        "settings": to_jsonable(settings),
        "runtime": runtime or {},
    }
    save_atomic({"state_dict": model.state_dict(), "meta": meta}, final)
    return TrainResult(model, False, run.history, run.best_epoch, val_metrics, run.seconds, runtime or {})


T = TypeVar("T")


def _resume(model: Detector, partial: Path, run: RunState) -> RunState:
    saved = torch.load(partial, map_location="cpu", weights_only=True)
    model.load_state_dict(saved["model"])
    run.optimizer.load_state_dict(saved["optimizer"])
    run.scheduler.load_state_dict(saved["scheduler"])
    run.epoch, run.best_epoch, run.seconds = saved["epoch"], saved["best_epoch"], saved["seconds"]
    run.best_state, run.best_score, run.history = saved["best_state"], saved["best_score"], saved["history"]
    set_rng_state(saved["rng"])
    return run


def _load_or_set_aside(model: Detector, path: Path, load: Callable[[Detector, Path], T]) -> T | None:
    """``load(model, path)``, or None when the file is unreadable (empty, truncated, not a checkpoint of
    this model): it is then renamed to ``<name>.corrupt`` (kept for inspection, never read again) with a
    warning naming it, and the caller trains afresh."""
    try:
        return load(model, path)
    except UNREADABLE as err:
        aside = path.with_name(path.name + ".corrupt")
        os.replace(path, aside)
        reason = str(err).splitlines()[0][:200] if str(err) else type(err).__name__
        log.warning(
            "%s is not a readable checkpoint (%s): moved to %s; training again", path, reason, aside.name
        )
        return None


def load_trained(model: Detector, path: Path) -> TrainResult:
    saved = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(saved["state_dict"])
    model.eval()
    meta = saved["meta"]
    log.info("loaded trained checkpoint %s", path)
    return TrainResult(
        model,
        True,
        meta["history"],
        meta["best_epoch"],
        meta["val_metrics"],
        meta["train_seconds"],
        meta.get("runtime", {}),
    )


def partial_payload(model: Detector, run: RunState) -> dict[str, Any]:
    return {
        "model": model.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict(),
        "epoch": run.epoch,
        "best_state": run.best_state,
        "best_score": run.best_score,
        "best_epoch": run.best_epoch,
        "history": run.history,
        "seconds": run.seconds,
        "rng": rng_state(),
    }


def rng_state() -> dict[str, Any]:
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []
    return {"torch": torch.get_rng_state(), "cuda": cuda}


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_atomic(obj: dict[str, Any], path: Path) -> None:
    """torch.save through the one atomic writer: readers never see half a checkpoint."""
    atomic_write(path, lambda tmp: torch.save(obj, tmp))
