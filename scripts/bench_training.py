"""Benchmark: one training step of AT, TRADES and AFSL, eager vs channels-last vs compiled.

The step is the shared loop's (``defenses.training.train_epoch``): the defense's loss (the inner PGD-10 in
eval mode, the outer loss in train mode), backward, AdamW. Each mode trains its own copy of the same
initial detector under ``afsl_bench.core.speed.FastTraining``: ``off`` (eager), ``auto`` before it decides
to compile (channels-last), ``on`` (channels-last + ``torch.compile`` of the detector's ``embed``). Steps
run interleaved (each repetition steps every mode once, in a rotating order); the compile (the first two
steps of ``on``) is timed apart and left out of the medians. An epoch of the suite's default training
(1,800 images, batch 64) is 29 such steps.

Run from a checkout installed with ``pip install -e .``::

    python scripts/bench_training.py                           # tiny-cnn and resnet, 64 x 64, 1 thread
    python scripts/bench_training.py --detectors meso4 --repeats 3
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time

import torch

from afsl_bench.core.runtime import Compile
from afsl_bench.core.speed import FastTraining
from afsl_bench.core.types import Batch
from afsl_bench.defenses import DEFENSES
from afsl_bench.defenses.base import TrainContext
from afsl_bench.detectors import DETECTORS


def stepper(detector: str, defense_name: str, batch: Batch, stack: contextlib.ExitStack, mode: Compile):
    torch.manual_seed(0)
    model = DETECTORS.build(detector).to(batch.x.device)
    defense = DEFENSES.build(defense_name)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    stack.enter_context(FastTraining(model, mode))
    context = TrainContext(prior_fake=0.5, epoch=1, step=1)

    def step() -> None:
        model.train()
        loss, _ = defense.loss(model, batch, context)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if batch.x.is_cuda:
            torch.cuda.synchronize()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--detectors", nargs="+", default=["tiny-cnn", "resnet"])
    parser.add_argument("--defenses", nargs="+", default=["at", "trades", "afsl"])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(args.batch, 3, args.resolution, args.resolution, generator=gen).to(args.device)
    y = (torch.arange(args.batch) % 2).to(args.device)
    batch = Batch(x, y, [str(i) for i in range(len(y))], [str(i) for i in range(len(y))])
    print(f"batch {tuple(x.shape)} on {args.device}, {torch.get_num_threads()} threads, "
          f"{args.repeats} interleaved reps; seconds per step (median), ratio to eager")
    print(f"{'detector':10s} {'defense':8s} {'eager s':>8s} {'channels-last':>14s} {'compiled':>9s} "
          f"{'compile s':>10s}")
    for detector in args.detectors:
        for defense in args.defenses:
            with contextlib.ExitStack() as stack:
                steps = {mode: stepper(detector, defense, batch, stack, mode) for mode in Compile}
                tic = time.perf_counter()
                steps[Compile.ON]()
                steps[Compile.ON]()  # the inner attack (eval) and outer loss (train) graphs, both compiled
                compile_s = time.perf_counter() - tic
                for mode in (Compile.OFF, Compile.AUTO):
                    steps[mode]()
                times: dict[Compile, list[float]] = {mode: [] for mode in Compile}
                order = list(Compile)
                for rep in range(args.repeats):
                    for mode in order[rep % 3:] + order[:rep % 3]:
                        tic = time.perf_counter()
                        steps[mode]()
                        times[mode].append(time.perf_counter() - tic)
            eager = statistics.median(times[Compile.OFF])
            cl, compiled = (statistics.median(times[m]) / eager for m in (Compile.AUTO, Compile.ON))
            print(f"{detector:10s} {defense:8s} {eager:8.3f} {cl:14.2f} {compiled:9.2f} {compile_s:10.1f}")


if __name__ == "__main__":
    main()
