"""The options several commands share, each defined once: its flag, its help text and its default.

Use them as ``results_dir: ResultsDir = RESULTS_DIR``: typer takes the default from the signature, so the
defaults live here too, as constants.
"""

from __future__ import annotations

import logging
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from afsl_bench.core.errors import ConfigError
from afsl_bench.core.runtime import Compile, Precision

COMPILE = Compile.AUTO
PRECISION = Precision.FP32

RESULTS_DIR = Path("results")
DEVICE = "auto"
BATCH_SIZE = 256
SEED = 0


def results_path(text: str) -> Path:
    """A results folder as typed: an empty string (an unset shell variable, ``--results-dir ""``) would
    silently mean the current folder, so it is refused."""
    if isinstance(text, Path):  # the default, or a value typer already converted
        return text
    if not text.strip():
        raise typer.BadParameter(
            "is empty: name a folder (the default is 'results'), e.g. --results-dir results"
        )
    return Path(text)


ResultsDir = Annotated[
    Path,
    typer.Option(
        "--results-dir",
        parser=results_path,
        metavar="PATH",
        help="the result store: records, checkpoints and caches",
    ),
]
Device = Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N")]
BatchSize = Annotated[
    int, typer.Option("--batch-size", help="evaluation batch size (does not change results)")
]
Seed = Annotated[int, typer.Option("--seed", help="training and attack seed")]
Checks = Annotated[
    bool,
    typer.Option(
        "--checks/--no-checks",
        metavar="",
        help="run the gradient-masking probes (docs/checks.md) and record their flags",
    ),
]

CompileOption = Annotated[
    Compile,
    typer.Option(
        "--compile",
        help="how models run (docs/speed.md): off (eager), auto (attacks: batch norm folded, channels-last, "
        "compiled when the measured work outweighs the compile cost; training: channels-last) or on (also "
        "torch.compile, training too); not part of a cell's identity: attack results agree across modes, "
        "trained weights up to float rounding",
    ),
]

PrecisionOption = Annotated[
    Precision,
    typer.Option(
        "--precision",
        help="what attacks craft in (afsl_bench/core/precision.py): fp32, bf16 or fp16 (autocast), or auto "
        "(bf16 where the device runs it natively, else fp32); every reported score and decision is a float32 "
        "number of the stored examples either way (docs/speed.md measures the gap); training too for bf16 / fp16 "
        "(auto trains in fp32); not part of a cell's identity, the record says which crafted its examples",
    ),
]

#: ``--set`` of ``run`` (the kinds of ``afsl_bench.runner.plan.KINDS``), parsed by ``core.params.split_overrides``
SetOption = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        help="override a parameter, KIND.KEY=VALUE (repeatable), KIND in detector, defense, attack, data, "
        "eval, train; e.g. --set attack.eps=8/255",
    ),
]

#: ``--set`` of ``prepare``: the same parser with the one kind ``layout``, which a bare KEY=VALUE means
LAYOUT = "layout"
LAYOUT_EXAMPLE = "compression=c40"
LayoutSetOption = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        help=f"a layout parameter, KEY=VALUE or layout.KEY=VALUE (repeatable); e.g. --set {LAYOUT_EXAMPLE} "
        "or --set methods=Deepfakes",
    ),
]


class ExecutorKind(StrEnum):
    LOCAL = "local"
    RAY = "ray"


class TableFormat(StrEnum):
    RICH = "rich"
    CSV = "csv"
    MARKDOWN = "markdown"


Verbose = Annotated[
    bool,
    typer.Option(
        "--verbose",
        metavar="",
        help="also print the speed details (a detector run unfolded or uncompiled, and why); the record keeps "
        "them either way",
    ),
]


def configure_logging(verbose: bool) -> None:
    """Warnings for the user; with ``--verbose`` the library's info lines too."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING)
    logging.getLogger("afsl_bench").setLevel(logging.INFO if verbose else logging.NOTSET)


def check_batch_size(batch_size: int) -> None:
    if batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1, got {batch_size}")
