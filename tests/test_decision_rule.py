"""The decision rule of the metrics and the attack: the clean-validation EER threshold (the default so far)
or the model's own margin 0 (``--set eval.threshold=margin``)."""

import pytest

from afsl_bench.core.errors import ConfigError
from afsl_bench.execute import RunOptions, run_cell
from afsl_bench.plan import plan_cell

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL = ["data.n_identities=20", "data.images_per_identity=6", "data.resolution=32", "train.epochs=1",
         "train.robust_val_samples=32"]  # fmt: skip


def cell(*extra: str):
    return plan_cell("tiny-cnn", "none", "fgsm", "synthetic", overrides=[*SMALL, *extra])


def test_the_rule_enters_the_spec_only_when_it_is_not_the_default() -> None:
    assert cell().cell_id == cell("eval.threshold=eer").cell_id == cell("eval.threshold=EER").cell_id
    margin = cell("eval.threshold=margin")
    assert margin.eval_data.params["threshold"] == "margin" and margin.cell_id != cell().cell_id
    assert margin.training.train_id == cell().training.train_id, "one trained model, two decision rules"
    with pytest.raises(ConfigError, match="eval.threshold=median: choose one of eer, margin"):
        cell("eval.threshold=median")


def test_margin_rule_scores_the_raw_margin_of_the_same_model(tmp_path) -> None:
    options = RunOptions(results_dir=tmp_path, device="cpu", checks=False)
    eer, margin = (run_cell(spec, options) for spec in (cell(), cell("eval.threshold=margin")))
    threshold = eer.record["training"]["val_metrics"]["threshold"]
    assert eer.record["decision"] == {"rule": "eer", "threshold": pytest.approx(threshold)}
    assert margin.record["decision"] == {"rule": "margin", "threshold": 0.0}
    assert margin.record["training"]["cached"], "the second cell loads the first one's checkpoint"
    # the scores differ by exactly the folded threshold, and accuracy is that of the raw margin
    shift = margin.samples["clean_score"] - eer.samples["clean_score"]
    assert shift.to_numpy() == pytest.approx(threshold, abs=1e-4)
    labels = margin.samples["label"]
    assert margin.record["metrics"]["clean_acc"] == pytest.approx(((margin.samples["clean_score"] > 0) == labels).mean())
    assert margin.record["metrics"]["clean_auc"] == pytest.approx(eer.record["metrics"]["clean_auc"])
