"""Benchmark: how fast the embedded data set generates (docs/data-design.md, "Generation speed").

Generates ``synthetic`` (every default: 3,000 images at 64 px) ``--repeats`` times per thread count in this
one process, bypassing the process cache, and prints the best time and images/s of each; ``--profile``
prints where one single-thread generation spends its time (cProfile, top functions by own time)::

    python scripts/bench_data.py --threads 1 2 --repeats 3
    python scripts/bench_data.py --profile
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time
from typing import Self

import torch

from afsl_bench.data import synthetic
from afsl_bench.data.synthetic import SyntheticSet, generate_pairs


class Serial:
    """A stand-in for ``ThreadPoolExecutor`` that maps on the calling thread."""

    def __init__(self, max_workers: int) -> None:
        pass

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def map(self, fn, *iterables):
        return list(map(fn, *iterables))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="*", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--profile", action="store_true", help="profile one single-thread generation")
    args = parser.parse_args()
    cfg = SyntheticSet(resolution=args.resolution).generator_config()
    images = 2 * cfg.n_identities * cfg.views
    if args.profile:  # the chunks on this thread, where cProfile sees them
        torch.set_num_threads(1)
        synthetic.ThreadPoolExecutor = Serial
        profile = cProfile.Profile()
        profile.runcall(generate_pairs, cfg)
        pstats.Stats(profile).sort_stats("tottime").print_stats(25)
        return
    print(f"| torch threads | best of {args.repeats} (s) | images/s |\n|---|---|---|")
    for threads in args.threads:
        torch.set_num_threads(threads)
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            generate_pairs(cfg)
            times.append(time.perf_counter() - start)
        print(f"| {threads} | {min(times):.2f} | {images / min(times):,.0f} |", flush=True)


if __name__ == "__main__":
    main()
