"""What the CLI shows: budgets as k/255 and only budgets, the training settings listed, flags without a
misleading value placeholder."""

import json
import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from afsl_bench.cli import app, listing
from afsl_bench.cli.render import show


def invoke(*args: str):
    return CliRunner().invoke(app, list(args))


def test_only_budgets_are_written_as_fractions_of_255() -> None:
    assert show(8 / 255, "eps") == "8/255" and show(2 / 255, "step_size") == "2/255"
    assert show(0.8, "p_init") == "0.8" and show(0.2, "val_fraction") == "0.2"
    square = next(c for c in listing.live("attacks")["components"] if c["name"] == "square")
    assert "p_init=0.8" in square["params"] and "eps=8/255" in square["params"]
    assert invoke("list", "attacks", "--params").exit_code == 0


def test_the_training_settings_are_listed_like_components() -> None:
    outcome = invoke("list", "train")
    assert outcome.exit_code == 0 and "epochs" in outcome.output  # longer names may be cut at narrow widths
    names = [row[0] for row in listing.live("train")["settings"]]
    assert {"epochs", "batch_size", "lr", "select_on", "robust_val_samples", "robust_val_steps",
            "robust_val_eps"} <= set(names)


def test_flags_take_no_value_and_say_so() -> None:
    text = CliRunner().invoke(app, ["run", "--help"], env={"COLUMNS": "300"}).output  # help reads it when drawn
    for flag in ("--json", "--force", "--checks"):
        line = next(line for line in text.splitlines() if flag in line)
        assert "<bool>" not in line, line


@pytest.fixture
def listing_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("AFSL_BENCH_CACHE", str(tmp_path))
    return tmp_path


def list_in_a_fresh_process(cache) -> tuple[bool, str]:
    """``afsl-bench list attacks`` in a new interpreter: (was torch imported, what it printed)."""
    code = "import sys; from afsl_bench.cli import app; sys.argv = ['afsl-bench', 'list', 'attacks']\n"
    code += "try:\n    app()\nexcept SystemExit:\n    pass\nprint('torch' in sys.modules)"
    env = {**os.environ, "AFSL_BENCH_CACHE": str(cache), "COLUMNS": "200"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    return result.stdout.strip().endswith("True"), result.stdout


def test_list_shows_the_registries_and_later_lists_start_without_torch(listing_cache) -> None:
    """The first ``list`` reads the live registries and remembers them for this version of the code; the next
    one prints the same without importing torch. Nothing is committed, so nothing can go stale."""
    first_torch, first = list_in_a_fresh_process(listing_cache)
    again_torch, again = list_in_a_fresh_process(listing_cache)
    assert first_torch and not again_torch
    assert "apgd" in again and again.replace("True", "False") == first.replace("True", "False")
    (cached,) = listing_cache.glob("listing-*.json")
    assert {kind: listing.live(kind) for kind in listing.KINDS} == json.loads(cached.read_text())


def test_a_code_change_gives_a_new_listing_cache(listing_cache, monkeypatch, tmp_path) -> None:
    before = listing.cache_path()
    component = tmp_path / "pkg" / "attacks" / "new_attack.py"
    component.parent.mkdir(parents=True)
    component.write_text("# a new component\n")
    monkeypatch.setattr(listing, "PACKAGE", tmp_path / "pkg")
    changed = listing.cache_path()
    component.write_text("# the component, edited\n")
    assert len({before, changed, listing.cache_path()}) == 3


def test_an_unwritable_cache_only_costs_the_speed_up(tmp_path, monkeypatch) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    monkeypatch.setenv("AFSL_BENCH_CACHE", str(blocker))
    assert listing.entry("defenses") == listing.live("defenses")


def test_cell_labels_carry_non_default_training_settings_and_the_seed() -> None:
    from afsl_bench.runner.describe import describe_spec
    from afsl_bench.runner.plan import plan_cell

    spec = plan_cell("tiny-cnn", "at", "pgd", "synthetic", overrides=["train.epochs=4", "train.lr=1e-3"], seed=2)
    line = describe_spec(spec.to_json())
    assert line.startswith("tiny-cnn + at (train: epochs=4, lr=0.001) vs pgd 8/255") and line.endswith("seed 2")
    assert "(train:" not in describe_spec(plan_cell("tiny-cnn", "at", "pgd", "synthetic").to_json())
