"""The leaderboard's "Paper reproduction" section: Khan et al.'s Table 2 and ablation (benchmark/report/leaderboard/paper.py)
rebuilt from the records present, our mean ± sd beside the paper's numbers, and an ordering that follows
the numbers."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from afsl_bench.attacks import ATTACKS
from afsl_bench.report import leaderboard as lb
from afsl_bench.report.leaderboard import paper
from afsl_bench.report.tables import tidy
from afsl_bench.runner.describe import labels
from afsl_bench.runner.sweep import load_suite
from afsl_bench.store.record import Record

ROOT = Path(__file__).resolve().parents[1]

SUITE = """
[[sweep]]
detectors = [{name = "tiny-cnn", head = "linear"}]  # one head for every defense, as suites/paper.toml
defenses = [
    "none", "at", "trades", {name = "trades", beta = 1.0}, "afsl", {name = "afsl", beta1 = 8.0},
    {name = "afsl", use_asl = false, use_srl = false}, {name = "afsl", use_srl = false},
]
attacks = ["pgd", "autoattack-binary"]
data = ["synthetic"]
seeds = [0, 1]
"""

#: (clean accuracy, PGD-10 accuracy) at seed 0 per defense label; seed 1 adds 2 points robust, takes 1 clean
NUMBERS = {
    "none": (0.95, 0.02),
    "at": (0.80, 0.40),
    "trades": (0.85, 0.45),
    "trades (beta=1.0)": (0.90, 0.30),
    "afsl": (0.92, 0.50),
    "afsl (beta1=8.0)": (0.91, 0.55),
    "afsl (use_asl=False, use_srl=False)": (0.93, 0.05),
    "afsl (use_srl=False)": (0.92, 0.48),
}


def fake_record(cell, numbers: dict[str, tuple[float, float]], video: bool = False) -> Record:
    spec = cell.to_json()
    clean, robust = numbers[labels(spec)["defense"]]
    seed = spec["seed"]
    clean, robust = clean - 0.01 * seed, robust + 0.02 * seed
    if spec["attack"]["name"] == "autoattack-binary":
        robust -= 0.01
    metrics = {"clean_acc": clean, "robust_acc": robust}
    metrics |= {"clean_auc": clean + 0.03, "robust_auc": robust + 0.03}
    if video:
        metrics |= {f"video_{k}": min(v + 0.01, 1.0) for k, v in metrics.items()}
    return lb.compact(
        Record.from_json({
            "cell_id": cell.cell_id, "train_id": cell.training.train_id, "status": "ok", "spec": spec,
            "metrics": metrics, "n_samples": 200, "n_attacked": 200,
            "timings": {"train_s": 1.0, "total_s": 2.0},
            "env": {"device": "cpu", "device_name": "x", "git_sha": "abc"}, "created": "2026-12-01T00:00:00Z",
        })
    )  # fmt: skip


@pytest.fixture(scope="module")
def cells(tmp_path_factory):
    suite = tmp_path_factory.mktemp("paper") / "paper.toml"
    suite.write_text(SUITE)
    return load_suite(suite).cells


def section(records: list[dict]) -> str:
    return lb.paper_reproduction(tidy(records))


def table(text: str, title: str) -> str:
    return text.split(f"**{title}")[1].split("\n\n")[1]


def row(text: str, label: str) -> str:
    (line,) = [line for line in text.splitlines() if line.startswith(f"| {label} |")]
    return line


def test_the_section_puts_the_papers_numbers_beside_ours_after_the_ranking(cells):
    records = [fake_record(c, NUMBERS) for c in cells]
    block = lb.render(records, "suites/paper.toml", {})
    assert block.index("### Ranking") < block.index("### Paper reproduction") < block.index("### White-box")
    text = section(records)
    main = table(text, "Table 2 analogue: tiny-cnn, synthetic -> synthetic, frame level")
    assert main.splitlines()[0] == (
        "| defense | clean AUC | PGD-10 AUC | clean acc | PGD-10 acc | autoattack-binary 8/255 acc | seeds "
        "| paper clean / PGD-10 AUC |"
    )
    # at: PGD-10 accuracy 40 and 42 over seeds 0 and 1 -> 41.0 ± 1.4; clean 80 and 79 -> 79.5 ± 0.7
    assert row(main, "at") == (
        "| at | 82.5 ± 0.7 | 44.0 ± 1.4 | 79.5 ± 0.7 | 41.0 ± 1.4 | 40.0 ± 1.4 | 2 | 78.4 / 73.5 |"
    )
    assert row(main, "none").endswith("| 91.5 / 1.0 |") and row(main, "afsl").endswith("| 89.8 / 80.8 |")
    assert "secondary source, indicative only" in text


def test_tuned_defenses_are_main_rows_and_ablation_variants_are_not(cells):
    text = section([fake_record(c, NUMBERS) for c in cells])
    main = table(text, "Table 2 analogue: tiny-cnn, synthetic -> synthetic, frame level")
    assert row(main, "trades (beta=1.0)").endswith("| 84.0 / 76.7 |")  # a tuned TRADES is TRADES's row
    assert row(main, "afsl (beta1=8.0)").endswith("| 89.8 / 80.8 |")
    assert "use_asl" not in main and "use_srl" not in main
    defenses = [line.split(" | ")[0][2:] for line in main.splitlines()[2:]]
    assert defenses == ["none", "at", "trades", "trades (beta=1.0)", "afsl", "afsl (beta1=8.0)"]


def test_the_ablation_table_holds_the_papers_three_variants_and_its_claim(cells):
    text = section([fake_record(c, NUMBERS) for c in cells])
    ablation = table(text, "Ablation: tiny-cnn, synthetic -> synthetic, frame level")
    variants = [line.split(" | ")[0][2:] for line in ablation.splitlines()[2:]]
    assert variants == [
        "L_dcl: afsl (use_asl=False, use_srl=False)", "L_dcl + L_asl: afsl (use_srl=False)",
        "L_dcl + L_asl + L_srl: afsl", "L_dcl + L_asl + L_srl: afsl (beta1=8.0)",
    ]  # fmt: skip
    assert row(ablation, "L_dcl: afsl (use_asl=False, use_srl=False)").split(" | ")[4] == "6.0 ± 1.4"
    assert paper.ABLATION_CLAIM in text
    assert "L_dcl + L_asl: afsl (use_srl=False) 49.0 > L_dcl: afsl (use_asl=False, use_srl=False) 6.0" in text


def test_the_ordering_sentence_follows_the_numbers(cells):
    ordering = (
        "by PGD-10 accuracy: afsl (beta1=8.0) 56.0 > afsl 51.0 > trades 46.0 > at 41.0 > "
        "trades (beta=1.0) 31.0 > none 3.0"
    )
    assert ordering in section([fake_record(c, NUMBERS) for c in cells])
    swapped = NUMBERS | {"at": NUMBERS["afsl"], "afsl": NUMBERS["at"]}
    text = section([fake_record(c, swapped) for c in cells])
    assert ordering not in text
    assert "by PGD-10 accuracy: afsl (beta1=8.0) 56.0 > at 51.0 > trades 46.0 > afsl 41.0 >" in text
    assert "The paper reports afsl > trades > at > none by PGD-10 AUC; that ordering is a hypothesis" in text


def test_video_level_tables_only_when_the_records_have_video_metrics(cells):
    assert "video level" not in section([fake_record(c, NUMBERS) for c in cells])
    text = section([fake_record(c, NUMBERS, video=True) for c in cells])
    video = table(text, "Table 2 analogue: tiny-cnn, synthetic -> synthetic, video level")
    assert row(video, "at").startswith("| at | 83.5 ± 0.7 | 45.0 ± 1.4 |")


def test_no_section_without_pgd10_records(cells):
    records = [fake_record(c, NUMBERS) for c in cells if c.attack.name != "pgd"]
    assert section(records) == ""
    assert "Paper reproduction" not in lb.render(records, "suites/paper.toml", {})


def test_pgd10_is_pgd_at_its_defaults():
    assert ATTACKS.params_of("pgd")["steps"].default == 10 and lb.pgd10_label() == "pgd 8/255"


def test_settings_state_the_training_attack_and_epoch_selection_from_the_records(cells):
    records = [fake_record(c, NUMBERS) for c in cells]
    text = lb.settings(records, tidy(records), "suites/paper.toml")
    assert "the last epoch is kept; afsl / at / trades train against PGD-10 (step 2/255) at L-inf 8/255" in (
        text
    )
    for r in records:
        r.spec["train"]["params"]["select_on"] = "robust"
        if "steps" in r.spec["defense"]["params"]:
            r.spec["defense"]["params"]["steps"] = 4
    text = lb.settings(records, tidy(records), "suites/paper.toml")
    assert "best on robust validation accuracy (APGD-CE, 20 steps at L-inf 8/255 on 512 validation" in text
    assert "train against PGD-4 (step 2/255)" in text


def test_ties_as_shown_are_written_as_equal():
    assert lb.ranked(pd.Series({"a": 0.35, "b": 0.40, "c": 0.3499})) == "b 40.0 > a 35.0 = c 35.0"


@pytest.mark.parametrize("name, cells", [("paper.toml", 72), ("paper-ffpp.toml", 108)])
def test_the_paper_suites_plan_every_defense_and_ablation_variant_on_one_head(name, cells):
    """Planning needs no data (a missing prepared store only leaves its digest out of the cell ids)."""
    planned = load_suite(ROOT / "suites" / name).cells
    assert len(planned) == cells
    assert {c.training.detector.params["head"] for c in planned} == {"linear"}
    variants = {paper.ablation_variant(c.training.defense.name, c.training.defense.params) for c in planned}
    assert variants == {*paper.ABLATION, None}
    assert {c.attack.name for c in planned} == {"pgd", "autoattack-binary"}


def test_main_tables_keep_a_tuned_afsl_and_leave_ablation_variants_to_the_ablation_table(cells):
    records = [fake_record(c, NUMBERS) for c in cells]
    block = lb.render(records, "suites/paper.toml", {})
    ranking = block.split("### Ranking")[1].split("###")[0]
    assert "| afsl (beta1=8.0) |" in ranking and "use_srl" not in ranking
    ablation = block.split("### AFSL ablation")[1].split("###")[0]
    assert "| afsl (use_srl=False) |" in ablation and "| afsl |" in ablation
    tuned_only = [r for r in records if not paper.is_ablated("afsl", r.spec["defense"]["params"])]
    assert "### AFSL ablation" not in lb.render(tuned_only, "suites/paper.toml", {})
