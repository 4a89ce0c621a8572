"""`afsl-bench leaderboard`: the generated block of leaderboard.md, its plots and the RobustBench entries come
from the records of the leaderboard suite only, and the committed block is never stale."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from afsl_bench.cli import app
from afsl_bench.core.errors import ConfigError
from afsl_bench.report import leaderboard as lb
from afsl_bench.runner.sweep import load_suite
from afsl_bench.store.disk import RecordStore
from afsl_bench.store.record import Record

ROOT = Path(__file__).resolve().parents[1]

SUITE = """
[[sweep]]
detectors = ["tiny-cnn"]
defenses = ["none", "at", "afsl", {name = "afsl", use_asl = false}]
attacks = ["autoattack-binary", "jpeg"]
data = ["synthetic"]
eval = ["synthetic", "synthetic-hq"]
seeds = [0, 1]

[[sweep]]
detectors = ["tiny-cnn"]
defenses = ["none", "at"]
attacks = [{name = "transfer", surrogate_detector = "tiny-cnn"}, {name = "transfer", surrogate_detector = "meso4"}]
data = ["synthetic"]
"""

ROBUST = {"none": 0.05, "at": 0.40, "afsl": 0.30}


def fake_record(cell, robust: float) -> Record:
    spec = cell.to_json()
    return Record.from_json({
        "cell_id": cell.cell_id,
        "train_id": cell.training.train_id,
        "status": "ok",
        "spec": spec,
        "metrics": {"clean_acc": 0.9 - 0.01 * spec["seed"], "robust_acc": robust + 0.02 * spec["seed"], "clean_auc": 0.95},
        "n_samples": 600,
        "n_attacked": 600,
        "perturbation": {},
        "flags": {"checked": True, "raised": [], "store": []},
        "timings": {"train_s": 20.0, "total_s": 30.0},
        "env": {"afsl_bench": "0.1.0", "git_sha": "abc", "torch": "2.14.1", "device": "cpu", "device_name": "x"},
        "created": f"2026-11-26T00:00:{spec['seed']:02d}Z",
    })


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> tuple[Path, Path]:
    tmp_path = tmp_path_factory.mktemp("board")
    suite = tmp_path / "board.toml"
    suite.write_text(SUITE)
    results = tmp_path / "results"
    store = RecordStore(results)
    for cell in load_suite(suite).cells:
        defense = cell.training.defense
        robust = ROBUST[defense.name] - (0.1 if defense.params.get("use_asl") is False else 0.0)
        store.write(fake_record(cell, robust), pd.DataFrame({"sample_id": ["a"]}))
    page = tmp_path / "leaderboard.md"
    page.write_text(f"# Board\n\nhand-written intro\n\n{lb.BEGIN}\nold\n{lb.END}\n\nhand-written footer\n")
    return suite, results


def invoke(suite: Path, results: Path, *extra: str):
    page, export = suite.parent / "leaderboard.md", suite.parent / "board" / "records.jsonl"
    args = ["leaderboard", "--suite", str(suite), "--results-dir", str(results), "--output", str(page)]
    return CliRunner().invoke(app, [*args, "--export", str(export), *extra])


@pytest.fixture(scope="module")
def rendered(store) -> tuple[Path, Path]:
    suite, results = store
    shown = invoke(suite, results)
    assert shown.exit_code == 0, shown.output
    return store


def test_leaderboard_rewrites_only_the_block_and_ranks_by_the_ensemble(rendered):
    suite, _ = rendered
    text = (suite.parent / "leaderboard.md").read_text()
    assert text.startswith("# Board\n\nhand-written intro\n\n") and text.endswith("\n\nhand-written footer\n")
    block = lb.current_block(text)
    assert "old" not in block.split("\n")
    ranking = block.split("### Ranking")[1].split("###")[0]
    rows = [line for line in ranking.splitlines() if line.startswith(("| 1 ", "| 2 "))]
    # in-domain: AT (40 + 1 over seeds 0 and 1) ranks first, mean ± sd over the two seeds
    assert rows[0].startswith("| 1 | tiny-cnn | at | synthetic -> synthetic | 89.5 ± 0.7 | **41.0 ± 1.4** | 2 |")
    assert "not real faces" in block and "seeds 0, 1" in block
    assert "### AFSL ablation" in block and "(use_asl=False)" in block
    transfer = block.split("### Transfer matrix")[1]
    assert "| surrogate | tiny-cnn + at | tiny-cnn + none |\n|---|---|---|\n| meso4 + none | 40.0 | 5.0 |" in transfer
    assert "No flag was raised" in block
    plots = suite.parent / "board" / "plots"
    assert {p.name for p in plots.glob("*.png")} >= {"transfer_matrix.png", "afsl_ablation.png", "cross_dataset.png"}
    assert "![afsl_ablation](board/plots/afsl_ablation.png)" in block


def test_robustbench_model_info_entries(rendered):
    suite, _ = rendered
    entry = json.loads((suite.parent / "board/model_info/synthetic/Linf/tiny-cnn-at-synthetic.json").read_text())
    assert set(entry) == {
        "link", "name", "authors", "additional_data", "number_forward_passes", "dataset", "venue",
        "architecture", "eps", "clean_acc", "reported", "autoattack_acc", "footnote", "unreliable",
    }
    assert entry["eps"] == "8/255" and entry["autoattack_acc"] == "41.00" and entry["clean_acc"] == "89.50"
    assert (suite.parent / "board/model_info/synthetic-hq/Linf").is_dir()


def test_rerender_from_the_export_needs_no_store(rendered, tmp_path):
    suite, _ = rendered
    first = (suite.parent / "leaderboard.md").read_text()
    shown = invoke(suite, tmp_path / "empty", "--from-export", "--no-plots")
    assert shown.exit_code == 0, shown.output
    assert (suite.parent / "leaderboard.md").read_text() == first


def test_missing_cells_fail_with_the_sweep_command_unless_partial(rendered):
    suite, results = rendered
    victim = next((results / "records").glob("*.json"))
    victim.unlink()
    export = suite.parent / "board" / "records.jsonl"
    kept = [line for line in export.read_text().splitlines() if victim.stem not in line]
    export.write_text("\n".join(kept) + "\n")  # the export would otherwise still hold the cell
    shown = invoke(suite, results, "--no-plots")
    assert shown.exit_code == 2 and "afsl-bench sweep" in shown.output and "--partial" in shown.output
    assert invoke(suite, results, "--partial", "--no-plots").exit_code == 0


def test_markers_are_required():
    with pytest.raises(ConfigError, match="markers"):
        lb.replace_block("no markers here", "x")
    with pytest.raises(ConfigError, match="markers"):
        lb.replace_block(f"{lb.END}\n{lb.BEGIN}", "x")


def test_committed_leaderboard_is_current():
    """The committed block is what the committed records render to, and every record is of a cell the committed
    suite plans (a changed suite, default or renderer without `afsl-bench leaderboard` fails here). A suite not
    yet fully run is allowed only with a committed reason (results/leaderboard/PENDING), shown on the page
    with what is missing; a complete one must not keep that file."""
    records = lb.read_export(ROOT / lb.EXPORT)
    suite = load_suite(ROOT / lb.SUITE)
    planned = {c.cell_id for c in suite.cells}
    held = {r.cell_id for r in records}
    assert held <= planned, (
        f"the committed records hold {len(held - planned)} cells suites/leaderboard.toml no longer plans: "
        f"rerun `afsl-bench sweep {lb.SUITE}` and `afsl-bench leaderboard`"
    )
    missing = lb.missing_cells(suite, records)
    note = lb.pending_note(ROOT / lb.PENDING)
    if missing:
        assert note, f"{len(missing)} planned cells have no record: run them, or commit {lb.PENDING} saying why"
    else:
        assert note is None, f"every cell has a record: delete {lb.PENDING}"
    page = ROOT / "leaderboard.md"
    plots = lb.plot_links(ROOT / lb.PLOTS, page)
    assert all((page.parent / path).is_file() for path in plots.values())
    certified = lb.read_certified(ROOT / lb.CERTIFIED)
    assert {r["certify_id"] for r in certified} == {c.certify_id for c in suite.certifications}, (
        "the committed certifications are not those suites/leaderboard.toml plans: rerun `afsl-bench sweep "
        f"{lb.SUITE}` and `afsl-bench leaderboard`"
    )
    expected = lb.render(records, lb.SUITE, plots, lb.incomplete(missing, len(suite.cells), note), certified)
    assert lb.current_block(page.read_text()) == expected.strip(), (
        "leaderboard.md is stale: run `afsl-bench leaderboard --from-export`"
    )
    entries = lb.model_info(records)
    for relative, entry in entries.items():
        assert json.loads((ROOT / lb.MODEL_INFO / relative).read_text()) == entry


def test_an_incomplete_leaderboard_says_how_much_is_missing_and_why(tmp_path):
    suite = tmp_path / "board.toml"
    suite.write_text(SUITE)
    cells = load_suite(suite).cells
    records = [lb.compact(fake_record(cell, 0.3)) for cell in cells[1:]]
    missing = lb.missing_cells(load_suite(suite), records)
    assert [c.cell_id for c in missing] == [cells[0].cell_id]
    banner = lb.incomplete(missing, len(cells), "the re-run is under way")
    assert f"{len(cells) - 1} of the {len(cells)} cells" in banner and "the re-run is under way" in banner
    assert lb.render(records, suite, {}, banner).startswith(banner)
    assert lb.incomplete([], len(cells), None) == ""


def test_records_kept_in_the_export_fill_cells_the_store_lacks(tmp_path):
    suite_path = tmp_path / "board.toml"
    suite_path.write_text(SUITE)
    suite = load_suite(suite_path)
    kept = [lb.compact(fake_record(cell, 0.3)) for cell in suite.cells]
    stale = kept[0].replace(cell_id="0" * 16)  # a cell the suite no longer plans
    records = lb.collect(suite, tmp_path / "empty-store", kept=[*kept, stale])
    assert {r.cell_id for r in records} == {c.cell_id for c in suite.cells}


def test_raised_flags_are_grouped_by_flag_and_attack(tmp_path):
    suite = tmp_path / "board.toml"
    suite.write_text(SUITE)
    records = [lb.compact(fake_record(cell, 0.3)) for cell in load_suite(suite).cells]
    weak = [r for r in records if r.spec["attack"]["name"] == "jpeg"][:3]
    for r in weak:
        r.flags["raised"] = ["zero_gradients"]
    text = lb.flags(records)
    assert f"{len(records)} of {len(records)} cells ran" in text and "raised in 3 of them" in text
    (row,) = [line for line in text.splitlines() if line.startswith("| zero_gradients")]
    assert row.startswith("| zero_gradients | jpeg s3 | 3 |") and f"`{min(r.cell_id for r in weak)}`" in row


def test_ranking_shows_robust_accuracy_per_class_when_every_record_has_it() -> None:
    rows = []
    for seed, (real, fake) in enumerate([(0.2, 0.6), (0.4, 0.6)]):
        rows.append(
            {"attack_name": lb.RANKING, "train_data": "synthetic", "eval_data": "synthetic",
             "detector": "tiny-cnn", "defense": "at", "seed": seed, "clean_acc": 0.9,
             "robust_acc": (real + fake) / 2, "robust_acc_real": real, "robust_acc_fake": fake}
        )  # fmt: skip
    frame = pd.DataFrame(rows)
    shown = lb.ranking(frame)
    assert "| clean | robust | robust on reals | robust on fakes | seeds |" in shown
    assert "| 1 | tiny-cnn | at | synthetic -> synthetic | 90.0 ± 0.0 | **45.0 ± 7.1** | 30.0 ± 14.1 | 60.0 ± 0.0 | 2 |" in shown
    older = lb.ranking(frame.assign(robust_acc_real=[0.2, float("nan")]))  # a record from before the split
    assert "robust on reals" not in older and "| **45.0 ± 7.1** | 2 |" in older


CERTIFIED_SUITE = """
[[sweep]]
detectors = ["tiny-cnn"]
defenses = ["none", "smoothing"]
attacks = [{name = "apgd", norm = "l2"}]
data = ["synthetic"]
eps = ["0.25", "0.5"]
seeds = [0, 1]

[[certify]]
detectors = ["tiny-cnn"]
defenses = ["none", "smoothing"]
data = ["synthetic"]
seeds = [0, 1]
"""


def fake_certification(job, certified: float) -> dict:
    """A stored certification whose images are all correct, ``certified`` of them at every radius up to 0.5."""
    from afsl_bench.runner.certification import RADII, certified_accuracy

    labels = np.array([0, 1] * 50)
    radius = np.where(np.arange(100) < 100 * certified, 0.6, 0.0)
    return {
        "certify_id": job.certify_id, "status": "ok", "n_samples": 100, "n_reals": 50, "n_fakes": 50,
        "spec": {"training": job.training.to_json(), "train_id": job.training.train_id,
                 "certify": dataclasses.asdict(job.settings)},
        "radii": list(RADII), "linf_ball": {"eps": 8 / 255, "input_shape": [3, 64, 64], "l2_radius": 3.4777},
        **certified_accuracy(labels, radius, labels, (*RADII, 3.4777)),
        "env": {"git_sha": "abc", "platform": "this machine"}, "created": "2026-12-06T00:00:00Z",
    }  # fmt: skip


def test_the_certified_section_puts_each_certificate_beside_the_attack_at_its_radius(tmp_path):
    """Certifications of the suite's [[certify]] grid are collected from the store into the committed copy,
    and the section shows, per model (mean ± sd over seeds), certified accuracy beside APGD-L2 robust accuracy
    of the same trained model at each radius; a missing certification fails unless --partial."""
    suite_path = tmp_path / "board.toml"
    suite_path.write_text(CERTIFIED_SUITE)
    suite, results = load_suite(suite_path), tmp_path / "results"
    store = RecordStore(results)
    for cell in suite.cells:
        robust = 0.9 if cell.training.defense.name == "smoothing" else 0.4
        store.write(fake_record(cell, robust), pd.DataFrame({"sample_id": ["a"]}))
    (results / "certified").mkdir()
    for job in suite.certifications:
        share = 0.8 + 0.1 * job.training.seed if job.training.defense.name == "smoothing" else 0.0
        (results / "certified" / f"{job.certify_id}.json").write_text(json.dumps(fake_certification(job, share)))
    page = tmp_path / "leaderboard.md"
    page.write_text(f"{lb.BEGIN}\n{lb.END}\n")
    shown = invoke(suite_path, results, "--no-plots")
    assert shown.exit_code == 0, shown.output
    block = lb.current_block(page.read_text())
    section = block.split("### Certified (randomized smoothing)")[1]
    assert "n0 = 100, n = 1000, alpha = 0.001, on 100 test images" in section
    assert "no certificate reaches beyond sigma x 2.46 (0.62 at sigma 0.25)" in section
    rows = [line for line in section.splitlines() if line.startswith("| tiny-cnn")]
    # the robust accuracy of fake_record: 0.9 (+ 0.02 at seed 1) for smoothing, the certificate 0.8 and 0.9
    assert rows[0] == "| tiny-cnn + smoothing, synthetic | 0.25 | 100.0 ± 0.0 | 85.0 ± 7.1 / 91.0 ± 1.4 | 85.0 ± 7.1 / 91.0 ± 1.4 | 0.0 ± 0.0 / - | 0.0 ± 0.0 | 0.0 ± 0.0 | 2 |"
    assert rows[1].startswith("| tiny-cnn + none, synthetic | 0.25 | 100.0 ± 0.0 | 0.0 ± 0.0 / 41.0 ± 1.4 |")
    kept = tmp_path / "board" / "certified.jsonl"
    assert json.loads(kept.read_text().splitlines()[0])["env"] == {
        "afsl_bench": None, "git_sha": "abc", "torch": None, "device": None, "device_name": None}
    again = invoke(suite_path, tmp_path / "empty", "--from-export", "--no-plots")
    assert again.exit_code == 0 and lb.current_block(page.read_text()) == block, again.output
    kept.unlink()
    next((results / "certified").glob("*.json")).unlink()
    missing = invoke(suite_path, results, "--no-plots")
    assert missing.exit_code == 2 and "1 of 4 certifications" in missing.output, missing.output
    assert invoke(suite_path, results, "--no-plots", "--partial").exit_code == 0


def test_the_block_does_not_depend_on_the_order_of_the_records() -> None:
    """The store hands records in the suite's order, the committed copy in cell-id order: both render alike
    (a model retrained in another session carries its own training time in some of its records)."""
    records = lb.read_export(ROOT / lb.EXPORT)
    certified = lb.read_certified(ROOT / lb.CERTIFIED)
    forward = lb.render(records, lb.SUITE, {}, "", certified)
    assert lb.render(records[::-1], lb.SUITE, {}, "", certified[::-1]) == forward
