"""Detection metrics, clean and under attack, at frame and video level.

Scores are logit margins s = z_fake - z_real of a calibrated detector (its decision threshold on clean
validation data is folded into the logits, see ``detectors.base``), so ``s > 0`` means "fake". AUC, AP and
EER are threshold-free; accuracy uses the calibrated decision. Video-level scores are the mean frame
score per ``video_id`` (DeepfakeBench's convention).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from afsl_bench.core.decision import says_fake


def _both_classes(labels: np.ndarray) -> bool:
    return len(np.unique(labels)) == 2


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (nan when only one class is present)."""
    return float(roc_auc_score(labels, scores)) if _both_classes(labels) else float("nan")


def average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    return float(average_precision_score(labels, scores)) if _both_classes(labels) else float("nan")


def eer_and_threshold(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Equal error rate, and a threshold t at that point for the rule "fake if score > t".

    roc_curve reads its thresholds as "fake if score >= t", so its t is itself a fake's score; t is moved
    down to the middle of the gap to the next lower score, which keeps the same decisions with a margin
    both ways (on separable data no fake sits on the boundary).
    """
    if not _both_classes(labels):
        return float("nan"), 0.0
    fpr, tpr, thresholds = roc_curve(labels, scores)
    fnr = 1 - tpr
    i = int(np.nanargmin(np.abs(fnr - fpr)))
    at = thresholds[i] if np.isfinite(thresholds[i]) else scores.max()
    below = scores[scores < at]
    threshold = (at + below.max()) / 2 if len(below) else at - 1.0
    return float((fpr[i] + fnr[i]) / 2), float(threshold)


def eer(scores: np.ndarray, labels: np.ndarray) -> float:
    return eer_and_threshold(scores, labels)[0]


def accuracy(scores: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(says_fake(scores).astype(int) == labels))


def detection_metrics(scores: np.ndarray, labels: np.ndarray, prefix: str) -> dict[str, float]:
    """acc, auc, ap, eer of one score vector, keys prefixed (e.g. 'clean_acc', 'robust_auc')."""
    return {
        f"{prefix}_acc": accuracy(scores, labels),
        f"{prefix}_auc": auc(scores, labels),
        f"{prefix}_ap": average_precision(scores, labels),
        f"{prefix}_eer": eer(scores, labels),
    }


def attack_success_rate(
    clean_scores: np.ndarray, adv_scores: np.ndarray, labels: np.ndarray, attacked: np.ndarray
) -> float:
    """Fraction of attacked samples that were correct on clean input and are wrong after the attack."""
    correct = (says_fake(clean_scores).astype(int) == labels) & attacked
    if not correct.any():
        return float("nan")
    fooled = says_fake(adv_scores).astype(int) != labels
    return float(np.mean(fooled[correct]))


def video_level(samples: pd.DataFrame, score_columns: list[str]) -> pd.DataFrame:
    """Mean frame score per video; the label of a video is that of its frames."""
    grouped = samples.groupby("video_id", sort=True)
    videos = grouped[score_columns].mean()
    videos["label"] = grouped["label"].first()
    videos["attacked"] = grouped["attacked"].any()
    return videos.reset_index()


def summarise(samples: pd.DataFrame) -> dict[str, float]:
    """All metrics of one cell from its per-sample table (columns: label, clean_score, adv_score,
    attacked, video_id). Video-level metrics are added when some video has more than one sample."""
    out = _level_metrics(samples, "")
    if samples["video_id"].duplicated().any():
        out |= _level_metrics(video_level(samples, ["clean_score", "adv_score"]), "video_")
    return out


def _level_metrics(table: pd.DataFrame, level: str) -> dict[str, float]:
    labels = table["label"].to_numpy().astype(int)
    clean = table["clean_score"].to_numpy(dtype=float)
    adv = table["adv_score"].to_numpy(dtype=float)
    metrics = detection_metrics(clean, labels, "clean") | detection_metrics(adv, labels, "robust")
    metrics["asr"] = attack_success_rate(clean, adv, labels, table["attacked"].to_numpy(dtype=bool))
    metrics |= per_class_accuracy(clean, labels, "clean") | per_class_accuracy(adv, labels, "robust")
    return {f"{level}{k}": v for k, v in metrics.items()}


def per_class_accuracy(scores: np.ndarray, labels: np.ndarray, prefix: str) -> dict[str, float]:
    """Accuracy on the reals and on the fakes alone ('robust_acc_real': reals that stay "real" under an
    attack pushing them towards "fake"); nan for a class that is absent. A total can hide that one class
    is given up entirely: an attacker who paints a forgery cue on every real leaves the fakes' accuracy."""
    return {
        f"{prefix}_acc_{name}": accuracy(scores[labels == cls], labels[labels == cls])
        if (labels == cls).any()
        else float("nan")
        for name, cls in (("real", 0), ("fake", 1))
    }
