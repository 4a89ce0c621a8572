"""`afsl-bench table`: pivot tables of the stored records, mean ± std over seeds, honest labels."""

from __future__ import annotations

import pandas as pd
import pytest
from typer.testing import CliRunner

from afsl_bench.cli import app
from afsl_bench.core.errors import ConfigError
from afsl_bench.report.tables import pivot, tidy, to_markdown
from afsl_bench.runner.describe import eps_label
from afsl_bench.runner.plan import plan_cell
from afsl_bench.store.disk import RecordStore
from afsl_bench.store.record import Record


def record(
    defense: str, attack: str, robust: float, seed: int = 0, overrides: list[str] | None = None
) -> Record:
    spec = plan_cell("tiny-cnn", defense, attack, "synthetic", overrides=overrides or [], seed=seed)
    return Record.from_json(
        {
            "cell_id": spec.cell_id,
            "train_id": spec.training.train_id,
            "status": "ok",
            "spec": spec.to_json(),
            "metrics": {"clean_acc": 0.9, "robust_acc": robust, "clean_auc": 0.95},
        }
    )


def test_pivot_means_over_seeds_and_labels_budgets_and_changed_parameters():
    records = [
        record("none", "pgd", 0.10, seed=0),
        record("none", "pgd", 0.30, seed=1),
        record("at", "pgd", 0.40),
        record("at", "apgd", 0.35, overrides=["attack.steps=20"]),
        record("at", "jpeg", 0.80),
        Record("x", "failed", {}),
    ]
    ((where, table),) = pivot(tidy(records))
    assert where == {"detector": "tiny-cnn", "train_data": "synthetic", "eval_data": "synthetic"}
    assert list(table.columns) == ["apgd 8/255 (steps=20)", "jpeg s3", "pgd 8/255"]
    assert table.loc["none", "pgd 8/255"] == "20.0 ± 14.1 (n=2)"
    assert table.loc["at", "pgd 8/255"] == "40.0"
    assert table.loc["none", "jpeg s3"] == "-"
    assert "| at | 35.0 | 80.0 | 40.0 |" in to_markdown(table)


def test_a_head_other_than_the_default_linear_is_shown_in_the_detector_label():
    """Any defense trains any head, so a cosine-head detector is another model, labelled as such."""
    frame = tidy([
        record("none", "pgd", 0.1), record("afsl", "pgd", 0.2),
        record("afsl", "pgd", 0.3, overrides=["detector.head=linear"]),
    ])  # fmt: skip
    assert list(frame["detector"]) == ["tiny-cnn", "tiny-cnn (head=cosine)", "tiny-cnn"]


def test_runs_that_differ_only_in_training_or_evaluation_settings_are_never_averaged_but_labelled():
    """A 2-epoch / 100-sample model and a default one never share one "none" row: each row carries the
    settings the dimensions do not show, whenever the records' settings differ."""
    records = [
        record("none", "pgd", 0.1),
        record("none", "pgd", 0.2, overrides=["train.epochs=2", "eval.samples=100"]),
        record("at", "pgd", 0.4),
    ]
    ((where, table),) = pivot(tidy(records))
    assert where["settings"] == "differ, shown per row", "and the title says so"
    assert table.loc["none", "pgd 8/255"] == "10.0" and table.loc["at", "pgd 8/255"] == "40.0"
    assert table.loc["none (train: epochs=2; eval.samples=100)", "pgd 8/255"] == "20.0"
    same = pivot(tidy([record("none", "pgd", 0.1), record("at", "pgd", 0.4)]))[0][1]
    assert list(same.index) == ["at", "none"], "labels stay short when every record has the same settings"


def test_a_minimum_norm_attack_shows_its_median_perturbation(tmp_path):
    """From the record's ``perturbation``: the median L2 over the samples the attack broke."""
    from afsl_bench.report.tables import load

    store = RecordStore(tmp_path)
    samples = pd.DataFrame({"sample_id": ["a"], "video_id": ["a"], "method": ["m"], "label": [1],
                            "clean_score": [1.0], "adv_score": [-1.0], "linf": [0.01], "l2": [0.4],
                            "attacked": [True]})  # fmt: skip
    for attack, robust in (("cw", 0.0), ("pgd", 0.3)):
        rec = record("none", attack, robust).replace(
            perturbation={"l2_median_broken": 0.4, "linf_median_broken": 0.01}
        )
        store.write(rec, samples)
    ((_, table),) = pivot(load(tmp_path))
    assert table.loc["none", "cw"] == "0.0 (median L2 0.400)"
    assert table.loc["none", "pgd 8/255"] == "30.0", "a bounded attack's budget is in its label already"


@pytest.mark.parametrize(
    "kwargs, word",
    [
        ({"metric": "robust_ac"}, "Did you mean"),
        ({"rows": "seed"}, "--rows"),
        ({"columns": "detectr"}, "--columns"),
    ],
)
def test_bad_table_arguments(kwargs, word):
    with pytest.raises(ConfigError, match=word):
        pivot(tidy([record("none", "pgd", 0.1)]), **kwargs)


def test_eps_labels():
    assert eps_label(8 / 255, "linf") == "8/255"
    assert eps_label(0.5 / 255, "linf") == "0.5/255"
    assert eps_label(0.1234, "linf") == "0.123"
    assert eps_label(0.5, "l2") == "0.5"
    assert eps_label(None, "linf") == ""


def test_cli_table_csv_and_empty_store(tmp_path):
    store = RecordStore(tmp_path)
    samples = pd.DataFrame({"sample_id": ["a"]})
    for r in (record("none", "pgd", 0.25), record("at", "pgd", 0.5)):
        store.write(r, samples)
    shown = CliRunner().invoke(app, ["table", "--results-dir", str(tmp_path), "--format", "csv"])
    assert shown.exit_code == 0, shown.output
    assert "defense,pgd 8/255" in shown.output and "at,50.0" in shown.output and "none,25.0" in shown.output
    empty = CliRunner().invoke(app, ["table", "--results-dir", str(tmp_path / "none")])
    assert empty.exit_code == 2 and "no finished records" in empty.output


def test_transfer_matrix_is_surrogate_by_target_per_budget():
    def transfer(defense, detector, robust, seed=0):
        return record(defense, "transfer", robust, seed, [f"attack.surrogate_detector={detector}"])

    records = [
        transfer("none", "meso4", 0.2),
        transfer("none", "meso4", 0.4, seed=1),
        transfer("at", "meso4", 0.7),
        transfer("none", "resnet", 0.3),
        record("none", "pgd", 0.0),  # not a transfer cell: left out
    ]
    ((where, table),) = pivot(tidy(records), rows="surrogate", columns="target")
    assert where == {"train_data": "synthetic", "eval_data": "synthetic", "budget": "8/255"}
    assert list(table.columns) == ["tiny-cnn + at", "tiny-cnn + none"]
    assert table.loc["meso4 + none", "tiny-cnn + none"] == "30.0 ± 14.1 (n=2)"
    assert table.loc["resnet + none", "tiny-cnn + at"] == "-"
    with pytest.raises(ConfigError, match="transfer"):
        pivot(tidy([record("none", "pgd", 0.0)]), rows="surrogate", columns="target")
