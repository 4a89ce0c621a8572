"""`afsl-bench` as a user meets it: a run, its record, the caches, and one-line errors for bad input."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from typer.testing import CliRunner

from afsl_bench.cli import app

SMALL = [
    "--set",
    "data.n_identities=20",
    "--set",
    "data.images_per_identity=6",
    "--set",
    "data.resolution=32",
    "--set",
    "train.epochs=1",
    "--set",
    "train.robust_val_samples=32",
    "--set",
    "train.robust_val_steps=2",
]
#: adversarial training at 2 PGD steps, not the default 10: the CLI is under test here, not the defense
AT = ["--defense", "at", "--set", "defense.steps=2"]


def invoke(*args: str):
    return CliRunner().invoke(app, list(args))


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    return tmp_path_factory.mktemp("results")


@pytest.fixture(scope="module")
def first_record(results):
    outcome = invoke(
        "run", *AT, "--attack", "pgd", *SMALL, "--results-dir", str(results), "--json"
    )
    assert outcome.exit_code == 0, outcome.output
    return json.loads(outcome.stdout)


def test_run_writes_a_complete_record(first_record, results) -> None:
    record = first_record
    for key in ("cell_id", "spec", "env", "timings", "metrics", "status"):
        assert key in record
    for key in ("clean_acc", "robust_acc", "clean_auc", "robust_auc", "asr", "clean_eer", "robust_ap"):
        assert 0.0 <= record["metrics"][key] <= 1.0
    assert record["status"] == "ok" and record["spec"]["attack"]["params"]["eps"] == pytest.approx(8 / 255)
    assert record["perturbation"]["linf_max"] <= 8 / 255 + 1e-6
    assert 0.0 <= record["training"]["val_metrics"]["val_robust_acc"] <= 1.0  # the kept model under APGD-CE
    on_disk = json.loads((results / "records" / f"{record['cell_id']}.json").read_text())
    assert on_disk["metrics"] == record["metrics"]
    assert (results / "records" / f"{record['cell_id']}.parquet").exists()


def test_same_cell_is_not_recomputed_and_another_attack_reuses_the_checkpoint(first_record, results) -> None:
    again = invoke(
        "run", *AT, "--attack", "pgd", *SMALL, "--results-dir", str(results), "--json"
    )
    assert json.loads(again.stdout)["created"] == first_record["created"]
    other = invoke(
        "run", *AT, "--attack", "fgsm", *SMALL, "--results-dir", str(results), "--json"
    )
    record = json.loads(other.stdout)
    assert record["cell_id"] != first_record["cell_id"] and record["train_id"] == first_record["train_id"]
    assert record["training"]["cached"] is True


def test_a_forced_rerun_reproduces_the_record_exactly(first_record, tmp_path, monkeypatch) -> None:
    # same spec and seed in a fresh store: retrained from scratch, identical metrics (weights included)
    monkeypatch.delenv("AFSL_CHECKPOINT_CACHE")  # the session's shared checkpoints would spare the training
    outcome = invoke("run", *AT, "--attack", "pgd", *SMALL, "--results-dir", str(tmp_path), "--json")
    record = json.loads(outcome.stdout)
    assert record["training"]["cached"] is False
    assert record["metrics"] == first_record["metrics"]
    assert record["training"]["val_metrics"] == first_record["training"]["val_metrics"]


def test_table_output_names_the_cell(first_record, results) -> None:
    outcome = invoke("run", *AT, "--attack", "pgd", *SMALL, "--results-dir", str(results))
    assert (
        outcome.exit_code == 0 and "accuracy" in outcome.stdout and first_record["cell_id"] in outcome.stdout
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--attack", "pgdd"], "unknown attack 'pgdd'. Did you mean 'pgd'?"),
        (["--defense", "afls"], "Did you mean 'afsl'?"),
        (["--set", "attack.epss=0.1"], "attack 'pgd' has no parameter 'epss'. Did you mean 'eps'?"),
        (["--set", "attack.eps=lots"], "--set attack.eps=lots: 'lots' is not a number"),
        (["--set", "attack.eps=2"], "eps=2 is outside (0, 1]"),
        (["--set", "attack.eps=0"], "eps=0 is outside (0, 1]"),
        (["--set", "eps=0.1"], "must look like KIND.KEY=VALUE"),
        (
            ["--dataset", "folder", "--set", "data.root=/no/such/dir"],
            "data.root '/no/such/dir' is not a folder",
        ),
        (["--set", "detector.head=foo"], "'foo' is not one of linear, cosine, cosine-pair"),
        (["--attack", "cw", "--set", "attack.norm=linf"], "norm='linf' is not supported here; choose one of l2"),
        (["--attack", "square", "--set", "attack.queries=0"], "queries must be an integer >= 1"),
        (["--attack", "nes", "--set", "attack.samples=3"], "samples"),
        (["--attack", "jpeg", "--set", "attack.severity=6"], "severity"),
        (["--attack", "transfer", "--set", "attack.inner=square"], "inner='square' needs no gradients"),
        (["--attack", "pgd", "--set", "attack.backend=art"], "(set early_stop=false)"),
        (["--device", "tpu"], "--device tpu: choose one of auto, cpu, cuda"),
    ],
)
def test_bad_input_is_one_actionable_line_and_exit_2(args, message, tmp_path) -> None:
    outcome = invoke("run", *args, "--results-dir", str(tmp_path))
    assert outcome.exit_code == 2
    assert message in outcome.output.replace("\n", " ") or message in outcome.output
    assert "Traceback" not in outcome.output
    assert not (tmp_path / "records").exists()


def test_list_shows_every_registry() -> None:
    for kind, name in (
        ("attacks", "apgd"),
        ("defenses", "afsl"),
        ("detectors", "tiny-cnn"),
        ("datasets", "synthetic"),
    ):
        outcome = invoke("list", kind)
        assert outcome.exit_code == 0 and name in outcome.stdout
    assert invoke("list", "attack").exit_code == 0  # singular works too
    assert invoke("list", "atacks").exit_code == 2


def test_ctrl_c_leaves_no_ok_record_and_the_rerun_resumes_training(tmp_path) -> None:
    args = [
        sys.executable,
        "-m",
        "afsl_bench.cli",
        "run",
        "--defense",
        "none",
        "--attack",
        "fgsm",
        *SMALL,
        "--set",
        "train.epochs=4",
        "--set",
        "data.n_identities=40",
        "--results-dir",
        str(tmp_path),
    ]
    # a shell that started us in the background without job control ignores SIGINT, and a child inherits
    # that; the default disposition while spawning lets Python in the child install its KeyboardInterrupt
    previous = signal.signal(signal.SIGINT, signal.SIG_DFL)
    env = {k: v for k, v in os.environ.items() if k != "AFSL_CHECKPOINT_CACHE"}  # it must train, not copy
    try:
        process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    finally:
        signal.signal(signal.SIGINT, previous)
    deadline = time.time() + 120
    while not list((tmp_path / "checkpoints").glob("*.partial.pt")) and time.time() < deadline:
        assert process.poll() is None, process.communicate()
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "interrupted" in stderr and "Traceback" not in stderr
    assert not list((tmp_path / "records").glob("*.json"))
    rerun = subprocess.run([*args, "--json"], capture_output=True, text=True, timeout=300, env=env, check=False)
    assert rerun.returncode == 0, rerun.stderr
    assert json.loads(rerun.stdout)["training"]["resumed_after_epoch"] >= 1


def test_a_long_error_stays_on_one_line_on_a_narrow_terminal(tmp_path) -> None:
    # rich wraps at the console width (80 columns when not on a terminal, here 40): the command an error
    # quotes must stay on one line, copyable
    baseline = tmp_path / ("a-rather-long-folder-name-" * 3) / "baseline.json"
    command = [sys.executable, "-m", "afsl_bench.cli", "gate", "--baseline", str(baseline)]
    env = {**os.environ, "COLUMNS": "40"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env, check=False)
    assert done.returncode == 2, done.stderr
    line = f"error: baseline '{baseline}' does not exist; create it with: afsl-bench gate --update"
    assert line in done.stderr.splitlines()


def test_brackets_in_an_error_are_printed_verbatim(tmp_path) -> None:
    suite = tmp_path / "empty.toml"
    suite.write_text("")
    outcome = invoke("sweep", str(suite), "--dry-run", "--results-dir", str(tmp_path))
    assert outcome.exit_code == 2
    assert "a suite needs a [sweep] table (or [[sweep]] tables) with " in outcome.output


def test_prepare_and_run_share_the_one_set_parser() -> None:
    from afsl_bench.runner.plan import KINDS

    shown = " ".join(invoke("run", "--help").output.split())
    assert all(kind in shown for kind in KINDS)
    for bad in ("prepare ff++ --root . --set compression", "prepare ff++ --root . --set video.codec=x"):
        outcome = invoke(*bad.split())
        assert outcome.exit_code == 2 and "--set '" in outcome.output and "Traceback" not in outcome.output
