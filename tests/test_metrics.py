"""Metrics against closed forms and scikit-learn-independent hand computations."""

import numpy as np
import pandas as pd
import pytest

from afsl_bench.core import metrics


def test_auc_matches_pairwise_definition() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 200)
    scores = rng.normal(size=200) + labels
    pos, neg = scores[labels == 1], scores[labels == 0]
    pairwise = np.mean([(p > n) + 0.5 * (p == n) for p in pos for n in neg])
    assert metrics.auc(scores, labels) == pytest.approx(pairwise)


def test_eer_of_separable_and_of_symmetric_overlap() -> None:
    labels = np.array([0, 0, 0, 1, 1, 1])
    assert metrics.eer(np.array([-3.0, -2, -1, 1, 2, 3]), labels) == 0.0
    # one real scored above one fake on each side: FPR = FNR = 1/3 at the crossing threshold
    rate, threshold = metrics.eer_and_threshold(np.array([-3.0, -2, 1.5, -1.5, 2, 3]), labels)
    assert rate == pytest.approx(1 / 3)
    assert -1.5 <= threshold <= 1.5


def test_accuracy_uses_the_zero_margin_decision() -> None:
    assert metrics.accuracy(np.array([-1.0, 0.5, 2.0, -0.1]), np.array([0, 1, 0, 1])) == 0.5


def test_attack_success_rate_counts_only_clean_correct_attacked_samples() -> None:
    labels = np.array([1, 1, 0, 0])
    clean = np.array([2.0, -1.0, -2.0, -3.0])  # sample 1 already wrong
    adv = np.array([-1.0, -2.0, 1.0, -3.0])  # 0 fooled, 2 fooled, 3 not
    attacked = np.array([True, True, True, False])
    assert metrics.attack_success_rate(clean, adv, labels, attacked) == 1.0
    attacked[:] = True
    assert metrics.attack_success_rate(clean, adv, labels, attacked) == pytest.approx(2 / 3)


def test_summarise_adds_video_level_as_mean_frame_score() -> None:
    table = pd.DataFrame(
        {
            "video_id": ["a", "a", "b", "b"],
            "label": [1, 1, 0, 0],
            "clean_score": [3.0, -1.0, -2.0, 1.0],  # video a mean 1 (fake, right), b mean -0.5 (real, right)
            "adv_score": [-3.0, 1.0, 2.0, 1.0],
            "attacked": [True] * 4,
        }
    )
    out = metrics.summarise(table)
    assert out["clean_acc"] == 0.5 and out["video_clean_acc"] == 1.0
    assert out["video_robust_acc"] == 0.0 and out["video_asr"] == 1.0


def test_single_class_gives_nan_auc_not_a_crash() -> None:
    assert np.isnan(metrics.auc(np.array([1.0, 2.0]), np.array([1, 1])))


def test_eer_threshold_separates_separable_scores_with_the_strict_rule() -> None:
    # the detector decides "fake if score > t": no fake may sit on the threshold
    scores, labels = np.array([-2.0, -1.0, 1.0, 3.0]), np.array([0, 0, 1, 1])
    rate, threshold = metrics.eer_and_threshold(scores, labels)
    assert rate == 0.0 and threshold == pytest.approx(0.0)
    assert metrics.accuracy(scores - threshold, labels) == 1.0


def test_per_class_accuracy_splits_the_total_by_label() -> None:
    # 3 reals (one wrong under attack), 1 fake (wrong under attack): the total hides which class fell
    table = pd.DataFrame(
        {
            "video_id": ["a", "b", "c", "d"],
            "label": [0, 0, 0, 1],
            "clean_score": [-1.0, -2.0, -0.5, 2.0],
            "adv_score": [-1.0, 0.5, -0.2, -1.0],
            "attacked": [True] * 4,
        }
    )
    out = metrics.summarise(table)
    assert out["clean_acc_real"] == 1.0 and out["clean_acc_fake"] == 1.0
    assert out["robust_acc_real"] == pytest.approx(2 / 3) and out["robust_acc_fake"] == 0.0
    assert out["robust_acc"] == pytest.approx(0.5)  # = (3 * 2/3 + 1 * 0) / 4
    only_reals = metrics.per_class_accuracy(np.array([-1.0]), np.array([0]), "robust")
    assert only_reals["robust_acc_real"] == 1.0 and np.isnan(only_reals["robust_acc_fake"])
