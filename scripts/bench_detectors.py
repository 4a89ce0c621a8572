"""Benchmark: forward + backward throughput of every registered detector at its native resolution.

Two costs per detector, in images per second (for video detectors, frames: clips x ``--frames``):

- ``attack step``: eval mode, the gradient of the fake logit w.r.t. the input only (one PGD step's work);
- ``train step``: train mode, cross-entropy backward to every parameter (one training step without the
  optimiser update).

Random weights and inputs (the cost does not depend on them); each measurement is the median of
``--repeats`` timed steps after ``--warmup`` untimed ones. Prints a markdown table (the one in the docs).
Runs on the CPU, and on CUDA too when a GPU is available (``--cuda-batch``)::

    python scripts/bench_detectors.py                          # every detector, batch 4, CPU (+ CUDA)
    python scripts/bench_detectors.py --detectors xception r3d-18 --batch 2 --repeats 3 --threads 2
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from afsl_bench.detectors import DETECTORS, Detector


def clip_or_batch(model: Detector, batch: int, frames: int, device: str) -> torch.Tensor:
    size = model.input_size
    shape = (batch, frames, 3, size, size) if model.takes_clips else (batch, 3, size, size)
    return torch.rand(shape, device=device)


def attack_step(model: Detector, x: torch.Tensor) -> None:
    model.eval()
    x = x.clone().requires_grad_()
    torch.autograd.grad(model(x)[:, 1].sum(), x)


def train_step(model: Detector, x: torch.Tensor) -> None:
    model.train()
    labels = torch.arange(len(x), device=x.device) % 2
    model.zero_grad(set_to_none=True)
    F.cross_entropy(model(x), labels).backward()


def median_seconds(step: Callable[[], None], device: str, warmup: int, repeats: int) -> float:
    times = []
    for rep in range(warmup + repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        step()
        if device == "cuda":
            torch.cuda.synchronize()
        if rep >= warmup:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_one(name: str, device: str, batch: int, args: argparse.Namespace) -> str:
    torch.manual_seed(0)
    model = DETECTORS.build(name).to(device)
    x = clip_or_batch(model, batch, args.frames, device)
    images = x.shape[0] * (x.shape[1] if model.takes_clips else 1)
    rates = [
        images / median_seconds(lambda s=step: s(model, x), device, args.warmup, args.repeats)
        for step in (attack_step, train_step)
    ]
    size = f"{model.input_size} px" + (f", clips of {args.frames}" if model.takes_clips else "")
    params = sum(p.numel() for p in model.parameters()) / 1e6
    return f"| {name} | {size} | {params:.2f} | {device} | {batch} | {rates[0]:.1f} | {rates[1]:.1f} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--detectors", nargs="+", default=DETECTORS.names(), metavar="NAME")
    parser.add_argument("--batch", type=int, default=4, help="images (or clips) per step on the CPU")
    parser.add_argument("--cuda-batch", type=int, default=32, help="images (or clips) per step on CUDA")
    parser.add_argument("--frames", type=int, default=8, help="frames per clip for video detectors")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="CPU threads")
    parser.add_argument("--no-cuda", action="store_true", help="CPU only, even with a GPU")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    devices = {"cpu": args.batch}
    if torch.cuda.is_available() and not args.no_cuda:
        devices["cuda"] = args.cuda_batch
    print(f"torch {torch.__version__}, {args.threads} CPU threads, median of {args.repeats} steps")
    print("| detector | input | params (M) | device | batch | attack step images/s | train step images/s |")
    print("|---|---|---:|---|---:|---:|---:|")
    for device, batch in devices.items():
        for name in args.detectors:
            print(bench_one(name, device, batch, args), flush=True)


if __name__ == "__main__":
    main()
