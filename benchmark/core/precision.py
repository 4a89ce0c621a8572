"""Reduced precision that never changes a reported number (``--precision``; ``Precision`` in
``afsl_bench.core.runtime``).

On current hardware bfloat16 / float16 roughly double the throughput of the forward and backward passes
attacks consist of (Micikevicius et al., "Mixed precision training", ICLR 2018, for the autocast recipe). A
benchmark cannot report what a half-precision forward says, though: the decision of a sample near the
boundary may differ. So reduced precision is used for *crafting* only:

- The attack's iterations run under ``torch.autocast`` (``FrozenModel.forward``): the model's matrix
  products and convolutions in the reduced type, its logits returned as float32.
- Every decision that ends a sample's search (an attack stops a sample, or keeps it, because it fools the
  model) is taken in float32 wherever the reduced forward calls the sample fooled or leaves it near the
  boundary (``attacks.ops.decided``): a sample the reduced forward calls fooled but float32 does not stays
  in the search, and one float32 calls fooled stops there. Where an ensemble keeps each sample's worst case, the candidates are
  compared in float32.
- The evaluation scores the clean inputs and the final adversarial examples in float32
  (``FrozenModel.exact``): the record's scores and metrics are float32 numbers of the stored examples. The
  record's ``runtime.precision`` says what crafted them.

So every reported number is a float32 number of the stored examples: a reduced-precision attack never
reports a sample fooled that float32 does not call fooled. Which examples it finds may still differ, as with
another random start: at one seed the reduced attack may miss a sample float32 breaks or break one float32
misses. tests/test_precision.py bounds the gap on trained models (one run), and docs/speed.md measures it
over three seeds (means within one sample in 200 on every leaderboard model).

``auto`` picks bfloat16 where the device runs it natively (CUDA with bf16; a CPU with AVX512-BF16 or AMX,
where oneDNN has bf16 kernels), else float32; for training ``auto`` means float32 (as ``--compile auto``
never compiles training), so trained weights never depend on the machine. Training in bf16 / fp16 is asked
for explicitly and recorded in the checkpoint's runtime.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from afsl_bench.core.runtime import Precision

#: the loss scale of float16 input gradients (Micikevicius et al. 2018): the gradient flowing back through
#: the float16 layers is multiplied by it and the input gradient divided by it, so small gradients do not
#: underflow; attacks use the gradient's sign or direction, which the scale does not change
FP16_GRAD_SCALE = 1024.0

_TYPES = {Precision.BF16: torch.bfloat16, Precision.FP16: torch.float16}


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` runs bfloat16 natively: CUDA with bf16 support, or a CPU whose oneDNN has bf16
    kernels (AVX512-BF16 or AMX)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return False


def crafting_dtype(precision: Precision | str, device: torch.device) -> torch.dtype | None:
    """The autocast type attacks craft in on ``device`` (None: float32)."""
    precision = Precision(precision)
    if precision is Precision.AUTO:
        return torch.bfloat16 if native_bf16(device) else None
    return _TYPES.get(precision)


def training_dtype(precision: Precision | str) -> torch.dtype | None:
    """The autocast type training runs in (None: float32); ``auto`` trains in float32."""
    return _TYPES.get(Precision(precision))


def name(dtype: torch.dtype | None) -> str:
    """'fp32', 'bf16' or 'fp16', as records say it."""
    return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]


@contextlib.contextmanager
def autocast(dtype: torch.dtype | None, device: torch.device) -> Iterator[None]:
    """``torch.autocast`` in ``dtype`` on ``device``'s type; nothing for float32."""
    if dtype is None:
        yield
        return
    with torch.autocast(device_type=device.type, dtype=dtype):
        yield


class _ScaleGrad(torch.autograd.Function):
    """Identity forward; the backward multiplies the gradient by ``scale``."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad * ctx.scale, None


def scale_grad(x: torch.Tensor, scale: float) -> torch.Tensor:
    """``x``, whose gradient is multiplied by ``scale`` on the way back (identity without a gradient)."""
    return _ScaleGrad.apply(x, scale) if torch.is_grad_enabled() else x
