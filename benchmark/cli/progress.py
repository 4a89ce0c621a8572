"""Progress drawing on stderr: a run's training and attack bars, a sweep's bar, the prepare bar.

The library only calls back (``afsl_bench.runner.cell.Progress``, ``run_sweep``'s ``on_cell``, ``prepare``'s
``on_start`` / ``on_video``); these classes turn the calls into rich progress bars when stderr is a
terminal, and into plain time-stamped lines when it is not (a log file, ``| tee``, CI): one per training
epoch, per tenth of an attack or of a prepare, per finished sweep cell, never wrapped or marked up.
"""

from __future__ import annotations

import sys
import time
from datetime import timedelta
from typing import Any, ClassVar

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Column


def quiet() -> bool:
    """No bars when stderr is not a terminal (a log file, CI, a test runner)."""
    return not sys.stderr.isatty()


def new_tenth(done: float, total: int, said: int) -> int | None:
    """The tenth of ``total`` that ``done`` reached when it is past the last one said, else None."""
    tenth = int(10 * done // total) if total else -1
    return tenth if tenth > said else None


class Bars:
    """A rich ``Progress`` on ``console`` used as a context manager by the classes below; without a
    terminal the bars are off and ``lines`` is set: the classes then print a line at each milestone."""

    def __init__(self, console: Console, *columns: ProgressColumn | str, disable: bool | None = None) -> None:
        disable = quiet() if disable is None else disable
        self.bar = Progress(*columns, console=console, disable=disable)
        self.lines = disable
        self.console = console

    def line(self, text: str) -> None:
        """One plain line: a time stamp and ``text`` as given (no markup, no wrapping, no source path)."""
        self.console.print(
            f"[{time.strftime('%H:%M:%S')}] {text}", markup=False, highlight=False, soft_wrap=True
        )

    def __enter__(self) -> Any:
        self.bar.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.__exit__(*exc)


def time_left(elapsed: float, done: float, total: int) -> str:
    """', about 0:12:40 left' from the rate so far ('' before any progress or once finished)."""
    if not 0 < done < total:
        return ""
    return f", about {timedelta(seconds=round(elapsed * (total - done) / done))} left"


class RunProgress(Bars):
    """``afsl-bench run``: bars for training, robust validation and the attack, and a line for the stages
    without one. Without a terminal: a line per epoch and per tenth of a phase, and at least one every
    ``LINE_S`` seconds of a long phase, each with the time left where it can be estimated."""

    #: stages worth a line on the console (the others have progress bars)
    STAGE_LINES: ClassVar[dict[str, str]] = {
        "data": "preparing data",
        "surrogate": "training (or loading) the transfer attack's surrogate",
        "checks": "running the gradient-masking probes (--no-checks skips them)",
    }
    #: the longest a phase goes without a line when there is no terminal
    LINE_S: ClassVar[float] = 10.0

    def __init__(self, console: Console, disable: bool | None = None) -> None:
        super().__init__(
            console,
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            disable=disable,
        )
        self.tasks: dict[str, Any] = {}  # bar per phase: training, robust validation, attack + eval
        self.said: dict[str, tuple[int, float]] = {}  # per phase: the last tenth said as a line, and when
        self.stage_start = self.train_start = self.last_event_at = time.monotonic()
        self.phase_start: dict[str, float] = {}  # when a phase without a stage of its own began

    def callbacks(self) -> Any:
        """The ``afsl_bench.runner.cell.Progress`` the library calls."""
        from afsl_bench.runner.cell import Progress as Callbacks

        return Callbacks(on_train=self.on_train, on_eval=self.on_eval, on_stage=self.on_stage)

    def on_stage(self, stage: str) -> None:
        self.stage_start = time.monotonic()
        if stage == "train":
            self.train_start = self.stage_start
        if stage in self.STAGE_LINES:
            self.line(self.STAGE_LINES[stage])

    def phase_line(
        self, phase: str, done: float, total: int, text: str, start: float, tenths: bool = True
    ) -> None:
        """``text`` as a line when ``done`` reached a new tenth of ``total`` (``tenths``) or ``LINE_S`` passed
        since the phase's last line, with the time left from the rate since ``start``."""
        now = time.monotonic()
        said, at = self.said.get(phase, (-1, start))
        tenth = new_tenth(done, total, said) if tenths else None
        if tenth is None and now - at < self.LINE_S:
            return
        self.said[phase] = (said if tenth is None else tenth, now)
        self.line(f"{text}{time_left(now - start, done, total)}")

    def bar_update(self, phase: str, done: float, total: int, info: str = "") -> None:
        if phase not in self.tasks:
            self.tasks[phase] = self.bar.add_task(phase, total=total, info="")
        self.bar.update(self.tasks[phase], completed=done, total=total, info=info)

    def on_train(self, event: dict[str, Any]) -> None:
        phase = event.get("phase")
        if phase == "robust_val":
            self.on_robust_val(event)
            return
        self.last_event_at = time.monotonic()
        if self.lines:
            self.train_line(event)
        if "steps" not in event or "epochs" not in event:
            return
        total = event["epochs"] * event["steps"]
        done = (event["epoch"] - 1) * event["steps"] + event.get("step", event["steps"])
        shown = ("loss", "val_acc", "val_robust_acc")
        info = " ".join(f"{k} {v:.3f}" for k, v in event.items() if k in shown)
        self.bar_update("training", done, total, f"epoch {event['epoch']} {info}")
        if self.lines and phase == "train":
            self.phase_line("training", done, total, f"training: epoch {event['epoch']}/{event['epochs']}, "
                            f"step {event['step']}/{event['steps']}, loss {event.get('loss', 0):.3f}",
                            self.train_start, tenths=False)  # epochs are its milestones  # fmt: skip

    def on_robust_val(self, event: dict[str, Any]) -> None:
        """APGD on the validation subset: after each epoch when selecting on it (the epoch's line then says
        its accuracy, so only a long one gets lines of its own), and once for the kept model."""
        where = f"after epoch {event['epoch']}" if "epoch" in event else "of the kept model"
        label, done, total = f"robust validation {where}", event["done"], event["total"]
        start = self.phase_start.setdefault(label, self.last_event_at)
        if self.lines and (done < total or "epoch" not in event):
            self.phase_line(label, done, total, f"training: {label}: {done}/{total} images", start)
        self.bar_update("robust validation", done, total, where)

    def train_line(self, event: dict[str, Any]) -> None:
        phase = event.get("phase")
        if phase == "epoch":
            shown = {"val_clean_acc": "val acc", "val_robust_acc": "val robust acc"}
            scores = ", ".join(f"{label} {event[k]:.3f}" for k, label in shown.items() if k in event)
            kept = f" (kept so far: epoch {event['best_epoch']})" if "best_epoch" in event else ""
            self.line(f"training: epoch {event['epoch']}/{event['epochs']} done in {event.get('seconds', 0):.0f} s"
                      f"{', ' + scores if scores else ''}{kept}")  # fmt: skip
        elif phase == "resume":
            self.line(f"training: resuming after epoch {event['epoch']}/{event['epochs']}")
        elif phase == "cached":
            self.line("training: the trained model is in the checkpoint cache")

    def on_phase(self, label: str, done: float, total: int, unit: str = "images") -> None:
        """A phase of its own (``predict``'s scoring): a bar, or lines at each tenth and every ``LINE_S``."""
        start = self.phase_start.setdefault(label, time.monotonic())
        if self.lines:
            self.phase_line(label, done, total, f"{label}: {int(done)}/{total} {unit} ({100 * done / total:.0f} %)",
                            start)  # fmt: skip
        self.bar_update(label, done, total)

    def on_eval(self, done: float, total: int) -> None:
        """``done`` counts samples; inside a long batch it is fractional (the attack's model evaluations so
        far against its budget: ``Attack.forward_budget``), so a 100,000-step attack moves too."""
        if self.lines:
            self.phase_line("attack + eval", done, total,
                            f"attack + eval: {int(done)}/{total} samples ({100 * done / total:.0f} %)",
                            self.stage_start)  # fmt: skip
        self.bar_update("attack + eval", done, total)


class PhaseLines(Bars):
    """One time-stamped line per phase of a cell (data, training, attack, probes), for the Python API
    outside a terminal: a notebook's or a script's log says where a run is without a line per batch."""

    PHASES: ClassVar[dict[str, str]] = {
        "data": "preparing data",
        "train": "training (or loading the trained model from the checkpoint cache)",
        "surrogate": "training (or loading) the transfer attack's surrogate",
        "attack": "attack + eval",
        "checks": "running the gradient-masking probes (checks=False skips them)",
    }

    def __init__(self, console: Console) -> None:
        super().__init__(console, disable=True)

    def callbacks(self) -> Any:
        from afsl_bench.runner.cell import Progress as Callbacks

        return Callbacks(on_stage=lambda stage: stage in self.PHASES and self.line(self.PHASES[stage]))


class SweepProgress(Bars):
    """``afsl-bench sweep``: one bar over the cells with the counts, the time left and the running cell."""

    def __init__(
        self, console: Console, name: str, total: int, to_run: int, disable: bool | None = None
    ) -> None:
        super().__init__(
            console,
            TextColumn("{task.description}"),
            BarColumn(bar_width=24),
            MofNCompleteColumn(),
            TextColumn("{task.fields[counts]}"),
            TimeElapsedColumn(),
            TextColumn("{task.fields[left]}"),
            TextColumn("[dim]{task.fields[cell]}", table_column=Column(no_wrap=True, max_width=48)),
            disable=disable,
        )
        self.task = self.bar.add_task(name, total=total, counts="", left="", cell="")
        self.to_run, self.started, self.start, self.finished_here = to_run, 0, time.monotonic(), 0

    def on_cell(self, cell: Any, status: str, progress: Any) -> None:
        """Counts of done / cached / running / failed cells; time left from the cells run so far."""
        from afsl_bench.runner.sweep import describe

        self.started += status == "running"
        self.finished_here = len(progress.done)  # cells computed and written by this run
        finished = len(progress.done) + len(progress.cached) + len(progress.failed)
        ran = len(progress.done) + len(progress.failed)
        left = max(0, self.to_run - ran) * (time.monotonic() - self.start) / ran if ran else None
        self.bar.update(
            self.task,
            completed=finished,
            counts=f"done {len(progress.done)}, cached {len(progress.cached)}, "
            f"running {self.started - finished}, failed {len(progress.failed)}",
            left="left ?" if left is None else f"left ~{timedelta(seconds=round(left))}",
            cell=describe(cell) if status == "running" else "",
        )
        reason = progress.errors.get(cell.cell_id, "") if status == "failed" else ""
        if status == "failed" and not self.lines:
            self.bar.console.log(
                f"[red]failed[/] {escape(describe(cell))}: {escape(reason)} (all of it in its record)"
            )
        if self.lines and status in ("done", "failed"):
            left_text = (
                ""
                if left is None or finished == self.bar.tasks[0].total
                else f"; about {timedelta(seconds=round(left))} left"
            )
            note = f": {reason} (all of it in its record)" if status == "failed" else ""
            self.line(f"[{finished}/{self.bar.tasks[0].total}] {status}: {describe(cell)}{note}{left_text}")


class PrepareProgress(Bars):
    """``afsl-bench prepare``: one bar over the videos, its total known once the layout is listed."""

    def __init__(self, console: Console, dataset: str, disable: bool | None = None) -> None:
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
        super().__init__(console, *columns, disable=disable)
        self.task = self.bar.add_task(f"prepare {dataset}", total=None)
        self.todo, self.done, self.said = 0, 0, -1

    def on_start(self, todo: int, skipped: int) -> None:
        self.bar.update(self.task, total=todo)
        self.todo = todo
        if self.lines:
            self.line(f"prepare: {todo} videos to process, {skipped} already prepared")

    def on_video(self, result: Any) -> None:
        self.bar.advance(self.task)
        self.done += 1
        if self.lines and (tenth := new_tenth(self.done, self.todo, self.said)) is not None:
            self.said = tenth
            self.line(f"prepare: {self.done}/{self.todo} videos ({100 * self.done // self.todo} %)")
