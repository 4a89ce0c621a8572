"""The two consoles of the CLI and the wrappers every command shares: user errors and renamed commands.

Results go to stdout (``out``); progress, warnings and errors to stderr (``err``). Errors and notes are
printed as plain text on one line: never wrapped at the console width (a command quoted in an error must
stay copyable) and never parsed as rich markup (``[sweep]`` in a message is text).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import typer
from rich.console import Console
from rich.text import Text

from afsl_bench.core.errors import ConfigError

out = Console()
err = Console(stderr=True)

INTERRUPTED = "interrupted: no record was written; rerun the same command to resume training."


def say(console: Console, text: str) -> None:
    """One plain line: no markup, no highlighting, no wrapping."""
    console.print(text, markup=False, highlight=False, soft_wrap=True)


def user_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """One readable line and exit code 2 for a user error; 130 and a resume hint for Ctrl-C."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except ConfigError as error:
            line = Text.assemble(("error:", "bold red"), " ", str(error))
            err.print(line, highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            say(err, INTERRUPTED)
            raise typer.Exit(130) from None

    return wrapper


def renamed(command: Callable[..., Any], old: str, new: str) -> Callable[..., Any]:
    """``command`` under its old name: the same options, after one note on stderr that the name changed."""

    @functools.wraps(command)
    def alias(*args: Any, **kwargs: Any) -> Any:
        say(err, f"note: 'afsl-bench {old}' is now 'afsl-bench {new}'; the old name goes in the next release")
        return command(*args, **kwargs)

    return alias
