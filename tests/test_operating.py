"""Deployment metrics (``core.operating``): a threshold fixed on clean validation reals at 1 % / 5 %
false positives, then TPR / FPR on the test set clean and under attack, and the caught fakes let through."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from afsl_bench.core.operating import operating_points, operating_threshold


def test_the_threshold_flags_exactly_the_requested_share_of_validation_reals() -> None:
    reals = np.random.default_rng(0).permutation(np.arange(100.0))  # 0..99, shuffled
    for level, above in ((0.01, 1), (0.05, 5)):
        threshold, used = operating_threshold(reals, level)
        assert used == level and int((reals > threshold).sum()) == above
        assert int((reals > threshold - 1).sum()) == above + 1, "the lowest such threshold"


def test_too_few_reals_fall_back_to_the_finest_rate_they_support() -> None:
    threshold, used = operating_threshold(np.arange(40.0), 0.01)
    assert used == pytest.approx(1 / 40) and int((np.arange(40.0) > threshold).sum()) == 1
    assert operating_threshold(np.array([3.0]), 0.01) == (3.0, 1.0), (
        "one real: nothing can be flagged below it"
    )
    with pytest.raises(ValueError, match="no real scores"):
        operating_threshold(np.zeros(0), 0.01)


def test_rates_on_the_test_set_clean_and_attacked_and_the_fakes_let_through() -> None:
    val_reals = np.arange(100.0) / 100  # 1 %: threshold 0.98; 5 %: 0.94
    samples = pd.DataFrame({
        "label":       [0,    0,    0,    1,    1,    1,    1],
        "clean_score": [0.10, 0.99, 0.50, 2.00, 1.50, 0.96, 0.20],
        "adv_score":   [0.99, 0.99, 0.97, 0.90, 1.60, 0.50, 0.20],
        "attacked":    [True] * 7,
    })  # fmt: skip
    metrics, points = operating_points(val_reals, samples)
    assert points["fpr1"] == {"requested": 0.01, "used": 0.01, "threshold": 0.98, "val_reals": 100}
    assert metrics["clean_tpr_at_fpr1"] == 0.5 and metrics["clean_fpr_at_fpr1"] == pytest.approx(1 / 3)
    assert metrics["robust_tpr_at_fpr1"] == 0.25 and metrics["robust_fpr_at_fpr1"] == pytest.approx(2 / 3)
    assert metrics["evaded_at_fpr1"] == 0.5, "of the two fakes caught clean (2.00, 1.50), one fell to 0.90"
    assert metrics["clean_tpr_at_fpr5"] == 0.75 and metrics["evaded_at_fpr5"] == pytest.approx(2 / 3)


def test_no_fake_caught_means_no_evasion_rate_rather_than_a_nan() -> None:
    samples = pd.DataFrame({"label": [0, 1], "clean_score": [0.0, -5.0], "adv_score": [0.0, -5.0],
                            "attacked": [True, True]})  # fmt: skip
    metrics, _ = operating_points(np.arange(100.0), samples)
    assert "evaded_at_fpr1" not in metrics and all(np.isfinite(v) for v in metrics.values())


def test_every_record_carries_them_with_the_thresholds_it_used(tmp_path) -> None:
    from afsl_bench.runner.cell import RunOptions, run_cell
    from afsl_bench.runner.plan import plan_cell

    overrides = ["data.n_identities=20", "data.images_per_identity=6", "data.resolution=32", "train.epochs=1"]
    spec = plan_cell("tiny-cnn", "none", "fgsm", "synthetic", overrides=overrides)
    record = run_cell(spec, RunOptions(results_dir=tmp_path, device="cpu", checks=False)).record
    assert (
        record.operating_points["fpr1"]["val_reals"] == 12
        and record.operating_points["fpr1"]["used"] == 1 / 12
    )
    assert {"clean_tpr_at_fpr1", "robust_tpr_at_fpr5", "robust_fpr_at_fpr1"} <= set(record.metrics)
    stored = type(record).from_json(record.to_json())
    assert stored.operating_points == record.operating_points


def deployed(defense: str, seed: int, caught: float | None):
    from test_tables import record

    rec = record(defense, "autoattack-binary", 0.5, seed=seed)
    if caught is None:
        return rec
    extra = {"clean_tpr_at_fpr1": 0.98, "robust_tpr_at_fpr1": caught, "robust_fpr_at_fpr1": 0.5}
    return rec.replace(metrics=rec.metrics | extra)


def test_the_leaderboard_and_model_info_show_them_only_where_every_record_has_them() -> None:
    from afsl_bench.report.leaderboard.model_info import model_info
    from afsl_bench.report.leaderboard.sections import deployment
    from afsl_bench.report.tables import tidy

    records = [deployed(d, s, c) for d, cs in (("at", (0.6, 0.8)), ("none", (0.1, 0.1))) for s, c in enumerate(cs)]
    text = deployment(tidy(records))
    rows = [line for line in text.splitlines() if line.startswith("| tiny-cnn")]
    assert "fakes caught at 1 % false positives" in text and len(rows) == 2
    assert rows[0].startswith("| tiny-cnn | at |") and "70.0 ± 14.1" in rows[0], "ranked by caught under attack"
    (entry,) = [e for e in model_info(records).values() if e["name"].startswith("tiny-cnn + at")]
    assert entry["autoattack_tpr_at_1fpr"] == "70.00" and entry["clean_tpr_at_1fpr"] == "98.00"
    older = [*records, deployed("at", 2, None)]
    assert deployment(tidy(older)) == "", "no partial section from a store that mixes older records"
    frame = tidy([*records, deployed("at", 2, None)])
    frame.loc[frame.index[-1], "eval_data"] = "synthetic-hq"  # an older record of another evaluation set
    shown = deployment(frame)
    assert shown.count("| tiny-cnn |") == 2 and "Not shown: evaluation on synthetic-hq" in shown
    assert all("autoattack_tpr_at_1fpr" not in e for e in model_info(older).values() if "+ at " in e["name"])
