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


def test_lines_appear_while_a_slow_attack_runs_on_its_one_batch(model, monkeypatch) -> None:
    """An attack that spends its whole budget on one batch (C&W, Square with eval.samples <= 256): its model
    evaluations move the progress, so lines appear while it runs, not only when it ends."""
    from dataclasses import dataclass

    import torch

    from afsl_bench.attacks.base import Attack
    from afsl_bench.core.speed import Compile
    from afsl_bench.core.types import Split
    from afsl_bench.runner import evaluation

    monkeypatch.setattr(evaluation, "WITHIN_BATCH_EVERY_S", 0.0)
    console, sink = captured(width=200)
    during: list[int] = []

    @dataclass(frozen=True)
    class Slow(Attack):
        steps: int = 50

        def perturb(self, net, x, y):
            for _ in range(self.steps):
                net(x)
                during.append(len(sink.getvalue().splitlines()))
            return x

    x = torch.rand(40, 3, 32, 32)
    ids = [str(i) for i in range(40)]
    split = Split((x * 255).to(torch.uint8), torch.arange(40) % 2, ids, ids, ["m"] * 40)
    with RunProgress(console, disable=True) as progress:
        progress.on_stage("attack")
        evaluation.score_split(model, Slow(), split, batch_size=64, device=torch.device("cpu"), seed=0,
                               on_batch=progress.on_eval, compile=Compile.OFF)  # fmt: skip
    lines = sink.getvalue().splitlines()
    assert during[-1] >= 5, "lines printed while the attack was still running"
    assert all("attack + eval:" in line for line in lines) and lines[-1].endswith("40/40 samples (100 %)")
    assert "left" in lines[1], lines


def test_the_api_says_each_phase_in_a_log_and_nothing_when_told_not_to(capsys) -> None:
    """``afsl_bench.evaluate`` outside a terminal: one time-stamped line per phase by default (a notebook or
    a script's log), none with ``progress=False``."""
    import torch

    import afsl_bench

    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 2))
    data = {"n_identities": 20, "images_per_identity": 6, "resolution": 32}
    afsl_bench.evaluate(model, attack="fgsm", data_params=data, checks=False, device="cpu")
    lines = capsys.readouterr().err.splitlines()
    phases = [line for line in lines if re.match(STAMP, line)]
    assert [p.split("] ", 1)[1] for p in phases] == ["preparing data", "attack + eval"], lines
    afsl_bench.evaluate(model, attack="fgsm", data_params=data, checks=False, device="cpu", progress=False)
    assert capsys.readouterr().err == ""


def test_predict_scoring_says_its_progress_per_tenth() -> None:
    console, sink = captured(width=200)
    with RunProgress(console, disable=True) as progress:
        for done in range(32, 321, 32):
            progress.on_phase("attack + scoring", done, 320)
    lines = sink.getvalue().splitlines()
    assert len(lines) == 10 and lines[0].endswith(("left", "(10 %)")) and "attack + scoring: 32/320 images" in lines[0]
    assert lines[-1].endswith("attack + scoring: 320/320 images (100 %)")
