"""The committed suites that compare defenses use what the committed tuning chose on validation data
(results/tuning/tuning.json, written by `afsl-bench tune suites/tuning.toml`): one head for every defense and
each defense's chosen loss weights. A changed tuning or suite without the other fails here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from afsl_bench.defenses import DEFENSES
from afsl_bench.report.leaderboard.paper import is_ablated
from afsl_bench.runner.describe import changed
from afsl_bench.runner.sweep import load_suite

ROOT = Path(__file__).resolve().parent.parent

#: defenses the tuning does not cover, and where a suite may use them
UNTUNED = {
    "smoothing": "the smoothing defense only enters the certified section (L2 cells): its sigma is the "
    "certificate's noise level (Cohen et al. 2019), not a loss weight chosen on validation",
}


@pytest.mark.parametrize("suite", ["suites/paper.toml", "suites/leaderboard.toml"])
def test_compared_defenses_use_the_tuned_head_and_weights(suite):
    choice = json.loads((ROOT / "results/tuning/tuning.json").read_text())["choice"]["tiny-cnn"]
    chosen = choice["heads"][choice["head"]]["defenses"]
    for cell in load_suite(ROOT / suite).cells:
        spec = cell.to_json()
        assert spec["detector"]["params"]["head"] == choice["head"], cell.cell_id
        defense = spec["defense"]
        if defense["name"] in UNTUNED:
            assert spec["attack"]["params"].get("norm") == "l2", f"{cell.cell_id}: {UNTUNED[defense['name']]}"
        elif not is_ablated(defense["name"], defense["params"]):
            assert changed(DEFENSES, defense).strip(" ()") == chosen[defense["name"]]["params"], cell.cell_id
