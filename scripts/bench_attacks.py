"""Benchmark: wall time of our PGD / APGD against a bare gradient loop, torchattacks and ART.

Ours runs three ways (``afsl_bench.core.speed``): on the eager model, on the frozen model with batch norm
folded and channels-last (``--compile auto`` before it decides to compile), and compiled (``--compile on``;
its compile time, on the two-sample warm-up, is printed apart and not in the ratios). ``--precisions bf16
fp16`` adds the folded model crafting under autocast (``--precision``; ``afsl_bench.core.precision``) and a
bare loop under the same autocast; every ratio is to the float32 bare loop.

One model (a registered detector with its defaults, ``--detector``, default ``resnet``; random weights, eval
mode) and one batch, measured in one process with interleaved repetitions (each repetition runs every method
once, in a rotating order), reported as the median time and its ratio to the bare loop: ``steps`` x (forward
+ ``autograd.grad`` w.r.t. the input), no projection bookkeeping. The work is made equal: labels are the
model's own predictions (so torchattacks and ART, which skip misclassified inputs, attack every sample), and
early stopping is disabled in ours. Every method sees parameters with ``requires_grad=False`` (ours freezes
them itself; ART would otherwise also compute weight gradients in its ``loss.backward()``).

On CPU, glibc's malloc hands large blocks back to the OS and page-faults them in again; how often depends on
each method's allocation pattern (up to ~10% here). ``MALLOC_MMAP_THRESHOLD_=33554432
MALLOC_TRIM_THRESHOLD_=4294967296`` in the environment removes that noise (and speeds every method up).

Run from a checkout installed with ``pip install -e .`` (defaults take about a minute on two slow cores)::

    python scripts/bench_attacks.py                      # 64 x 3 x 64 x 64, 3 repetitions, 1 thread
    python scripts/bench_attacks.py --batch 256 --repeats 5 --device cuda
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from functools import partial

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from afsl_bench.attacks.apgd import APGD
from afsl_bench.attacks.pgd import PGD
from afsl_bench.core.precision import autocast, crafting_dtype, native_bf16
from afsl_bench.core.speed import Compile, FrozenModel
from afsl_bench.detectors import DETECTORS


def bare_loop(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int, extra_forward: bool,
    dtype: torch.dtype | None = None,
) -> None:
    """The floor: steps x (forward + input gradient) and a signed step; optionally one last forward; under
    autocast in ``dtype`` when given."""
    x_adv = x.clone()
    for _ in range(steps):
        x_adv.requires_grad_(True)
        with autocast(dtype, x.device):
            logits = model(x_adv)
        (grad,) = torch.autograd.grad(F.cross_entropy(logits.float(), y), x_adv)
        x_adv = x_adv.detach() + 1e-3 * grad.sign()
    if extra_forward:  # APGD scores its last iterate
        with torch.no_grad():
            model(x_adv)


def methods(
    model: nn.Module, steps: int, eps: float, skip: set[str], precisions: list[str] = ()
) -> dict[str, Callable]:
    """name -> f(x, y); the first of each group is the reference its ratios use."""
    pgd = PGD(eps=eps, step_size=eps / 4, steps=steps, early_stop=False)
    apgd = APGD(eps=eps, steps=steps, early_stop=False)
    folded = FrozenModel(model, Compile.AUTO)  # never told about batches: folded + channels-last, eager
    found: dict[str, Callable] = {
        f"bare loop {steps} grad": partial(bare_loop, model, steps=steps, extra_forward=False),
        f"ours PGD-{steps}": partial(pgd, model),
        f"ours PGD-{steps} folded": partial(pgd, folded),
        f"bare loop {steps} grad + 1 fwd": partial(bare_loop, model, steps=steps, extra_forward=True),
        f"ours APGD-{steps}": partial(apgd, model),
        f"ours APGD-{steps} folded": partial(apgd, folded),
    }
    for name in precisions:
        dtype = crafting_dtype(name, next(model.parameters()).device)
        found[f"bare loop {steps} grad {name}"] = partial(bare_loop, model, steps=steps, extra_forward=False,
                                                          dtype=dtype)  # fmt: skip
        found[f"ours PGD-{steps} folded {name}"] = partial(pgd, FrozenModel(model, Compile.AUTO, dtype))
        found[f"ours APGD-{steps} folded {name}"] = partial(apgd, FrozenModel(model, Compile.AUTO, dtype))
    if "compiled" not in skip:
        compiled = FrozenModel(model, Compile.ON)
        found[f"ours PGD-{steps} compiled"] = partial(pgd, compiled)
        found[f"ours APGD-{steps} compiled"] = partial(apgd, compiled)
        found["_compiled"] = compiled  # type: ignore[assignment]  # measure() warms it up and drops it
    if "torchattacks" not in skip:
        import torchattacks

        found[f"torchattacks PGD-{steps}"] = torchattacks.PGD(model, eps=eps, alpha=eps / 4, steps=steps)
        found[f"torchattacks APGD-{steps} (ce)"] = torchattacks.APGD(model, eps=eps, steps=steps, loss="ce")
    if "art" not in skip:
        found[f"ART PGD-{steps}"] = art_pgd(model, steps, eps)
    return found


def art_pgd(model: nn.Module, steps: int, eps: float) -> Callable:
    from art.attacks.evasion import ProjectedGradientDescentPyTorch
    from art.estimators.classification import PyTorchClassifier

    def run(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        clf = PyTorchClassifier(model=model, loss=nn.CrossEntropyLoss(), input_shape=tuple(x.shape[1:]),
                                nb_classes=2, clip_values=(0.0, 1.0), device_type=x.device.type)
        attack = ProjectedGradientDescentPyTorch(clf, norm=np.inf, eps=eps, eps_step=eps / 4, max_iter=steps,
                                                 batch_size=len(x), verbose=False)
        return torch.from_numpy(attack.generate(x.cpu().numpy(), y=y.cpu().numpy()))

    return run


def timed(fn: Callable, x: torch.Tensor, y: torch.Tensor, clock: Callable[[], float]) -> float:
    if x.is_cuda:
        torch.cuda.synchronize()
    start = clock()
    fn(x, y)
    if x.is_cuda:
        torch.cuda.synchronize()
    return clock() - start


def report(times: dict[str, list[float]], steps: int) -> None:
    floors = {"PGD": f"bare loop {steps} grad", "APGD": f"bare loop {steps} grad + 1 fwd"}
    print(f"{'method':34s} {'median s':>9s} {'ratio':>7s}  (reps)")
    for name, values in times.items():
        floor = floors["APGD" if "APGD" in name or "+ 1 fwd" in name else "PGD"]
        median = statistics.median(values)
        ratio = median / statistics.median(times[floor])
        print(f"{name:34s} {median:9.3f} {ratio:7.3f}  {' '.join(f'{v:.2f}' for v in values)}")
    print("PGD ratios are to the float32 bare loop with the same number of gradients; APGD ratios to the bare loop")
    print("plus one forward (APGD scores its last iterate without a gradient). torchattacks' APGD computes")
    print(f"{steps + 1} gradients and one clean forward for {steps} steps.")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--detector", default="resnet", help="a registered detector, built with its defaults")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10)
    # one thread by default: on a shared two-core machine two spinning threads gave 10x outliers
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (0: torch's default)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--precisions", nargs="*", default=["bf16"], choices=["bf16", "fp16"],
                        help="reduced precisions to add (crafting under autocast; none: --precisions)")
    parser.add_argument("--skip", nargs="*", default=[], choices=["torchattacks", "art", "compiled"])
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                        help="cpu: process time, steadier on a shared machine (use with --threads 1)")
    return parser.parse_args()


def measure(todo: dict[str, Callable], x: torch.Tensor, y: torch.Tensor, repeats: int,
            clock: Callable[[], float]) -> dict[str, list[float]]:
    compiled = todo.pop("_compiled", None)
    if compiled is not None:
        compiled.warm_up(x)
        print(f"compile (forward + input gradient, and forward alone): {compiled.compile_s:.1f} s; "
              f"{compiled.runtime()['notes'] or 'no fallback'}")
    for fn in todo.values():  # warm-up on two samples: imports, allocator, kernel selection
        fn(x[:2], y[:2])
    times: dict[str, list[float]] = {name: [] for name in todo}
    names = list(todo)
    for rep in range(repeats):
        # rotate the order each repetition so that no method always runs first (cold caches) or last
        for name in names[rep % len(names):] + names[:rep % len(names)]:
            times[name].append(timed(todo[name], x, y, clock))
    return times


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = DETECTORS.build(args.detector).to(args.device).eval().requires_grad_(False)
    x = torch.rand(args.batch, 3, args.resolution, args.resolution, device=args.device)
    with torch.no_grad():
        y = model(x).argmax(1)  # every sample correctly classified: every library attacks all of them
    params = sum(p.numel() for p in model.parameters())
    print(f"model {args.detector} {params / 1e6:.2f} M params; batch {tuple(x.shape)} on {args.device}, "
          f"{torch.get_num_threads()} threads; early stopping disabled in ours; "
          f"{args.repeats} interleaved reps; {args.clock} clock")
    todo = methods(model, args.steps, 8 / 255, set(args.skip), args.precisions)
    if args.device == "cpu":
        print(f"CPU with native bf16 (AVX512-BF16 / AMX): {native_bf16(torch.device('cpu'))}")
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    report(measure(todo, x, y, args.repeats, clock), args.steps)


if __name__ == "__main__":
    main()
