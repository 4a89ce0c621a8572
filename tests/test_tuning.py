"""`afsl-bench tune`: each defense's parameters and the head chosen on VALIDATION numbers of the records
(training.val_metrics), never on a test metric; a missing or incomplete record is an error."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from afsl_bench.cli import app
from afsl_bench.core.errors import ConfigError
from afsl_bench.report import tuning
from afsl_bench.report.tuning import Candidate, candidates, choose
from afsl_bench.runner.sweep import load_suite
from afsl_bench.store.disk import RecordStore
from afsl_bench.store.record import Record

SUITE = """
[[sweep]]
detectors = [{name = "tiny-cnn", head = "linear"}, {name = "tiny-cnn", head = "cosine"}]
defenses = ["none", {name = "trades", beta = 1.0}, {name = "trades", beta = 6.0}]
attacks = ["fgsm", "pgd"]
data = ["synthetic"]
seeds = [0]
"""

#: (head, defense, beta) -> (val_robust_acc, val_clean_acc, test robust_acc). The test numbers point the other
#: way on purpose: tuning must read validation only.
VAL = {
    ("linear", "none", None): (0.10, 0.95, 0.90),
    ("linear", "trades", 1.0): (0.40, 0.80, 0.90),
    ("linear", "trades", 6.0): (0.45, 0.70, 0.05),  # best robust: chosen
    ("cosine", "none", None): (0.20, 0.90, 0.00),
    ("cosine", "trades", 1.0): (0.50, 0.85, 0.00),  # robust tie with beta 6, better clean: chosen
    ("cosine", "trades", 6.0): (0.50, 0.75, 0.99),
}
# mean val robust of the chosen defenses: linear (0.10 + 0.45) / 2 = 0.275, cosine (0.20 + 0.50) / 2 = 0.35


def key_of(cell) -> tuple[str, str, float | None]:
    spec = cell.to_json()
    defense = spec["defense"]
    return spec["detector"]["params"]["head"], defense["name"], defense["params"].get("beta")


def fake_record(cell, val: dict[str, float], test_robust: float) -> Record:
    spec = cell.to_json()
    return Record.from_json({
        "cell_id": cell.cell_id,
        "train_id": cell.training.train_id,
        "status": "ok",
        "spec": spec,
        "metrics": {"clean_acc": 0.5, "robust_acc": test_robust, "clean_auc": 0.9},
        "training": {"cached": False, "val_metrics": {"threshold": 0.0, **val}},
        "n_samples": 50,
        "created": "2026-12-01T00:00:00Z",
    })


def fill(suite: Path, results: Path, skip: set[str] = frozenset(), without_robust: set[str] = frozenset()):
    store = RecordStore(results)
    for cell in load_suite(suite).cells:
        if cell.cell_id in skip:
            continue
        robust, clean, test = VAL[key_of(cell)]
        val = {"val_clean_acc": clean} | ({} if cell.cell_id in without_robust else {"val_robust_acc": robust})
        store.write(fake_record(cell, val, test), pd.DataFrame({"sample_id": ["a"]}))


@pytest.fixture
def suite(tmp_path) -> Path:
    path = tmp_path / "tune-me.toml"
    path.write_text(SUITE)
    return path


@pytest.fixture
def results(suite, tmp_path) -> Path:
    fill(suite, tmp_path / "results")
    return tmp_path / "results"


def test_one_candidate_per_trained_model_with_its_validation_numbers(suite, results):
    found = candidates(load_suite(suite), results)
    assert len(found) == 6  # 2 heads x 3 defenses; the second attack reuses each model
    by_label = {(c.head, c.label): c for c in found}
    assert set(by_label) == {(h, d) for h in ("linear", "cosine") for d in ("none", "trades (beta=1.0)", "trades")}
    beta1 = by_label["cosine", "trades (beta=1.0)"]
    assert (beta1.detector, beta1.defense, beta1.params) == ("tiny-cnn", "trades", "beta=1.0")
    assert (beta1.val_robust_acc, beta1.val_clean_acc) == (0.50, 0.85)


def test_choose_takes_the_best_validation_robust_accuracy_per_defense_and_head(suite, results):
    choice = choose(candidates(load_suite(suite), results))["tiny-cnn"]
    linear, cosine = choice["heads"]["linear"], choice["heads"]["cosine"]
    assert linear["defenses"]["trades"]["params"] == ""  # beta 6 (the default): 0.45 > 0.40 on val
    assert linear["defenses"]["trades"]["val_robust_acc"] == 0.45
    assert cosine["defenses"]["trades"]["params"] == "beta=1.0"  # robust tie, better clean on val
    assert set(linear["defenses"]) == {"none", "trades"}
    assert linear["mean_val_robust_acc"] == pytest.approx(0.275)
    assert cosine["mean_val_robust_acc"] == pytest.approx(0.35)
    assert choice["head"] == "cosine"  # the higher mean


def candidate(head: str, defense: str, params: str, robust: float, clean: float, order: int) -> Candidate:
    return Candidate("tiny-cnn", head, defense, params, robust, clean, order, f"{head}-{defense}-{params}")


def test_ties_go_to_the_default_parameters_and_to_the_linear_head():
    found = [
        candidate("cosine", "at", "steps=5", 0.3, 0.8, 0),
        candidate("cosine", "at", "", 0.3, 0.8, 1),
        candidate("linear", "at", "", 0.3, 0.8, 2),
        candidate("linear", "trades", "beta=3.0", 0.3, 0.8, 3),
        candidate("linear", "trades", "beta=1.0", 0.3, 0.8, 4),
    ]
    choice = choose(found)["tiny-cnn"]
    assert choice["heads"]["cosine"]["defenses"]["at"]["params"] == ""  # the paper's values win a tie
    assert choice["heads"]["linear"]["defenses"]["trades"]["params"] == "beta=1.0"  # then the label's order
    assert choice["head"] == "linear"  # equal means: the simpler head


def test_a_missing_record_is_a_config_error_naming_the_sweep_to_run(suite, tmp_path):
    first = load_suite(suite).cells[0]
    model_cells = {c.cell_id for c in load_suite(suite).cells if c.training.train_id == first.training.train_id}
    assert len(model_cells) == 2  # one model, two attacks
    fill(suite, tmp_path / "partial", skip=model_cells)
    with pytest.raises(ConfigError, match=r"have no finished record.*afsl-bench sweep"):
        candidates(load_suite(suite), tmp_path / "partial")


def test_a_model_counts_once_any_of_its_cells_has_a_record(suite, tmp_path):
    first = load_suite(suite).cells[0]
    model_cells = sorted(c.cell_id for c in load_suite(suite).cells if c.training.train_id == first.training.train_id)
    fill(suite, tmp_path / "one-attack", skip={model_cells[0]})
    assert len(candidates(load_suite(suite), tmp_path / "one-attack")) == 6


def test_a_record_without_validation_robust_accuracy_is_a_config_error(suite, tmp_path):
    cells = load_suite(suite).cells
    fill(suite, tmp_path / "old", without_robust={c.cell_id for c in cells})
    with pytest.raises(ConfigError, match="no validation robust accuracy"):
        candidates(load_suite(suite), tmp_path / "old")


def test_write_stores_the_choice_and_every_candidate(suite, results, tmp_path):
    loaded = load_suite(suite)
    found = candidates(loaded, results)
    choice = choose(found)
    path = tuning.write(tmp_path / "out" / "t.json", loaded, found, choice)
    payload = json.loads(path.read_text())
    assert payload["choice"] == json.loads(json.dumps(choice))
    assert payload["suite"] == str(suite) and "val_robust_acc" in payload["rule"]
    assert len(payload["candidates"]) == 6
    assert {(c["head"], c["defense"], c["params"]) for c in payload["candidates"]} == {
        (h, d, p) for h in ("linear", "cosine") for d, p in (("none", ""), ("trades", "beta=1.0"), ("trades", ""))
    }
    assert [c["train_id"] for c in payload["candidates"]] == [c.train_id for c in sorted(found, key=lambda c: c.order)]
    assert {"detector", "head", "defense", "params", "val_robust_acc", "val_clean_acc", "train_id"} == set(
        payload["candidates"][0]
    )


def test_the_tune_command_prints_the_table_and_writes_the_json(suite, results):
    outcome = CliRunner().invoke(app, ["tune", str(suite), "--results-dir", str(results)], env={"COLUMNS": "250"})
    assert outcome.exit_code == 0, outcome.output
    written = results / "tuning" / "tune-me.json"
    assert written.is_file() and "tune-me.json" in outcome.output
    assert "Tuning on validation" in outcome.output  # the table (its layout depends on the terminal's width)
    payload = json.loads(written.read_text())
    assert payload["choice"]["tiny-cnn"]["head"] == "cosine"
    assert payload["choice"]["tiny-cnn"]["heads"]["linear"]["defenses"]["trades"]["val_robust_acc"] == 0.45


def test_tune_without_records_exits_2_with_one_line(suite, tmp_path):
    outcome = CliRunner().invoke(app, ["tune", str(suite), "--results-dir", str(tmp_path / "empty")])
    assert outcome.exit_code == 2 and "afsl-bench sweep" in outcome.output
    assert "Traceback" not in outcome.output
    assert not (tmp_path / "empty" / "tuning").exists()
