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


@pytest.fixture(scope="module")
def made_baseline(tmp_path_factory):
    """``gate --update`` once for the module; the baseline names the suite in this folder."""
    folder = tmp_path_factory.mktemp("gate")
    (folder / "ci.toml").write_text(SUITE)
    made = gate(folder, "--update", "--suite", str(folder / "ci.toml"))
    assert made.exit_code == 0, made.output
    return folder / "baseline.json"


@pytest.fixture
def baseline(tmp_path, made_baseline):
    """A copy of the module's baseline in the test's own folder, for the test to edit."""
    copy = tmp_path / "baseline.json"
    copy.write_text(made_baseline.read_text())
    return copy


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


def test_a_rise_beyond_the_tolerance_fails_too_saying_the_attack_may_be_weaker(tmp_path, baseline):
    content = json.loads(baseline.read_text())
    cell = min(content["cells"])
    content["cells"][cell]["robust_acc"] -= 0.1  # the code now gets more than the baseline: a weaker attack?
    baseline.write_text(json.dumps(content))
    outcome = gate(tmp_path)
    assert outcome.exit_code == 1
    text = " ".join(outcome.output.split())
    assert "robust_acc: rose by 0.1000 > 0.02: the attack may have become weaker" in text
    assert "update the baseline deliberately" in text


@pytest.mark.parametrize("tolerance", ["nan", "-0.1", "inf"])
def test_a_tolerance_that_is_not_a_finite_number_at_least_zero_is_refused(tmp_path, baseline, tolerance):
    outcome = gate(tmp_path, "--tolerance", tolerance)
    assert outcome.exit_code == 2 and "the tolerance must be a finite number >= 0" in outcome.output


@pytest.mark.parametrize(("key", "value"), [("tolerance", float("nan")), ("robust_acc", float("nan")),
                                            ("robust_acc", "0.4"), ("clean_acc", 1.5)])  # fmt: skip
def test_a_baseline_with_a_nan_or_a_string_is_refused_naming_it(tmp_path, baseline, key, value):
    content = json.loads(baseline.read_text())
    if key == "tolerance":
        content["tolerance"] = value
    else:
        content["cells"][min(content["cells"])][key] = value
    baseline.write_text(json.dumps(content))  # NaN as JSON's NaN literal, as Python writes it
    outcome = gate(tmp_path)
    assert outcome.exit_code == 2, outcome.output
    assert ("tolerance must be a finite number" if key == "tolerance" else f"has {key}=") in outcome.output


#: a suite whose model learns (clean accuracy near 1, PGD breaks most of it), in about a second
LEARNING_SUITE = SUITE.replace('"train.epochs" = 1', '"train.epochs" = 6\n"train.batch_size" = 16').replace(
    '"data.images_per_identity" = 6', '"data.images_per_identity" = 10'
)


def test_a_weaker_attack_is_caught_on_a_reused_results_folder(tmp_path, monkeypatch):
    """The baseline's records are in the results folder; the code then changes (PGD stops attacking). The gate
    recomputes every cell, so it sees the change instead of reading the old records back."""
    from afsl_bench.attacks.pgd import PGD

    (tmp_path / "ci.toml").write_text(LEARNING_SUITE)
    made = gate(tmp_path, "--update", "--suite", str(tmp_path / "ci.toml"))
    assert made.exit_code == 0, made.output
    assert gate(tmp_path).exit_code == 0, "the gate passes on its own baseline, reusing the folder"
    monkeypatch.setattr(PGD, "perturb", lambda self, model, x, y: x)
    outcome = gate(tmp_path)
    assert outcome.exit_code == 1, outcome.output
    assert "rose by" in " ".join(outcome.output.split())


def test_by_default_the_gate_evaluates_in_a_fresh_store(tmp_path, baseline, monkeypatch):
    runs = []
    import afsl_bench.report.gate as gate_module

    real = gate_module.run_sweep
    monkeypatch.setattr(gate_module, "run_sweep", lambda suite, options: runs.append(options) or real(suite, options))
    outcome = CliRunner().invoke(app, ["gate", "--baseline", str(baseline)])
    assert outcome.exit_code == 0, outcome.output
    (options,) = runs
    assert options.force and options.checks and not options.results_dir.exists(), "a temporary store, removed"
    assert "no new gradient-masking flag" in outcome.output


def test_ci_fails_when_a_reference_test_is_skipped(pytester, monkeypatch):
    """With AFSL_REQUIRE_REFERENCES set, as .ci/run sets it, a reference test that skips (its library
    missing) fails and says why; without it, it skips as on a developer's machine."""
    pytester.makeini("[pytest]\nmarkers =\n    reference: cross-checks\n")
    pytester.makepyfile("""
        import pytest

        @pytest.mark.reference
        def test_against_a_library():
            pytest.importorskip("a_library_that_is_not_installed")
    """)
    monkeypatch.delenv("AFSL_REQUIRE_REFERENCES", raising=False)
    pytester.runpytest("-p", "_require_references").assert_outcomes(skipped=1)
    monkeypatch.setenv("AFSL_REQUIRE_REFERENCES", "1")
    result = pytester.runpytest("-p", "_require_references")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*reference test skipped while AFSL_REQUIRE_REFERENCES is set*a_library*"])
