"""The decision rule of the metrics and the attack: the model's own margin 0 (the default, as RobustBench
and the attack libraries) or the clean-validation EER threshold (``--set eval.threshold=eer``)."""

import dataclasses

import pytest

from afsl_bench.core.decision import DecisionRule
from afsl_bench.core.errors import ConfigError
from afsl_bench.core.spec import CellSpec, EvalSettings
from afsl_bench.runner.cell import RunOptions, run_cell
from afsl_bench.runner.plan import plan_cell

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL = ["data.n_identities=20", "data.images_per_identity=6", "data.resolution=32", "train.epochs=1",
         "train.robust_val_samples=32"]  # fmt: skip


def cell(*extra: str):
    return plan_cell("tiny-cnn", "none", "fgsm", "synthetic", overrides=[*SMALL, *extra])


def test_the_default_rule_is_the_margin_and_every_spec_names_its_rule() -> None:
    assert cell().to_json()["eval_data"]["params"]["threshold"] == "margin"
    assert cell().evaluation.threshold is DecisionRule.MARGIN
    assert cell().cell_id == cell("eval.threshold=margin").cell_id == cell("eval.threshold=MARGIN").cell_id
    eer = cell("eval.threshold=eer")
    assert eer.to_json()["eval_data"]["params"]["threshold"] == "eer" and eer.cell_id != cell().cell_id
    assert eer.training.train_id == cell().training.train_id, "one trained model, two decision rules"
    with pytest.raises(ConfigError, match="eval.threshold=median: choose one of eer, margin"):
        cell("eval.threshold=median")


def test_a_spec_without_a_rule_is_read_as_the_eer_rule_it_was_written_with() -> None:
    stored = cell().to_json()["eval_data"]["params"]
    del stored["threshold"]
    assert EvalSettings.split(stored)[0].threshold is DecisionRule.EER


def test_the_evaluation_settings_stay_out_of_the_data_set_and_keep_the_cell_ids() -> None:
    """``eval.samples`` / ``eval.threshold`` are the spec's ``evaluation``, not parameters of the data set, and
    the spec's JSON writes them where records always had them (the committed records keep their ids)."""
    spec = cell("eval.samples=40")
    assert "samples" not in spec.eval_data.params and "threshold" not in spec.eval_data.params
    assert spec.evaluation == EvalSettings(DecisionRule.MARGIN, 40)
    assert spec.to_json()["eval_data"]["params"] == spec.eval_data.params | {"samples": 40, "threshold": "margin"}
    with pytest.raises(ValueError, match="pass threshold / samples as evaluation"):
        CellSpec(spec.training, spec.attack, dataclasses.replace(spec.eval_data, params={"samples": 3}))


def test_margin_rule_scores_the_raw_margin_of_the_same_model(tmp_path) -> None:
    options = RunOptions(results_dir=tmp_path, device="cpu", checks=False)
    eer, margin = (run_cell(spec, options) for spec in (cell("eval.threshold=eer"), cell()))
    threshold = eer.record.training["val_metrics"]["threshold"]
    assert eer.record.decision == {"rule": "eer", "threshold": pytest.approx(threshold)}
    assert margin.record.decision == {"rule": "margin", "threshold": 0.0}
    assert margin.record.training["cached"], "the second cell loads the first one's checkpoint"
    # the scores differ by exactly the folded threshold, and accuracy is that of the raw margin
    shift = margin.samples["clean_score"] - eer.samples["clean_score"]
    assert shift.to_numpy() == pytest.approx(threshold, abs=1e-4)
    labels = margin.samples["label"]
    assert margin.record.metrics["clean_acc"] == pytest.approx(((margin.samples["clean_score"] > 0) == labels).mean())
    assert margin.record.metrics["clean_auc"] == pytest.approx(eer.record.metrics["clean_auc"])
