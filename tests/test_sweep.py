"""Sweeps: a suite file is validated whole before anything runs (errors name the line and the valid
choices); cells run once, reruns skip them, a failing cell is recorded and the others still run."""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from afsl_bench.cli import app
from afsl_bench.core.errors import ConfigError
from afsl_bench.runner.cell import RunOptions
from afsl_bench.runner.sweep import load_suite, plan_status, run_sweep

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL = """
[set]
"data.n_identities" = 20
"data.images_per_identity" = 6
"data.resolution" = 32
"train.epochs" = 1
"""


def suite_file(tmp_path: Path, body: str, extra: str = SMALL) -> Path:
    path = tmp_path / "suite.toml"
    path.write_text(textwrap.dedent(body) + extra)
    return path


GOOD = """
[sweep]
detectors = ["tiny-cnn"]
defenses = ["none", "at"]
attacks = ["pgd", "jpeg"]
data = ["synthetic"]
eps = ["4/255", "8/255"]
"""


def test_suite_crosses_its_lists_and_runs_a_distortion_once_per_eps_list(tmp_path):
    suite = load_suite(suite_file(tmp_path, GOOD))
    # 2 defenses x (pgd at 2 budgets + jpeg once): eps does not apply to a distortion
    assert len(suite.cells) == 6
    assert len({c.cell_id for c in suite.cells}) == 6
    assert len({c.training.train_id for c in suite.cells}) == 2


@pytest.mark.parametrize("body, words", [
    ("""
     [sweep]
     detectors = ["tiny-cnn"]
     defenses = ["none", "afls"]
     attacks = ["pgd"]
     data = ["synthetic"]
     """, ["line 4", "Did you mean 'afsl'?", "Valid defenses"]),
    ("""
     [sweep]
     detectors = ["tiny-cnn"]
     defenses = ["none"]
     attacks = ["apgd"]
     data = ["synthetic"]

     [attack.apgd]
     stepz = 20
     """, ["line 9", "no parameter 'stepz'", "Did you mean 'steps'?"]),
    ("""
     [sweep]
     detector = ["tiny-cnn"]
     """, ["line 3", "unknown [sweep] key 'detector'", "Did you mean 'detectors'?"]),
    ("""
     [sweeps]
     detectors = ["tiny-cnn"]
     """, ["unknown section [sweeps]", "Did you mean 'sweep'?"]),
    ("""
     [sweep]
     detectors = ["tiny-cnn"]
     """, ["missing defenses, attacks, data"]),
    ("""
     [sweep
     """, ["not valid TOML"]),
    ("""
     [[sweep]]
     detectors = ["tiny-cnn"]
     defenses = ["none"]
     attacks = ["pgd"]
     data = ["synthetic"]

     [[sweep]]
     detectors = ["tiny-cnn"]
     defenses = ["none", {name = "afsl", use_asll = false}]
     attacks = ["pgd"]
     data = ["synthetic"]
     """, ["line 10", "no parameter 'use_asll'", "Did you mean 'use_asl'?"]),
    ("""
     [sweep]
     detectors = ["tiny-cnn"]
     defenses = [{use_asl = false}]
     attacks = ["pgd"]
     data = ["synthetic"]
     """, ["needs a name"]),
    ("""
     [sweep]
     detectors = ["tiny-cnn"]
     defenses = ["none"]
     attacks = ["pgd"]
     data = ["synthetic"]

     [eval.synthetic]
     samples = 0
     """, ["eval.samples=0", "positive number"]),
])
def test_a_bad_suite_fails_before_anything_runs_naming_the_line(body, words, tmp_path):
    with pytest.raises(ConfigError) as err:
        load_suite(suite_file(tmp_path, body))
    for word in words:
        assert word in str(err.value), str(err.value)


def test_inline_entries_and_several_grids_make_one_deduplicated_suite(tmp_path):
    suite = load_suite(suite_file(tmp_path, """
        [[sweep]]
        detectors = ["tiny-cnn"]
        defenses = ["none", "afsl", {name = "afsl", use_asl = false}]
        attacks = ["pgd"]
        data = ["synthetic"]

        [[sweep]]
        detectors = ["tiny-cnn"]
        defenses = ["none"]
        attacks = ["pgd", {name = "transfer", surrogate_detector = "meso4"}]
        data = ["synthetic"]

        [eval.synthetic]
        samples = 50
    """))
    specs = [c.to_json() for c in suite.cells]
    assert len(specs) == 4  # none x pgd is in both grids and runs once
    afsl = [s["defense"]["params"]["use_asl"] for s in specs if s["defense"]["name"] == "afsl"]
    assert sorted(afsl) == [False, True]
    (transfer,) = [s for s in specs if s["attack"]["name"] == "transfer"]
    assert transfer["attack"]["params"]["surrogate_detector"] == "meso4"
    assert all(s["eval_data"]["params"]["samples"] == 50 for s in specs)


def test_eval_samples_is_a_fixed_subset_of_the_test_split(tmp_path):
    from afsl_bench.runner.cell import evaluation_set
    from afsl_bench.runner.plan import load_dataset, plan_cell

    small = ["data.n_identities=20", "data.images_per_identity=6", "data.resolution=32"]
    full = plan_cell("tiny-cnn", "none", "pgd", "synthetic", overrides=small)
    assert "samples" not in full.to_json()["eval_data"]["params"]  # unset: full-split cells keep their ids
    bundle = load_dataset(full.training.train_data)
    cells = [plan_cell("tiny-cnn", "none", a, "synthetic", None, [*small, "eval.samples=10"], s)
             for a, s in (("pgd", 0), ("fgsm", 1))]
    picked = [evaluation_set(c, c.training.train_data, bundle).test.sample_ids for c in cells]
    assert len(picked[0]) == 10 and picked[0] == picked[1]  # every cell and seed sees the same images
    assert set(picked[0]) <= set(bundle.test.sample_ids) and len(set(picked[0])) == 10
    assert evaluation_set(full, full.training.train_data, bundle).test is bundle.test


def test_sweep_runs_once_skips_finished_cells_and_records_a_failing_cell(tmp_path):
    body = """
    [sweep]
    detectors = ["tiny-cnn"]
    defenses = ["none"]
    attacks = ["pgd", "fgsm"]
    data = ["synthetic"]
    eval = ["synthetic", "folder"]

    [eval.folder]
    root = "/no/such/folder"
    """
    suite = load_suite(suite_file(tmp_path, body))
    options = RunOptions(results_dir=tmp_path / "results", device="cpu", checks=False)
    first = run_sweep(suite, options)
    assert (len(first.done), len(first.cached), len(first.failed)) == (2, 0, 2)
    failed = json.loads((tmp_path / "results" / "records" / f"{first.failed[0]}.json").read_text())
    assert failed["status"] == "failed" and "is not a folder" in failed["error"]["message"]
    assert "is not a folder" in first.errors[first.failed[0]], "the reason, for the progress line to print"
    assert len(list((tmp_path / "results" / "checkpoints").glob("*.pt"))) == 1, "one model, trained once"

    cached, todo = plan_status(suite, tmp_path / "results")
    assert {c.cell_id for c in cached} == set(first.done) and {c.cell_id for c in todo} == set(first.failed)
    again = run_sweep(suite, options)
    assert sorted(again.cached) == sorted(first.done) and sorted(again.failed) == sorted(first.failed)
    assert not again.done


def test_cli_sweep_dry_run_and_exit_code(tmp_path):
    path = suite_file(tmp_path, GOOD)
    results = tmp_path / "results"
    dry = CliRunner().invoke(app, ["sweep", str(path), "--dry-run", "--results-dir", str(results)])
    assert dry.exit_code == 0, dry.output
    assert "6 cells, 0 cached, 6 to run" in dry.output
    assert not results.exists(), "a dry run writes nothing"
    bad = CliRunner().invoke(app, ["sweep", str(tmp_path / "nope.toml")])
    assert bad.exit_code == 2 and "does not exist" in " ".join(bad.output.split())


KILL_SUITE = """
[sweep]
detectors = ["tiny-cnn"]
defenses = ["none", "at", "trades"]
attacks = ["pgd", "fgsm", "apgd"]
data = ["synthetic"]

[set]
"data.n_identities" = 30
"data.images_per_identity" = 6
"data.resolution" = 32
"train.epochs" = 2
"""


def test_a_sweep_killed_midway_loses_nothing_and_the_rerun_retrains_nothing(tmp_path):
    """SIGKILL (no cleanup runs) after a few cells; the rerun finishes the rest from the caches."""
    import os
    import signal
    import subprocess
    import sys
    import time

    path = tmp_path / "kill.toml"
    path.write_text(KILL_SUITE)
    results = tmp_path / "results"
    command = [sys.executable, "-m", "afsl_bench.cli", "sweep", str(path), "--results-dir", str(results)]
    command.append("--no-checks")  # the probes add time, nothing to what a kill can lose
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    records = results / "records"
    deadline = time.monotonic() + 300
    while len(list(records.glob("*.json"))) < 2 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished_at_kill = {p.name for p in records.glob("*.json")}
    assert 2 <= len(finished_at_kill) < 9, "the kill must land midway"
    checkpoints = {  # finished models (a partial one, of an interrupted training, is resumed instead)
        p.name: p.stat().st_mtime_ns
        for p in (results / "checkpoints").glob("*.pt")
        if not p.name.endswith(".partial.pt")
    }

    rerun = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{9 - len(finished_at_kill)} run, {len(finished_at_kill)} cached, 0 failed" in rerun.stdout
    loaded = [json.loads(p.read_text()) for p in records.glob("*.json")]
    assert len(loaded) == 9 and all(r["status"] == "ok" for r in loaded)
    for name, mtime in checkpoints.items():  # a finished model is loaded, never trained again
        assert (results / "checkpoints" / name).stat().st_mtime_ns == mtime, name
    assert len(list((results / "checkpoints").glob("*.pt"))) == 3


@pytest.mark.parametrize("seeds", ['["zero"]', "[1.5, 1.9]", "[true]"])
def test_seeds_must_be_whole_numbers(tmp_path, seeds):
    from afsl_bench.core.errors import ConfigError
    from afsl_bench.runner.sweep import load_suite

    suite = tmp_path / "s.toml"
    suite.write_text(f'[sweep]\ndetectors = ["tiny-cnn"]\ndefenses = ["none"]\nattacks = ["pgd"]\n'
                     f'data = ["synthetic"]\nseeds = {seeds}\n')  # fmt: skip
    with pytest.raises(ConfigError, match="seeds must be whole numbers"):
        load_suite(suite)


def test_ctrl_c_in_a_sweep_says_how_many_cells_were_kept(tmp_path, monkeypatch):
    from types import SimpleNamespace

    import afsl_bench.runner.sweep as sweep_module

    path = suite_file(tmp_path, GOOD)

    def interrupted(suite, options, on_cell, executor):
        outcome = SimpleNamespace(done=[suite.cells[0].cell_id], cached=[], failed=[], errors={})
        on_cell(suite.cells[0], "done", outcome)
        raise KeyboardInterrupt

    monkeypatch.setattr(sweep_module, "run_sweep", interrupted)
    result = CliRunner().invoke(app, ["sweep", str(path), "--results-dir", str(tmp_path / "results")])
    assert result.exit_code == 130
    assert "interrupted: 1 of 6 cells finished and kept" in " ".join(result.output.split())


def test_an_unquoted_dotted_key_under_set_names_the_line_and_the_fix(tmp_path):
    from afsl_bench.core.errors import ConfigError

    path = suite_file(tmp_path, GOOD, extra=SMALL.replace("[set]", "[set]\ndata.n_identities = 40", 1))
    line = next(n for n, text in enumerate(path.read_text().splitlines(), 1) if text.startswith("data.n_identities"))
    with pytest.raises(ConfigError, match=rf'line {line}: .*quote the dotted key, "data.n_identities"'):
        load_suite(path)


def test_a_dry_run_finds_a_typo_in_a_data_location(tmp_path):
    body = GOOD.replace('data = ["synthetic"]', 'data = ["synthetic"]\neval = ["folder"]') + '\n[eval.folder]\nroot = "/no/such/faces"\n'
    result = CliRunner().invoke(app, ["sweep", str(suite_file(tmp_path, body)), "--dry-run",
                                      "--results-dir", str(tmp_path / "results")])  # fmt: skip
    assert result.exit_code == 2
    assert "eval.root=/no/such/faces (folder): 6 cells" in " ".join(result.output.split())


CERTIFY = """
[sweep]
detectors = ["tiny-cnn"]
defenses = ["smoothing"]
attacks = ["fgsm"]
data = ["synthetic"]

[[certify]]
detectors = ["tiny-cnn"]
defenses = ["none", {name = "smoothing", sigma = 0.5}, "smoothing"]
data = ["synthetic"]
n0 = 10
n = 50
samples = 8
"""


def test_a_certify_grid_plans_one_certification_per_model_and_sigma(tmp_path):
    """Each model is certified at its smoothing defense's own sigma unless the grid names sigmas; the grid's
    settings reach CERTIFY; the [set] entries that shape a model apply, the attack's do not."""
    plan = load_suite(suite_file(tmp_path, CERTIFY, SMALL + '"attack.eps" = "4/255"\n'))
    got = sorted((job.training.defense.name, job.settings.sigma) for job in plan.certifications)
    assert got == [("none", 0.25), ("smoothing", 0.25), ("smoothing", 0.5)]
    job = plan.certifications[0]
    assert (job.settings.n0, job.settings.n, job.settings.samples) == (10, 50, 8)
    assert job.training.train_data.params["resolution"] == 32 and job.training.train.params["epochs"] == 1
    smoothing = {j.training.train_id for j in plan.certifications if j.training.defense.name == "smoothing"}
    assert len(smoothing) == 2, "sigma 0.25 and 0.5 train two models"
    crossed = load_suite(suite_file(tmp_path, CERTIFY.replace("samples = 8", "samples = 8\nsigma = [0.25, 0.5]")))
    assert len(crossed.certifications) == 6


@pytest.mark.parametrize(("edit", "words"), [
    (("n = 50", "n = 50.5"), ["[certify] n must be a whole number", "50.5"]),
    (("n = 50", "n_samples = 50"), ["line 13", "unknown [certify] key 'n_samples'", "Valid:"]),
    (('data = ["synthetic"]\nn0', "n0"), ["[certify] is missing data"]),
    (("samples = 8", "samples = 8\nsigma = [0]"), ["sigma=0.0", "finite number > 0"]),
    (("samples = 8", "samples = 8\nseeds = [0.5]"), ["[certify] seeds must be whole numbers"]),
])
def test_a_bad_certify_grid_fails_before_anything_runs(edit, words, tmp_path):
    with pytest.raises(ConfigError) as err:
        load_suite(suite_file(tmp_path, CERTIFY.replace(*edit)))
    for word in words:
        assert word in str(err.value), str(err.value)


def test_a_sweep_certifies_after_its_cells_and_a_rerun_certifies_nothing(tmp_path):
    path = suite_file(tmp_path, CERTIFY.replace('"none", {name = "smoothing", sigma = 0.5}, ', ""))
    results = tmp_path / "results"
    args = ["sweep", str(path), "--results-dir", str(results), "--device", "cpu"]
    dry = CliRunner().invoke(app, [*args, "--dry-run"])
    assert dry.exit_code == 0 and "1 certifications, 1 to run" in said(dry.output), dry.output
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "suite: 1 certified, 0 stored before" in said(first.output)
    assert re.search(r"\[\d\d:\d\d:\d\d\] \[1/1\] certify", first.output), "time-stamped, as a cell's line"
    (stored,) = (results / "certified").glob("*.json")
    result = json.loads(stored.read_text())
    assert result["n_samples"] == 8 and result["spec"]["certify"]["n"] == 50
    assert len(list((results / "checkpoints").glob("*.pt"))) == 1, "the cell's model is the one certified"
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0 and "suite: 0 certified, 1 stored before" in said(again.output), again.output


def said(output: str) -> str:
    """The words of the output, whatever the terminal's width wrapped (table borders dropped)."""
    return " ".join(re.sub("[─│┃━┏┓┗┛┡┩└┘┌┐╭╮╰╯]", " ", output).split())
