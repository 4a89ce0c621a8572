"""What the CLI shows: budgets as k/255 and only budgets, the training settings listed, flags without a
misleading value placeholder (issue 13, item 8)."""

import json
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
    square = next(c for c in listing.entry("attacks")["components"] if c["name"] == "square")
    assert "p_init=0.8" in square["params"] and "eps=8/255" in square["params"]
    assert invoke("list", "attacks", "--params").exit_code == 0


def test_the_training_settings_are_listed_like_components() -> None:
    outcome = invoke("list", "train")
    assert outcome.exit_code == 0 and "epochs" in outcome.output  # longer names may be cut at narrow widths
    names = [row[0] for row in listing.entry("train")["settings"]]
    assert {"epochs", "batch_size", "lr", "select_on", "robust_val_samples", "robust_val_steps",
            "robust_val_eps"} <= set(names)


def test_flags_take_no_value_and_say_so() -> None:
    text = CliRunner().invoke(app, ["run", "--help"], env={"COLUMNS": "300"}).output  # help reads it when drawn
    for flag in ("--json", "--force", "--checks"):
        line = next(line for line in text.splitlines() if flag in line)
        assert "<bool>" not in line, line


@pytest.mark.parametrize("kind", listing.KINDS)
def test_the_listing_manifest_is_what_the_registries_say(kind) -> None:
    """``afsl-bench list`` reads cli/listing.json to start without torch; it must not go stale: after adding
    or changing a component, run ``python -m afsl_bench.cli.listing``."""
    stored = json.loads(listing.MANIFEST.read_text())[kind]
    assert stored == listing.live(kind), "cli/listing.json is stale: run python -m afsl_bench.cli.listing"


def test_list_starts_without_importing_torch() -> None:
    code = "import sys; from afsl_bench.cli import app; sys.argv = ['afsl-bench', 'list', 'attacks']\n"
    code += "try:\n    app()\nexcept SystemExit:\n    pass\nprint('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip().endswith("False") and "apgd" in result.stdout


def test_cell_labels_carry_non_default_training_settings_and_the_seed() -> None:
    from afsl_bench.run.describe import describe_spec
    from afsl_bench.run.plan import plan_cell

    spec = plan_cell("tiny-cnn", "at", "pgd", "synthetic", overrides=["train.epochs=4", "train.lr=1e-3"], seed=2)
    line = describe_spec(spec.to_json())
    assert line.startswith("tiny-cnn + at (train: epochs=4, lr=0.001) vs pgd 8/255") and line.endswith("seed 2")
    assert "(train:" not in describe_spec(plan_cell("tiny-cnn", "at", "pgd", "synthetic").to_json())
