"""`afsl-bench plot`: figures drawn from the records only, written as PNG and SVG, with titles and units."""

from __future__ import annotations

import pandas as pd
import pytest
from test_tables import record
from typer.testing import CliRunner

from afsl_bench.cli import app
from afsl_bench.core.errors import ConfigError
from afsl_bench.report.plots import (
    afsl_ablation,
    clean_vs_robust,
    cross_dataset,
    render_all,
    robust_vs_eps,
    transfer_matrix,
)
from afsl_bench.report.tables import tidy
from afsl_bench.store.disk import RecordStore


@pytest.fixture(scope="module")
def frame():
    records = [
        record(defense, "pgd", robust, seed=seed, overrides=[f"attack.eps={eps}/255"])
        for defense, base in (("none", 0.3), ("at", 0.6))
        for eps, robust in ((2, base), (4, base - 0.1), (8, base - 0.25))
        for seed in (0, 1)
    ]
    return tidy(records)


def test_robust_vs_eps_has_units_a_line_per_defense_and_the_mean_of_seeds(frame):
    fig = robust_vs_eps(frame)
    (ax,) = fig.axes
    assert ax.get_xlabel() == "eps (k/255)" and ax.get_ylabel() == "robust accuracy (%)"
    lines = [line for line in ax.get_lines() if len(line.get_xdata()) == 3]
    assert len(lines) == 2
    assert sorted(lines[0].get_xdata()) == pytest.approx([2, 4, 8])
    assert {tuple(line.get_ydata().round(1)) for line in lines} == {(30.0, 20.0, 5.0), (60.0, 50.0, 35.0)}


def test_every_plot_is_written_as_png_and_svg_and_impossible_ones_say_why(frame, tmp_path):
    written, skipped = render_all(frame, tmp_path)
    assert {p.name for p in written} == {
        "robust_vs_eps.png", "robust_vs_eps.svg", "clean_vs_robust.png", "clean_vs_robust.svg"
    }
    assert all(p.stat().st_size > 1000 for p in written)
    again, _ = render_all(frame, tmp_path / "again")
    assert [p.read_bytes() for p in written] == [p.read_bytes() for p in again], "the same data, the same bytes"
    assert "eval list" in skipped["cross_dataset"]
    assert "transfer" in skipped["transfer_matrix"] and "AFSL variants" in skipped["afsl_ablation"]
    (ax,) = clean_vs_robust(frame, attack="pgd 8/255").axes
    assert ax.get_title() == "synthetic -> synthetic" and ax.get_xlabel() == "clean accuracy (%)"
    points = sorted(tuple(p.round(1)) for p in ax.collections[0].get_offsets())
    assert points == [(90.0, 5.0), (90.0, 35.0)]  # one point per detector + defense: none, at (mean of seeds)


def test_cross_dataset_heatmap_from_train_and_eval_sets():
    records = [record("none", "pgd", 0.4), record("none", "pgd", 0.2)]
    records[1].spec["eval_data"]["name"] = "synthetic-hq"
    clean, robust = cross_dataset(tidy(records)).axes
    assert sorted(t.get_text() for t in clean.texts) == ["90.0", "90.0"] and clean.get_title() == "clean accuracy"
    assert sorted(t.get_text() for t in robust.texts) == ["20.0", "40.0"] and "pgd 8/255" in robust.get_title()
    assert clean.get_ylabel() == "model" and clean.get_xlabel() == "evaluated on"
    records[1].spec["train_data"]["name"] = "synthetic-hq"  # two training sets: the train x eval matrix
    assert cross_dataset(tidy(records)).axes[0].get_ylabel() == "model <- trained on"


def test_plot_needs_more_than_one_budget():
    with pytest.raises(ConfigError, match="two or more"):
        robust_vs_eps(tidy([record("none", "pgd", 0.4)]))


def test_cli_plot(tmp_path, frame):
    store = RecordStore(tmp_path)
    for r in (record("none", "pgd", 0.3, overrides=["attack.eps=2/255"]), record("none", "pgd", 0.1)):
        store.write(r, pd.DataFrame({"sample_id": ["a"]}))
    shown = CliRunner().invoke(app, ["plot", "--results-dir", str(tmp_path)])
    assert shown.exit_code == 0, shown.output
    assert (tmp_path / "plots" / "robust_vs_eps.svg").exists()


def test_transfer_heatmap_is_surrogate_by_target():
    records = [
        record(defense, "transfer", robust, overrides=[f"attack.surrogate_detector={surrogate}"])
        for defense, surrogate, robust in (("none", "meso4", 0.25), ("at", "meso4", 0.5), ("none", "resnet", 0.75))
    ]
    (ax,) = transfer_matrix(tidy(records)).axes
    assert ax.get_xlabel() == "target (attacked model)" and ax.get_ylabel() == "surrogate (attack crafted on)"
    assert sorted(t.get_text() for t in ax.texts) == ["25.0", "50.0", "75.0"]


def test_afsl_ablation_bars_are_means_over_seeds_per_variant():
    records = [
        record("afsl", "pgd", robust, seed=seed, overrides=overrides)
        for overrides, values in (([], (0.4, 0.6)), (["defense.use_asl=false"], (0.1, 0.3)))
        for seed, robust in enumerate(values)
    ]
    (ax,) = afsl_ablation(tidy(records)).axes
    heights = sorted(round(bar.get_height(), 1) for bar in ax.patches if bar.get_height() > 0)
    assert heights == [20.0, 50.0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["full AFSL", "(use_asl=False)"]


def test_accuracy_axes_span_the_whole_range_and_the_title_says_which_attack_and_why(frame):
    """One point or a narrow spread is never blown up to fill the axes (0-100 %), and a plot of one attack
    says which one and how it was chosen; the same records in another order draw the same figure."""
    fig = clean_vs_robust(frame)
    (ax,) = fig.axes
    assert ax.get_xlim() == (-3.0, 103.0) and ax.get_ylim() == (-3.0, 103.0)
    title = fig._suptitle.get_text()
    assert "under pgd 2/255" in title and "--attack picks another" in title  # a tie: the first label
    one = clean_vs_robust(frame[frame["defense"] == "at"], attack="pgd 2/255")
    assert "chosen with --attack" in one._suptitle.get_text() and "one model" in one._suptitle.get_text()
    (eps_ax,) = robust_vs_eps(frame).axes
    assert eps_ax.get_ylim() == (-3.0, 103.0)
    shuffled = robust_vs_eps(frame.sample(frac=1, random_state=3)).axes[0]
    assert eps_ax.get_legend_handles_labels()[1] == shuffled.get_legend_handles_labels()[1]


def test_the_ablation_names_its_variants_and_keeps_the_attacks_they_share():
    records = [record("afsl", a, r, overrides=o) for a, r, o in (
        ("pgd", 0.8, []), ("pgd", 0.3, ["defense.use_asl=false"]), ("apgd", 0.5, []),
    )]  # fmt: skip
    fig = afsl_ablation(tidy(records))
    (ax,) = fig.axes
    assert [t.get_text() for t in ax.get_xticklabels()] == ["full AFSL", "(use_asl=False)"]
    assert "apgd" not in " ".join(t.get_text() for t in fig.legends[0].get_texts()), "run on one variant only"


def test_plot_filters_and_a_single_record(tmp_path):
    store = RecordStore(tmp_path)
    samples = pd.DataFrame({"sample_id": ["a"], "video_id": ["a"], "method": ["m"], "label": [1],
                            "clean_score": [1.0], "adv_score": [-1.0], "linf": [0.03], "l2": [1.0],
                            "attacked": [True]})  # fmt: skip
    store.write(record("none", "pgd", 0.3), samples)
    outcome = CliRunner().invoke(app, ["plot", "--results-dir", str(tmp_path), "--attack", "pgd", "--eps", "8/255"])
    assert outcome.exit_code == 0, outcome.output
    assert "one record" in outcome.output and "sweep" in outcome.output
    wrong = CliRunner().invoke(app, ["plot", "--results-dir", str(tmp_path), "--attack", "pdg"])
    assert wrong.exit_code == 2 and "no record has it" in wrong.output and "Did you mean" in wrong.output
    budget = CliRunner().invoke(app, ["plot", "--results-dir", str(tmp_path), "--eps", "4/255"])
    assert budget.exit_code == 2 and "Stored: 8/255" in budget.output
