"""Benchmark: Square (L-inf) with its candidates in the model's channels-last layout against the standard
layout (docs/speed.md, "Channels-last"), in one process, the same model and images, best of ``--repeats``.

A random-weight detector under ``--compile auto`` (folded, channels-last); its labels are its own
predictions, so every image stays in the search for all ``--queries``. Also checks that both layouts give
the same examples::

    python scripts/bench_square.py --detector tiny-cnn --images 256 --queries 300 --repeats 4
"""

from __future__ import annotations

import argparse
import time

import torch

from afsl_bench.attacks import ATTACKS
from afsl_bench.attacks.ops import Reshaped
from afsl_bench.core.speed import FrozenModel
from afsl_bench.detectors.base import DETECTORS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--detector", default="tiny-cnn")
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=4)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = FrozenModel(DETECTORS.build(args.detector).eval(), "auto")
    x = torch.rand(args.images, 3, args.resolution, args.resolution)
    with torch.no_grad():
        y = model(x).argmax(1)
    attack = ATTACKS.build("square", queries=args.queries)
    layouts = {"standard": x.contiguous(), "channels-last": x.contiguous(memory_format=torch.channels_last)}
    seconds: dict[str, list[float]] = {name: [] for name in layouts}
    examples = {}
    for _ in range(args.repeats):
        for name, images in layouts.items():  # interleaved: a noisy machine slows both alike
            torch.manual_seed(1)
            start = time.perf_counter()
            with torch.no_grad():
                examples[name] = attack.search(Reshaped(model, tuple(x.shape[1:])), images, y)[0]
            seconds[name].append(time.perf_counter() - start)
    best = {name: min(times) for name, times in seconds.items()}
    print(f"{args.detector}, {args.images} images at {args.resolution} px, {args.queries} queries, best of "
          f"{args.repeats}: standard {best['standard']:.2f} s, channels-last {best['channels-last']:.2f} s "
          f"({best['channels-last'] / best['standard']:.2f}); same examples: "
          f"{torch.equal(examples['standard'], examples['channels-last'])}")  # fmt: skip


if __name__ == "__main__":
    main()
