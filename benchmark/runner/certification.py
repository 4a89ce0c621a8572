"""Certified robustness of a trained model by randomized smoothing: ``afsl-bench certify``.

The model of a training spec (trained now, or loaded from the checkpoint cache, like a cell's) becomes the
base classifier of a smoothed detector (``defenses/smoothing.py``: Cohen et al. 2019). CERTIFY runs on a
fixed subset of the test split (the images ``eval.samples`` picks), and the result, one JSON file per
(trained model, settings) under ``<results-dir>/certified/``, says the certified accuracy at L2 radii:
the share of test images the smoothed detector classifies correctly with a certificate of at least that
radius, which no attack within it can change (with probability 1 - alpha). Any trained model can be
smoothed; one trained with the ``smoothing`` defense at the same sigma is the one the method is made for.

The radii: 0 (the smoothed classifier's accuracy, abstentions counted wrong), 0.25, 0.5, 1.0, and the L2
radius of the ball that contains the L-inf ball of ``eps`` at the data set's resolution (eps * sqrt(d),
d = channels x height x width): a certificate there covers every L-inf attack of that budget.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from afsl_bench.core.env import environment, resolve_device
from afsl_bench.core.errors import ConfigError
from afsl_bench.core.io import atomic_write_text
from afsl_bench.core.spec import TrainSpec, canonical_json, content_hash
from afsl_bench.defenses.smoothing import ABSTAIN, certify
from afsl_bench.runner.cell import Progress, RunOptions, subset_test, trained_model
from afsl_bench.store.record import now

#: bumped when the certification file's meaning changes
VERSION = 1
#: the L2 radii every certification reports (beside the L-inf ball's)
RADII = (0.0, 0.25, 0.5, 1.0)


@dataclass(frozen=True)
class CertifySettings:
    """CERTIFY's parameters (Cohen et al. 2019, Algorithm 1) and the test subset: ``sigma`` the noise on
    [0, 1] pixels, ``n0`` copies to choose the class, ``n`` to estimate its probability, ``alpha`` the
    failure probability of the certificate, ``samples`` the test images (None: all), ``eps`` the L-inf budget
    whose enclosing L2 ball is reported too."""

    sigma: float = 0.25
    n0: int = 100
    n: int = 1000
    alpha: float = 0.001
    samples: int | None = 200
    eps: float = 8 / 255

    def __post_init__(self) -> None:
        if not (self.sigma > 0 and math.isfinite(self.sigma)):
            raise ConfigError(
                f"sigma={self.sigma}: the noise's standard deviation must be a finite number > 0"
            )
        if self.n0 < 1 or self.n < 1:
            raise ConfigError(
                f"n0={self.n0}, n={self.n}: both must be at least 1 (the paper: n0=100, n=100000)"
            )
        if not 0 < self.alpha < 1:
            raise ConfigError(f"alpha={self.alpha}: the failure probability must be in (0, 1), e.g. 0.001")
        if self.samples is not None and self.samples < 1:
            raise ConfigError(
                f"samples={self.samples}: give a positive number of test images (or none for all)"
            )


@dataclass(frozen=True)
class Certification:
    """One certification a suite plans (its ``[[certify]]`` grids): a trained model and CERTIFY's settings."""

    training: TrainSpec
    settings: CertifySettings

    @property
    def certify_id(self) -> str:
        return certify_id(self.training, self.settings)


def stored(results_dir: Path | str, identity: str) -> dict[str, Any] | None:
    """The stored result of a certification, if it has run."""
    path = Path(results_dir) / "certified" / f"{identity}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def certify_id(training: TrainSpec, settings: CertifySettings) -> str:
    return content_hash(
        {"training": training.identity(), "certify": dataclasses.asdict(settings), "v": VERSION}
    )


def linf_ball_radius(eps: float, shape: tuple[int, ...]) -> float:
    """The L2 radius of the smallest ball containing the L-inf ball of ``eps`` in ``shape``: eps * sqrt(d)."""
    return eps * math.sqrt(math.prod(shape))


def certify_model(
    training: TrainSpec,
    settings: CertifySettings,
    options: RunOptions | None = None,
    progress: Progress | None = None,
    on_images: Callable[[int, int], None] = lambda done, total: None,
) -> dict[str, Any]:
    """Certify the trained model of ``training`` (see the module doc); the stored result when it exists
    (``options.force`` recomputes it). Returns the JSON written to ``<results-dir>/certified/<id>.json``."""
    options, progress = options or RunOptions(), progress or Progress()
    identity = certify_id(training, settings)
    path = Path(options.results_dir) / "certified" / f"{identity}.json"
    if (done := stored(options.results_dir, identity)) is not None and not options.force:
        return done
    device = resolve_device(options.device)
    model, bundle = trained_model(training, options, progress)
    test = subset_test(bundle, settings.samples).test
    progress.on_stage("certify")
    labels = test.labels.numpy()
    decisions, radii, start = [], [], time.perf_counter()
    chunk, done = max(1, options.batch_size // 32), 0  # images per call; each costs n0 + n forward passes
    for batch in test.batches(chunk):
        shape = tuple(batch.x.shape[1:])  # what the model sees: [C, H, W] (or a clip's [T, C, H, W])
        decision, radius = certify(model.eval(), batch.to(device).x, settings.sigma, n0=settings.n0,
                                   n=settings.n, alpha=settings.alpha, batch_size=options.batch_size)  # fmt: skip
        decisions.append(decision)
        radii.append(radius)
        done += len(batch)
        on_images(done, len(test))
    seconds = time.perf_counter() - start
    decision, radius = np.concatenate(decisions), np.concatenate(radii)
    ball = linf_ball_radius(settings.eps, shape)
    result = {
        "certify_id": identity,
        "status": "ok",
        "spec": {
            "training": training.to_json(),
            "train_id": training.train_id,
            "certify": dataclasses.asdict(settings),
        },
        "n_samples": len(labels),
        "n_reals": int((labels == 0).sum()),
        "n_fakes": int((labels == 1).sum()),
        "radii": list(RADII),
        "linf_ball": {"eps": settings.eps, "input_shape": list(shape), "l2_radius": ball},
        **certified_accuracy(decision, radius, labels, (*RADII, ball)),
        "timings": {"certify_s": round(seconds, 3)},
        "throughput": {"noisy_images_per_s": round(len(labels) * (settings.n0 + settings.n) / seconds, 1)},
        "env": environment(device),
        "created": now(),
    }
    atomic_write_text(path, canonical_json(result) + "\n")
    return result


def certified_accuracy(
    decision: np.ndarray, radius: np.ndarray, labels: np.ndarray, radii: tuple[float, ...]
) -> dict[str, Any]:
    """Certified accuracy at each radius (overall, on reals, on fakes: correct and certified at least that
    far; at 0 the smoothed classifier's accuracy) and the abstention rate; radii as strings '0.25'."""
    correct = decision == labels
    out: dict[str, Any] = {"abstain": float(np.mean(decision == ABSTAIN))}
    classes = (
        ("certified_acc", slice(None)),
        ("certified_acc_real", labels == 0),
        ("certified_acc_fake", labels == 1),
    )
    for name, keep in classes:
        out[name] = {
            f"{r:.4g}": float(np.mean((correct & (radius >= r) & (decision != ABSTAIN))[keep])) for r in radii
        }
    return out
