"""Rich progress bars for the CLI: one for training, one for the attack; the library only calls back."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from benchmark.runner import Progress as Callbacks


class RichProgress:
    """Context manager drawing training and evaluation progress on a console (stderr)."""

    def __init__(self, console: Console, disable: bool = False) -> None:
        self.bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            disable=disable,
            transient=False,
        )
        self.train_task: Any = None
        self.eval_task: Any = None

    def __enter__(self) -> RichProgress:
        self.bar.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.bar.__exit__(*exc)

    def callbacks(self) -> Callbacks:
        return Callbacks(on_train=self.on_train, on_eval=self.on_eval, on_stage=self.on_stage)

    #: stages worth a line on the console (the others have progress bars)
    STAGE_LINES = {
        "data": "preparing data",
        "surrogate": "training (or loading) the transfer attack's surrogate",
        "checks": "running the gradient-masking probes (--no-checks skips them)",
    }

    def on_stage(self, stage: str) -> None:
        if stage in self.STAGE_LINES:
            self.bar.console.log(self.STAGE_LINES[stage])

    def on_train(self, event: dict[str, Any]) -> None:
        if "steps" not in event or "epochs" not in event:
            return
        total = event["epochs"] * event["steps"]
        done = (event["epoch"] - 1) * event["steps"] + event.get("step", event["steps"])
        info = " ".join(
            f"{k} {v:.3f}" for k, v in event.items() if k in ("loss", "val_acc", "val_robust_acc")
        )
        if self.train_task is None:
            self.train_task = self.bar.add_task("training", total=total, info="")
        self.bar.update(self.train_task, total=total, completed=done, info=f"epoch {event['epoch']} {info}")

    def on_eval(self, done: int, total: int) -> None:
        if self.eval_task is None:
            self.eval_task = self.bar.add_task("attack + eval", total=total, info="")
        self.bar.update(self.eval_task, completed=done, total=total)
