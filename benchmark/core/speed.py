"""Speed without changing results: frozen models for attacks, and the training step.

**Frozen models** (``FrozenModel``). Attacks run hundreds of forward + input-gradient passes through a model whose weights never change, so
most of a sweep's time is spent here. ``FrozenModel`` is the one place such a model is prepared; the
evaluation (clean scoring, every attack, the adversarial scoring) and the gradient-masking probes go through
it. What it does, by ``Compile`` mode:

- ``off``: nothing; the detector as trained, eager (the reference every other mode is tested against).
- ``auto`` (the default) and ``on``: batch norm folded into the convolution before it (``torch.fx``'s
  ``fuse``: y = conv(x) * s + t becomes one convolution with weights W * s and bias b * s + t; eval mode
  only), and for image detectors the weights and inputs in channels-last memory layout (oneDNN's and
  cuDNN's fast path; docs/speed.md has the measured ratios).
- ``on`` also compiles the folded model with ``torch.compile`` (inductor) from the first batch; ``auto``
  compiles only when the work still planned outweighs the compile cost, measured: after each batch the
  caller reports the batch's time and how many batches remain (``after_batch``), and ``auto`` compiles when
  ``remaining batches x batch time x COMPILE_SAVING`` exceeds the compile cost measured earlier in this
  process for this detector (``FIRST_COMPILE_S`` before any was measured). If the first compiled batch is
  slower per sample than the eager ones, ``auto`` goes back to the folded eager model.

The batch dimension is compiled as dynamic, so subsets of a batch (the samples an attack's direction
targets, those still standing in an early-stopped attack, the last partial batch) reuse one compiled graph
instead of recompiling mid-attack; subsets under ``MIN_COMPILED_BATCH`` samples run the folded eager model
(torch specialises size 1, and inductor guards small batches apart).

Where a step is impossible (``torch.fx`` cannot trace the detector, inductor fails to compile), the model
falls back to the previous step and says why once per detector class (a warning under ``on``; under
``auto`` an info line, which ``--verbose`` shows) and in ``runtime()``,
which the record keeps under ``runtime``. None of this enters a cell's identity: every mode computes the
same function up to float rounding, and tests hold the records equal (robust accuracy and ASR exactly, AUC
within 1e-6; tests/test_speed.py). Reduced precision (``dtype``: ``--precision``) is for crafting only: the
forward attacks call runs under autocast, ``exact`` in float32 for every reported score and every decision
that ends a sample's search (``afsl_bench.core.precision``).

**Training** (``FastTraining``): the weights change every step, so nothing is folded; the detector's weights
and inputs go channels-last (images, ``auto`` and ``on``), and for ``on`` ``torch.compile`` compiles its
``embed`` (every defense's forward and inner attack pass through it). ``auto`` never compiles training:
kernels round differently, training amplifies that (a trained model is equal only up to a tolerance,
tests/test_speed.py), and a choice made on measured time would make the trained weights depend on the
machine's load. The model is restored (eager, contiguous) at the end.

Example::

    fast = FrozenModel(detector.eval(), Compile.AUTO)
    x_adv = PGD()(fast, x, y)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Self

import torch
from torch import nn

from afsl_bench.core.precision import FP16_GRAD_SCALE, autocast, scale_grad
from afsl_bench.core.precision import name as precision_name
from afsl_bench.core.runtime import Compile

__all__ = ["Compile", "FastTraining", "FrozenModel"]

log = logging.getLogger(__name__)


#: the fraction of a folded eager batch's time that compiling is assumed to save, when ``auto`` decides
#: (scripts/bench_attacks.py here, compiled / folded PGD-10: resnet 0.93, tiny-cnn 0.96, meso4 2.1; a
#: compiled model that measures slower is dropped after its first batch)
COMPILE_SAVING = 0.2
#: the compile cost (seconds) ``auto`` assumes before one was measured in this process: a cold compile of the
#: forward and input gradient of the larger small detectors on a 2-core CPU (docs/speed.md); an
#: overestimate only delays the first compile by a batch or two
FIRST_COMPILE_S = 30.0

#: smaller batches (the few samples still standing late in an attack) run the folded eager model: torch
#: specialises size 1, and inductor's convolutions guard 2-15 apart from larger batches, so either would
#: compile a second graph mid-attack for little work
MIN_COMPILED_BATCH = 16
#: compile seconds measured in this process, by (detector class, device type): ``auto``'s cost estimate
_compile_seconds: dict[tuple[str, str], float] = {}
#: (detector class, reason) already warned about, so a sweep says each fallback once
_warned: set[tuple[str, str]] = set()


class FrozenModel(nn.Module):
    """A frozen detector in eval mode, prepared for attacks by ``mode`` (see the module doc). Its forward
    computes the detector's forward; attributes attacks read (``differentiable``, ``takes_clips``) pass
    through. Prepare it after the last change to the detector's weights and threshold: the folded copy does
    not follow later changes."""

    def __init__(
        self, model: nn.Module, mode: Compile | str = Compile.AUTO, dtype: torch.dtype | None = None
    ) -> None:
        super().__init__()
        self.mode = Compile(mode)
        #: the autocast type attacks craft in (None: float32); ``exact`` is float32 always
        self.dtype = dtype
        self._exact = False
        self.model = model.eval()
        self.channels_last = False
        self.fused: nn.Module | None = None
        self.compiled: Any = None
        self.compile_s: float | None = None
        self.reasons: list[str] = []
        self._eager_per_sample: float | None = None
        self._compiled_per_sample: float | None = None
        #: called with the number of samples of every forward (progress inside a long attack)
        self.on_forward: Callable[[int], None] | None = None
        if self.mode is not Compile.OFF:
            self.fused = self._fold()
            if self.fused is not None:
                self.fused.requires_grad_(False)  # input gradients only, and no recompile inside `frozen`
            if self.fused is not None and not getattr(model, "takes_clips", False):
                self.fused = self.fused.to(memory_format=torch.channels_last)
                self.channels_last = True
        if self.mode is Compile.ON:
            self._compile()

    # -- what attacks see ------------------------------------------------------------------------------

    @property
    def differentiable(self) -> bool:
        return getattr(self.model, "differentiable", True)

    @property
    def takes_clips(self) -> bool:
        return getattr(self.model, "takes_clips", False)

    @property
    def reduced(self) -> bool:
        """Whether attacks craft in reduced precision (their search-ending decisions are then taken with ``exact``)."""
        return self.dtype is not None

    def exact(self, x: torch.Tensor) -> torch.Tensor:
        """The forward in float32, whatever ``dtype`` attacks craft in: every reported score and decision."""
        if self.dtype is None:
            return self(x)
        self._exact = True
        try:
            return self(x)
        finally:
            self._exact = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.on_forward is not None:
            self.on_forward(len(x))
        if self.dtype is None or self._exact:
            return self._forward(x)
        if self.dtype is torch.float16:  # loss-scaled input gradients: no float16 underflow on the way back
            x = scale_grad(x, 1 / FP16_GRAD_SCALE)
        with autocast(self.dtype, x.device):
            out = self._forward(x)
        out = out.float()
        return scale_grad(out, FP16_GRAD_SCALE) if self.dtype is torch.float16 else out

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fused is None:
            return self.model(x)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if self.compiled is not None and len(x) >= MIN_COMPILED_BATCH:
            torch._dynamo.mark_dynamic(x, 0)  # one graph for every batch size from MIN_COMPILED_BATCH up
            return self.compiled(x)
        return self.fused(x)

    # -- preparation -----------------------------------------------------------------------------------

    def _fold(self) -> nn.Module | None:
        from torch.fx.experimental.optimization import fuse

        try:
            return fuse(self.model, inplace=False)
        except Exception as err:  # noqa: BLE001 -- torch.fx raises many types on untraceable code
            self._fall_back(f"batch norm not folded: torch.fx cannot trace it ({type(err).__name__}: {err})")
            return None

    def _compile(self) -> None:
        if self.fused is None:
            return
        try:
            self.compiled = torch.compile(self.fused)
        except Exception as err:  # noqa: BLE001 -- no compiler back end on this platform
            self._fall_back(f"not compiled: torch.compile failed ({type(err).__name__}: {err})")

    def _fall_back(self, reason: str) -> None:
        reason = reason.splitlines()[0][:300]
        self.reasons.append(reason)
        key = (type(self.model).__name__, reason)
        if key not in _warned:
            _warned.add(key)
            # asked for (``on``) a fallback is news; under ``auto`` it is a speed detail (``--verbose``)
            level = logging.WARNING if self.mode is Compile.ON else logging.INFO
            log.log(level, "%s: %s; running it eagerly", type(self.model).__name__, reason)

    def warm_up(self, x: torch.Tensor) -> None:
        """Compile now (forward with input gradient, and forward alone) on the batch ``x``, timing it; a
        compile error falls back to the folded eager model with the reason. The whole batch, not two of its
        samples: inductor's convolutions guard small batches (2 to 15) apart, so a graph compiled on two
        samples would be compiled again for the first full batch."""
        if self.compiled is None or self.compile_s is not None or len(x) < MIN_COMPILED_BATCH:
            return  # a small batch never reaches the compiled graph: timing it would time nothing
        start = time.perf_counter()
        probe = x.detach().clone()
        try:
            with torch.enable_grad():
                probe.requires_grad_(True)
                torch.autograd.grad(self(probe).sum(), probe)
            with torch.no_grad():
                self(probe.detach())
        except Exception as err:  # noqa: BLE001 -- inductor raises its own error types (no C++ compiler, unsupported op)
            self.compiled = None
            self._fall_back(f"not compiled: torch.compile failed ({type(err).__name__}: {err})")
            return
        self.compile_s = time.perf_counter() - start
        _compile_seconds[self._key(x)] = self.compile_s

    def after_batch(self, x: torch.Tensor, seconds: float, batches_left: int) -> None:
        """``auto``'s decision, from a finished batch ``x`` that took ``seconds`` and the batches still to
        run: compile when the remaining work outweighs the compile cost; drop a compiled model that measured
        slower than the eager one."""
        if self.mode is not Compile.AUTO or self.fused is None:
            return
        per_sample = seconds / max(1, len(x))
        if self.compiled is None:
            if self.compile_s is not None:  # compiled before and dropped: stay eager
                return
            self._eager_per_sample = per_sample
            cost = _compile_seconds.get(self._key(x), FIRST_COMPILE_S)
            if batches_left * seconds * COMPILE_SAVING > cost:
                self._compile()
                self.warm_up(x)
        elif self._compiled_per_sample is None:
            self._compiled_per_sample = per_sample
            if self._eager_per_sample is not None and per_sample > self._eager_per_sample:
                self.compiled = None
                self.reasons.append(
                    f"compiled model dropped: {per_sample * 1e3:.1f} ms per sample against "
                    f"{self._eager_per_sample * 1e3:.1f} ms eager"
                )

    def _key(self, x: torch.Tensor) -> tuple[str, str]:
        return (type(self.model).__name__, x.device.type)

    def runtime(self) -> dict[str, Any]:
        """What was used, for the record (``runtime``): the mode, the steps taken, the compile seconds and
        the reasons for any fallback."""
        return {
            "precision": precision_name(self.dtype),
            "compile": self.mode.value,
            "folded": self.fused is not None,
            "channels_last": self.channels_last,
            "compiled": self.compiled is not None or self._compiled_per_sample is not None,
            "compile_s": None if self.compile_s is None else round(self.compile_s, 2),
            "notes": list(self.reasons),
        }


class FastTraining:
    """The training step of ``model`` made fast by ``mode`` for the duration of a ``with`` block (see the
    module doc)."""

    def __init__(
        self, model: nn.Module, mode: Compile | str = Compile.AUTO, dtype: torch.dtype | None = None
    ) -> None:
        self.model, self.mode = model, Compile(mode)
        #: the autocast type of the training step (None: float32; ``afsl_bench.core.precision``)
        self.dtype = dtype
        self.images = not getattr(model, "takes_clips", False)
        self.compiled = False

    def __enter__(self) -> Self:
        if self.mode is not Compile.OFF and self.images:
            self.model.to(memory_format=torch.channels_last)
        if self.mode is Compile.ON:
            self._compile()
        return self

    def __exit__(self, *exc: object) -> None:
        self.model.__dict__.pop("embed", None)  # the class's eager embed again
        if self.mode is not Compile.OFF and self.images:
            self.model.to(memory_format=torch.contiguous_format)

    def _compile(self) -> None:
        if self.compiled or not hasattr(self.model, "embed"):
            return
        eager = type(self.model).embed.__get__(self.model)
        compiled = torch.compile(eager)

        def embed(x: torch.Tensor) -> torch.Tensor:
            if not self.compiled:
                return eager(x)
            try:
                return compiled(x)
            except Exception as err:  # noqa: BLE001 -- inductor's errors (no C++ compiler, an unsupported op)
                self.compiled = False
                reason = f"training not compiled: torch.compile failed ({type(err).__name__}: {err})"
                log.warning(
                    "%s: %s; training eagerly", type(self.model).__name__, reason.splitlines()[0][:300]
                )
                return eager(x)  # an error of the model itself is raised again here

        self.model.embed = embed
        self.compiled = True

    def runtime(self) -> dict[str, Any]:
        return {
            "precision": precision_name(self.dtype),
            "compile": self.mode.value,
            "channels_last": self.mode is not Compile.OFF and self.images,
            "compiled": self.compiled,
        }
