"""The ``afsl-bench`` command line (typer + rich).

User errors (``ConfigError``) print one line and exit with code 2; Ctrl-C exits with 130, keeping the
partial training checkpoint so the same command resumes. Results go to stdout (a table, or the record as
JSON with ``--json``); progress goes to stderr.

The commands live in ``experiments`` (run, sweep, gate), ``reports`` (list, plot, leaderboard, table, tune) and
``predict``, ``certify``, ``prepare``, ``ceiling``, ``convert`` (convert-weights); the options they share in ``options``, what they print in ``render`` and ``progress``. Importing
this package imports no torch, pandas or registry: every command imports what it needs when it runs.
"""

from __future__ import annotations

import typer

from afsl_bench.cli import ceiling, certify, convert, experiments, predict, prepare, reports
from afsl_bench.cli.console import renamed, user_errors

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="afsl-bench: adversarial robustness of deepfake detectors "
    "(detectors x defenses x attacks x data sets).",
)

COMMANDS = {
    "list": reports.list_components,
    "run": experiments.run,
    "sweep": experiments.sweep,
    "gate": experiments.gate,
    "plot": reports.plot,
    "leaderboard": reports.leaderboard,
    "table": reports.table,
    "tune": reports.tune,
    "predict": predict.predict,
    "certify": certify.certify,
    "prepare": prepare.prepare,
    "ceiling": ceiling.ceiling,
    "convert-weights": convert.convert_weights,
}
for _name, _command in COMMANDS.items():
    app.command(_name)(user_errors(_command))

#: the gate's old name, kept (hidden) for one release
_OLD_NAME = "Old name of 'afsl-bench gate' (removed in the next release). "
app.command("check", hidden=True, help=_OLD_NAME + (experiments.gate.__doc__ or ""))(
    user_errors(renamed(experiments.gate, "check", "gate"))
)

__all__ = ["app"]
