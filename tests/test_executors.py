"""Executors: a sweep run as Ray tasks writes the same records as the local run (same cells, identical
metrics); a Ray address with nothing behind it fails in seconds with a one-line error, not Ray's retries."""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

from afsl_bench.cli import app
from afsl_bench.core.errors import ConfigError
from afsl_bench.runner.cell import RunOptions
from afsl_bench.runner.executors import LocalExecutor, RayExecutor, check_reachable
from afsl_bench.runner.sweep import load_suite, run_sweep

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.usefixtures("one_thread")

SUITE = """
[sweep]
detectors = ["tiny-cnn"]
defenses = ["none", "at"]
attacks = ["pgd"]
data = ["synthetic"]
eps = ["4/255", "8/255"]
seeds = [0]

[set]
"data.n_identities" = 12
"data.images_per_identity" = 4
"data.resolution" = 32
"train.epochs" = 1
"""

NOWHERE = "127.0.0.1:1"  # nothing listens on port 1


def records(results: Path) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in (results / "records").glob("*.json")}


def test_ray_and_local_sweeps_write_identical_records(tmp_path, monkeypatch):
    monkeypatch.delenv("AFSL_CHECKPOINT_CACHE")  # each executor trains its own models
    (tmp_path / "suite.toml").write_text(SUITE)
    suite = load_suite(tmp_path / "suite.toml")
    assert len(suite.cells) == 4 and len({c.training.train_id for c in suite.cells}) == 2

    seconds, statuses = {}, {}
    for name, executor in [("local", LocalExecutor()), ("ray", RayExecutor(num_cpus=2))]:
        options = RunOptions(results_dir=tmp_path / name, device="cpu", checks=False)
        heard = statuses[name] = []
        tic = time.perf_counter()
        outcome = run_sweep(
            suite,
            options,
            lambda cell, status, _, heard=heard: heard.append((status, cell.training.train_id)),
            executor,
        )
        seconds[name] = time.perf_counter() - tic
        assert len(outcome.done) == 4 and not outcome.failed and not outcome.cached, name
    print(f"\nlocal sweep {seconds['local']:.1f} s, ray sweep {seconds['ray']:.1f} s (4 cells, 2 models)")

    local, ray = records(tmp_path / "local"), records(tmp_path / "ray")
    assert sorted(local) == sorted(ray) == sorted(c.cell_id for c in suite.cells)
    for cell_id, record in local.items():
        assert record["status"] == ray[cell_id]["status"] == "ok"
        assert record["metrics"] == ray[cell_id]["metrics"], cell_id
        assert record["per_method"] == ray[cell_id]["per_method"], cell_id
    for name, written in [("local", local), ("ray", ray)]:  # each model trained by one cell, loaded by one
        trained = sorted(r["train_id"] for r in written.values() if not r["training"]["cached"])
        assert trained == sorted({c.training.train_id for c in suite.cells}), name
    assert [status for status, _ in statuses["local"]] == ["running", "done"] * 4
    assert sorted(status for status, _ in statuses["ray"]) == ["done"] * 4 + ["running"] * 4
    assert most_running(statuses["ray"]) == 1, "two workers trained one model at once"
    assert most_running([(status, "any") for status, _ in statuses["ray"]]) == 2, "the models ran in parallel"


def most_running(heard: list[tuple[str, str]]) -> int:
    """The most cells of one model running at once, from (status, train_id) events."""
    running: Counter[str] = Counter()
    most = 0
    for status, train_id in heard:
        running[train_id] += 1 if status == "running" else -1
        most = max(most, running[train_id])
    return most


def test_an_unreachable_ray_address_is_a_clear_config_error(tmp_path):
    (tmp_path / "suite.toml").write_text(SUITE)
    suite = load_suite(tmp_path / "suite.toml")
    options = RunOptions(results_dir=tmp_path / "results", device="cpu", checks=False)
    with pytest.raises(
        ConfigError, match=r"cannot reach the Ray cluster at '127\.0\.0\.1:1'.*ray start --head"
    ):
        run_sweep(suite, options, executor=RayExecutor(NOWHERE))
    assert not (tmp_path / "results" / "records").exists(), "nothing ran"
    with pytest.raises(ConfigError, match="not a Ray address"):
        RayExecutor("head-node")


def test_a_server_that_is_not_ray_fails_fast_and_a_ray_cluster_passes():
    """Ray retries for minutes against a port that answers but is not Ray (a web server, the dashboard)."""
    web = http.server.HTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    threading.Thread(target=web.serve_forever, daemon=True).start()
    try:
        with pytest.raises(ConfigError, match="answers but is not a Ray cluster"):
            check_reachable(f"127.0.0.1:{web.server_port}")
    finally:
        web.shutdown()
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        check_reachable(ray.get_runtime_context().gcs_address)  # the head's GCS port: no error
    finally:
        ray.shutdown()


def test_cli_sweep_on_an_unreachable_ray_cluster_exits_2(tmp_path):
    (tmp_path / "suite.toml").write_text(SUITE)
    command = ["sweep", str(tmp_path / "suite.toml"), "--results-dir", str(tmp_path / "results")]
    result = CliRunner().invoke(app, [*command, "--executor", "ray", "--address", NOWHERE])
    assert result.exit_code == 2, result.output
    assert "cannot reach the Ray cluster at '127.0.0.1:1'" in " ".join(result.output.split())
    local = CliRunner().invoke(app, [*command, "--address", NOWHERE])
    assert local.exit_code == 2 and "add --executor ray" in " ".join(local.output.split())
