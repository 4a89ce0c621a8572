"""How to run, not what: ``Compile``, the one setting of ``afsl_bench.core.speed``, kept free of torch so
that the CLI's option parsing imports nothing heavy."""

from __future__ import annotations

from enum import StrEnum


class Compile(StrEnum):
    """How frozen models are prepared for attacks and the training step is run (``--compile``); never part
    of a cell's identity (``afsl_bench.core.speed``)."""

    OFF = "off"  # the detector as trained, eager
    AUTO = "auto"  # folded + channels-last; compiled when the planned work outweighs the compile cost
    ON = "on"  # folded + channels-last + torch.compile from the first batch
