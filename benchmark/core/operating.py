"""Operating points: detection at a false-alarm rate fixed in advance, as a detector is deployed.

A deployer sets the threshold so that at most 1 % (or 5 %) of *real* media is flagged, on data they hold
before any attack: here the clean scores of the model's validation reals. On the test set the record then
says, clean and under the attack, the share of fakes still caught (TPR) and of reals flagged (FPR) at that
fixed threshold, and how many of the fakes caught on clean input the attack let through: the number an
attacker of a deployed detector cares about, since the threshold cannot move after the attack.

With n validation reals the smallest false-positive rate that can be set is 1/n; a level below it falls
back to 1/n, and the record keeps both (``requested``, ``used``). Scores are logit margins, "fake" when
the margin is above the threshold (the same reading as ``core.decision``, at another threshold).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

#: the false-positive rates on clean validation reals the thresholds are set at, and their metric tags
LEVELS = {"fpr1": 0.01, "fpr5": 0.05}


def operating_threshold(real_scores: np.ndarray, level: float) -> tuple[float, float]:
    """(t, the level used): the lowest threshold with at most ``level`` of ``real_scores`` above it (ties at
    t count as not flagged); a level below 1/n falls back to 1/n, the finest n reals support."""
    scores = np.sort(np.asarray(real_scores, dtype=float))[::-1]
    n = len(scores)
    if n == 0:
        raise ValueError("no real scores to set a threshold on")
    used = max(level, 1 / n)
    allowed = math.floor(used * n + 1e-9)  # reals that may lie above t
    return float(scores[min(allowed, n - 1)]), used


def rates(scores: np.ndarray, labels: np.ndarray, threshold: float) -> tuple[float, float]:
    """(TPR on the fakes, FPR on the reals) of "fake if score > threshold"."""
    flagged = scores > threshold
    return float(flagged[labels == 1].mean()), float(flagged[labels == 0].mean())


def operating_points(val_real_scores: np.ndarray, samples: pd.DataFrame) -> tuple[dict[str, float], dict]:
    """(metrics, what was set): per level, ``clean_tpr_at_fpr1``, ``clean_fpr_at_fpr1``, ``robust_tpr_at_fpr1``,
    ``robust_fpr_at_fpr1`` and ``evaded_at_fpr1`` (fakes caught clean that the attack pushed to or below
    the threshold, among the attacked ones; absent when none was caught), and for each level its threshold,
    the requested and used rate and the number of validation reals."""
    labels = samples["label"].to_numpy().astype(int)
    clean = samples["clean_score"].to_numpy(dtype=float)
    adv = samples["adv_score"].to_numpy(dtype=float)
    attacked = samples["attacked"].to_numpy(dtype=bool)
    metrics: dict[str, float] = {}
    settings: dict[str, dict[str, float]] = {}
    for tag, level in LEVELS.items():
        threshold, used = operating_threshold(val_real_scores, level)
        settings[tag] = {"requested": level, "used": used, "threshold": threshold,
                         "val_reals": len(val_real_scores)}  # fmt: skip
        metrics[f"clean_tpr_at_{tag}"], metrics[f"clean_fpr_at_{tag}"] = rates(clean, labels, threshold)
        metrics[f"robust_tpr_at_{tag}"], metrics[f"robust_fpr_at_{tag}"] = rates(adv, labels, threshold)
        caught = (labels == 1) & (clean > threshold) & attacked
        if caught.any():
            metrics[f"evaded_at_{tag}"] = float((adv[caught] <= threshold).mean())
    return metrics, settings
