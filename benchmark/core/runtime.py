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


class Precision(StrEnum):
    """The floating-point precision attacks craft in (``--precision``); never part of a cell's identity:
    every reported score and decision is computed in float32 (``afsl_bench.core.precision``)."""

    FP32 = "fp32"  # everything in float32
    BF16 = "bf16"  # attack iterations (and, asked for, training) under bfloat16 autocast
    FP16 = "fp16"  # the same in float16 (input gradients loss-scaled against underflow)
    AUTO = "auto"  # bf16 where the device runs it natively (CUDA with bf16, a CPU with AVX512-BF16 / AMX), else fp32
