"""Validation during training and the final threshold calibration (used by ``defenses.training``).

Everything here reads the VALIDATION split only: per-epoch accuracies rank epochs for model selection, and
the decision threshold is fixed on clean validation scores (never on test data: README, "Threat model and metrics").
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from afsl_bench.attacks.apgd import APGD
from afsl_bench.attacks.vocabulary import Loss
from afsl_bench.core.errors import NonFiniteLossError
from afsl_bench.core.metrics import detection_metrics, eer_and_threshold
from afsl_bench.core.types import Split
from afsl_bench.detectors.base import Detector


@torch.no_grad()
def margins(model: Detector, split: Split, batch_size: int, device: torch.device | str) -> np.ndarray:
    """Logit margins z_fake - z_real over a split, in eval mode."""
    model.eval()
    out = [margin_of(model(b.to(device).x)) for b in split.batches(batch_size)]
    return finite(torch.cat(out).cpu().numpy(), "clean validation")


def finite(margins: np.ndarray, what: str) -> np.ndarray:
    """The margins, or a one-line error: a model whose scores overflow has diverged (a loss can stay finite
    while the weights grow without bound), and the metrics and threshold computed from them would be wrong."""
    bad = int((~np.isfinite(margins)).sum())
    if bad:
        raise NonFiniteLossError(
            f"training diverged: {bad} of {len(margins)} {what} scores are not finite; lower the learning rate "
            "(--set train.lr=...)"
        )
    return margins


def margin_of(logits: torch.Tensor) -> torch.Tensor:
    return (logits[:, 1] - logits[:, 0]).float()


def robust_margins(
    model: Detector,
    split: Split,
    *,
    eps: float,
    steps: int,
    batch_size: int,
    device: torch.device | str,
    on_batch: Callable[[int, int], None] = lambda done, total: None,
) -> np.ndarray:
    """Margins on APGD-CE examples (Croce & Hein, ICML 2020): the same strong attack for every defense,
    whatever the defense trains against, so epochs and defenses are ranked on one yardstick. APGD's early stop
    only retires samples already fooled, so the accuracy is that of the full run (``attacks.apgd``)."""
    attack = APGD(eps=eps, steps=steps, loss=Loss.CE)
    out = []
    for b in split.batches(batch_size):
        b = b.to(device)
        x_adv = attack(model, b.x, b.y)  # sets eval mode itself
        with torch.no_grad():
            model.eval()
            out.append(margin_of(model(x_adv)))
        on_batch(sum(map(len, out)), len(split))
    return finite(torch.cat(out).cpu().numpy(), "robust validation")


def robust_subset(split: Split, n: int) -> Split:
    """A fixed random subset (the same every epoch and run) so epochs are ranked on the same samples."""
    if n >= len(split):
        return split
    order = torch.randperm(len(split), generator=torch.Generator().manual_seed(0))[:n]
    return split.subset(order.sort().values)


def validate(
    model: Detector,
    val: Split,
    *,
    batch_size: int,
    robust_samples: int,
    robust_eps: float,
    robust_steps: int,
    device: torch.device | str,
    on_batch: Callable[[int, int], None] = lambda done, total: None,
) -> dict[str, float]:
    """Validation accuracy at the model's own rule (margin > 0): clean, plus robust on a fixed subset of
    ``robust_samples`` samples (0: skip) under APGD-CE with ``robust_steps`` steps at ``robust_eps``."""
    labels = val.labels.numpy()
    out = {"val_clean_acc": float(np.mean((margins(model, val, 4 * batch_size, device) > 0) == labels))}
    if robust_samples > 0:
        sub = robust_subset(val, robust_samples)
        adv = robust_margins(
            model,
            sub,
            eps=robust_eps,
            steps=robust_steps,
            batch_size=2 * batch_size,
            device=device,
            on_batch=on_batch,
        )
        out["val_robust_acc"] = float(np.mean((adv > 0) == sub.labels.numpy()))
    return out


def calibrate(model: Detector, val: Split, batch_size: int, device: torch.device | str) -> dict[str, float]:
    """Set ``model.threshold`` to the EER point of the clean val margins; return calibrated val metrics."""
    model.threshold.zero_()
    scores, labels = margins(model, val, batch_size, device), val.labels.numpy()
    _, threshold = eer_and_threshold(scores, labels)
    model.threshold.fill_(threshold)
    return {**detection_metrics(scores - threshold, labels, "val_clean"), "threshold": threshold}
