"""Progress without a terminal (a log file, `| tee`, CI): plain time-stamped lines at each milestone, never
wrapped, never marked up."""

import io
import re
from types import SimpleNamespace

from rich.console import Console

from afsl_bench.cli.progress import PrepareProgress, RunProgress, SweepProgress

STAMP = r"^\[\d\d:\d\d:\d\d\] "


def captured(width: int = 40) -> tuple[Console, io.StringIO]:
    sink = io.StringIO()
    return Console(file=sink, width=width, force_terminal=False), sink


def test_a_run_prints_a_line_per_epoch_and_per_tenth_of_the_attack() -> None:
    console, sink = captured()
    with RunProgress(console, disable=True) as progress:
        progress.on_stage("data")
        for epoch in (1, 2):
            for step in (1, 2):
                progress.on_train({"phase": "train", "epoch": epoch, "epochs": 2, "step": step, "steps": 2})
            progress.on_train({"phase": "epoch", "epoch": epoch, "epochs": 2, "seconds": 3.2,
                               "val_clean_acc": 0.9, "val_robust_acc": 0.5, "best_epoch": 1})  # fmt: skip
        for done in range(0, 601, 30):
            progress.on_eval(done, 600)
    lines = sink.getvalue().splitlines()
    assert all(re.match(STAMP, line) for line in lines), lines
    assert lines[0].endswith("preparing data")
    epochs = [line for line in lines if "training: epoch" in line]
    assert len(epochs) == 2 and "epoch 2/2 done in 3 s, val acc 0.900, val robust acc 0.500" in epochs[1]
    attack = [line for line in lines if "attack + eval" in line]
    assert len(attack) == 11 and attack[-1].endswith("600/600 samples (100 %)")


def test_a_long_attack_says_its_progress_inside_a_batch_with_the_time_left() -> None:
    console, sink = captured()
    with RunProgress(console, disable=True) as progress:
        progress.on_stage("attack")
        progress.on_eval(2.5, 24)  # a tenth of the one batch's budget spent
        progress.on_eval(24, 24)
    lines = sink.getvalue().splitlines()
    assert re.search(r"attack \+ eval: 2/24 samples \(10 %\), about \d+:\d\d:\d\d left$", lines[0]), lines
    assert lines[1].endswith("24/24 samples (100 %)")


def test_a_sweep_prints_a_line_per_finished_cell_unwrapped(monkeypatch) -> None:
    console, sink = captured(width=30)
    outcome, cell = SimpleNamespace(done=[], cached=[], failed=[], errors={}), SimpleNamespace(cell_id="b")
    long = "tiny-cnn + at vs [pgd] 8/255, a long description that would wrap"
    monkeypatch.setattr("afsl_bench.runner.sweep.describe", lambda c: long)
    with SweepProgress(console, "suite", total=2, to_run=2, disable=True) as progress:
        progress.on_cell(cell, "running", outcome)
        outcome.done.append("a")
        progress.on_cell(cell, "done", outcome)
        progress.on_cell(cell, "running", outcome)
        outcome.failed.append("b")
        outcome.errors["b"] = "DataNotFoundError: data.root '/x' is not a folder"
        progress.on_cell(cell, "failed", outcome)
    lines = sink.getvalue().splitlines()
    assert len(lines) == 2, lines
    assert "[1/2] done: tiny-cnn + at vs [pgd] 8/255, a long description that would wrap" in lines[0]
    assert "[2/2] failed:" in lines[1] and "DataNotFoundError: data.root '/x' is not a folder" in lines[1]
    assert "(all of it in its record)" in lines[1]


def test_prepare_prints_the_plan_and_each_tenth() -> None:
    console, sink = captured()
    with PrepareProgress(console, "ff++", disable=True) as progress:
        progress.on_start(20, 3)
        for _ in range(20):
            progress.on_video(None)
    lines = sink.getvalue().splitlines()
    assert "prepare: 20 videos to process, 3 already prepared" in lines[0]
    assert lines[1].endswith("1/20 videos (5 %)"), "the first video is a sign of life"
    assert len(lines) == 2 + 10 and lines[-1].endswith("20/20 videos (100 %)")
