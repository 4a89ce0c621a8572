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
    """``afsl-bench run``: a training bar, an attack + eval bar, and a line for the stages without one."""

    #: stages worth a line on the console (the others have progress bars)
    STAGE_LINES: ClassVar[dict[str, str]] = {
        "data": "preparing data",
        "surrogate": "training (or loading) the transfer attack's surrogate",
        "checks": "running the gradient-masking probes (--no-checks skips them)",
    }
    #: the longest a long attack goes without a line when there is no terminal
    EVAL_LINE_S: ClassVar[float] = 60.0

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
        self.train_task: Any = None
        self.eval_task: Any = None
        self.eval_said = -1  # the last tenth of the attack said as a line
        self.eval_said_at = 0.0  # and when: a long attack gets a line at least every EVAL_LINE_S
        self.stage_start = time.monotonic()

    def callbacks(self) -> Any:
        """The ``afsl_bench.runner.cell.Progress`` the library calls."""
        from afsl_bench.runner.cell import Progress as Callbacks

        return Callbacks(on_train=self.on_train, on_eval=self.on_eval, on_stage=self.on_stage)

    def on_stage(self, stage: str) -> None:
        self.stage_start = time.monotonic()
        if stage in self.STAGE_LINES:
            self.line(self.STAGE_LINES[stage])

    def on_train(self, event: dict[str, Any]) -> None:
        if self.lines:
            self.train_line(event)
        if "steps" not in event or "epochs" not in event:
            return
        total = event["epochs"] * event["steps"]
        done = (event["epoch"] - 1) * event["steps"] + event.get("step", event["steps"])
        shown = ("loss", "val_acc", "val_robust_acc")
        info = " ".join(f"{k} {v:.3f}" for k, v in event.items() if k in shown)
        if self.train_task is None:
            self.train_task = self.bar.add_task("training", total=total, info="")
        self.bar.update(self.train_task, total=total, completed=done, info=f"epoch {event['epoch']} {info}")

    def train_line(self, event: dict[str, Any]) -> None:
        phase = event.get("phase")
        if phase == "epoch":
            shown = {"val_clean_acc": "val acc", "val_robust_acc": "val robust acc"}
            scores = ", ".join(f"{label} {event[k]:.3f}" for k, label in shown.items() if k in event)
            self.line(f"training: epoch {event['epoch']}/{event['epochs']} done in {event.get('seconds', 0):.0f} s"
                      f"{', ' + scores if scores else ''} (best so far: epoch {event['best_epoch']})")  # fmt: skip
        elif phase == "resume":
            self.line(f"training: resuming after epoch {event['epoch']}/{event['epochs']}")
        elif phase == "cached":
            self.line("training: the trained model is in the checkpoint cache")

    def on_eval(self, done: float, total: int) -> None:
        """``done`` counts samples; inside a long batch it is fractional (the attack's model evaluations so
        far against its budget: ``Attack.forward_budget``), so a 100,000-step attack moves too."""
        now = time.monotonic()
        tenth = new_tenth(done, total, self.eval_said)
        if self.lines and (tenth is not None or now - self.eval_said_at >= self.EVAL_LINE_S):
            self.eval_said, self.eval_said_at = (self.eval_said if tenth is None else tenth), now
            self.line(f"attack + eval: {int(done)}/{total} samples ({100 * done / total:.0f} %)"
                      f"{time_left(now - self.stage_start, done, total)}")  # fmt: skip
        if self.eval_task is None:
            self.eval_task = self.bar.add_task("attack + eval", total=total, info="")
        self.bar.update(self.eval_task, completed=done, total=total)


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
            left_text = "" if left is None else f"; about {timedelta(seconds=round(left))} left"
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
