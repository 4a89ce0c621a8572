"""The README's commands are real: every `afsl-bench` line of its code blocks names a sub-command whose
``--help`` works and only flags that sub-command has (a renamed flag or command fails here, not for a
newcomer copying the line)."""

from __future__ import annotations

import re
import shlex
from functools import cache
from pathlib import Path

import pytest
from typer.testing import CliRunner

from afsl_bench.cli import app

README = Path(__file__).parents[1] / "README.md"


def commands() -> list[tuple[int, list[str]]]:
    """(line number, argv after 'afsl-bench') of every afsl-bench command in the README's bash blocks; a
    trailing backslash continues a line, '#' starts a comment, '&&' separates commands, '...' is elided."""
    found, lines = [], README.read_text().splitlines()
    inside, pending, start = False, "", 0
    for number, line in enumerate(lines, 1):
        if line.startswith("```"):
            inside = line.strip() == "```bash"
            continue
        if not inside:
            continue
        text = re.split(r"\s#\s|^#\s", line, maxsplit=1)[0].rstrip()
        if not pending:
            start = number
        if text.endswith("\\"):
            pending += text[:-1] + " "
            continue
        text, pending = pending + text, ""
        for part in text.split("&&"):
            words = [w for w in shlex.split(part) if w != "..."]
            if words and words[0].endswith("afsl-bench"):
                found.append((start, words[1:]))
    return found


@cache
def help_of(command: str) -> str:
    outcome = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "300"})
    assert outcome.exit_code == 0, (command, outcome.output)
    return outcome.output


def test_the_readme_has_commands_to_check() -> None:
    assert len(commands()) >= 30


@pytest.mark.parametrize(("line", "argv"), commands(), ids=lambda v: str(v) if isinstance(v, int) else None)
def test_every_readme_command_names_a_real_sub_command_and_real_flags(line, argv) -> None:
    assert argv, f"README.md:{line}: 'afsl-bench' without a sub-command"
    text = help_of(argv[0])
    for word in argv[1:]:
        if word.startswith("--"):
            flag = word.split("=", 1)[0]
            assert re.search(rf"{re.escape(flag)}(?![\w-])", text), f"README.md:{line}: {argv[0]} has no {flag}"
