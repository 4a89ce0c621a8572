"""`afsl-bench gate`: the CI regression gate passes on its own baseline and fails, naming the cell and
the metric, when the baseline claims more than the code now gets."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from afsl_bench.cli import app

pytestmark = pytest.mark.usefixtures("one_thread")

SUITE = """
[sweep]
detectors = ["tiny-cnn"]
defenses = ["none"]
attacks = ["pgd", "fgsm"]
data = ["synthetic"]

[set]
"data.n_identities" = 20
"data.images_per_identity" = 6
"data.resolution" = 32
"train.epochs" = 1
"""


def gate(tmp_path, *extra: str, command: str = "gate"):
    args = [command, "--baseline", str(tmp_path / "baseline.json")]
    args += ["--results-dir", str(tmp_path / "results")]
    return CliRunner().invoke(app, [*args, *extra])


@pytest.fixture
def baseline(tmp_path):
    (tmp_path / "ci.toml").write_text(SUITE)
    made = gate(tmp_path, "--update", "--suite", str(tmp_path / "ci.toml"))
    assert made.exit_code == 0, made.output
    return tmp_path / "baseline.json"


def test_gate_passes_on_its_own_baseline(tmp_path, baseline):
    content = json.loads(baseline.read_text())
    assert len(content["cells"]) == 2 and content["tolerance"] == 0.02
    outcome = gate(tmp_path)
    assert outcome.exit_code == 0, outcome.output
    assert "ok: 4 checks" in outcome.output


def test_gate_fails_naming_the_cell_and_metric_when_robust_accuracy_drops(tmp_path, baseline):
    content = json.loads(baseline.read_text())
    cell = min(content["cells"])
    content["cells"][cell]["robust_acc"] += 0.1  # the baseline claims more than the code gets
    baseline.write_text(json.dumps(content))
    outcome = gate(tmp_path)
    assert outcome.exit_code == 1
    text = " ".join(outcome.output.split())
    assert f"regression: cell {cell}" in text and "robust_acc: dropped by 0.1000 > 0.02" in text
    assert gate(tmp_path, "--tolerance", "0.2").exit_code == 0, "a wider tolerance accepts the drop"


def test_gate_fails_when_a_baseline_cell_is_no_longer_produced(tmp_path, baseline):
    content = json.loads(baseline.read_text())
    content["cells"]["0000000000000000"] = {"what": "an old spec", "robust_acc": 0.5, "clean_acc": 0.9}
    baseline.write_text(json.dumps(content))
    outcome = gate(tmp_path)
    assert outcome.exit_code == 1 and "spec changed" in " ".join(outcome.output.split())


def test_gate_without_a_baseline_says_how_to_make_one(tmp_path):
    outcome = gate(tmp_path)
    assert outcome.exit_code == 2 and "afsl-bench gate --update" in " ".join(outcome.output.split())


def test_check_is_the_gate_under_its_old_name_with_a_note(tmp_path, baseline):
    outcome = gate(tmp_path, command="check")
    assert outcome.exit_code == 0, outcome.output
    note = "note: 'afsl-bench check' is now 'afsl-bench gate'; the old name goes in the next release"
    assert outcome.stderr.splitlines()[0] == note
    assert "ok: 4 checks" in outcome.stdout and "afsl-bench gate:" in " ".join(outcome.stdout.split())
    assert "check" not in CliRunner().invoke(app, ["--help"]).output.split("Commands")[1]
