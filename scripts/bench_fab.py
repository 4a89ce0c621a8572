"""Benchmark: our FAB against torchattacks' FAB and our APGD on one trained detector, robust accuracy and time.

The model is a cell's trained detector from the checkpoint cache (``afsl_bench.train``: trained first when
the cache lacks it), attacked on the first ``--samples`` images of its data set's test split. Every method
runs once per repetition in a rotating order (one process, so the ratios share the machine's load); the
table gives the robust accuracy (identical across repetitions: every method is seeded) and the median time,
with its ratio to our FAB. FAB and APGD run the same number of steps; torchattacks' FAB attacks only the
correctly classified points, as ours does.

Run from a checkout installed with ``pip install -e .`` and torchattacks (``--no-deps torchattacks==3.5.1``)::

    python scripts/bench_fab.py --results-dir results                      # tiny-cnn + at, 200 images
    python scripts/bench_fab.py --detector meso4 --defense none --steps 50
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import afsl_bench
from afsl_bench.attacks import ATTACKS
from afsl_bench.data import DATASETS

BUDGETS = {"linf": 8 / 255, "l2": 0.5}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--detector", default="tiny-cnn")
    parser.add_argument("--defense", default="at")
    parser.add_argument("--dataset", default="synthetic")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="as afsl-bench --set")
    parser.add_argument("--results-dir", default="results")
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--norm", choices=[*BUDGETS, "both"], default="both")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    model = afsl_bench.train(
        args.detector, args.defense, args.dataset, overrides=args.overrides, results_dir=args.results_dir
    )
    model.threshold.zero_()  # the model's own decision rule, as every attack here assumes
    batch = DATASETS.build(args.dataset).test.batch(torch.arange(args.samples))
    x, y = batch.x.float(), batch.y
    with torch.no_grad():
        clean = (model(x).argmax(1) == y).float().mean().item()
    print(
        f"{args.detector} + {args.defense} on {args.samples} {args.dataset} test images: clean {100 * clean:.1f} %"
    )
    for norm, eps in BUDGETS.items():
        if args.norm not in (norm, "both"):
            continue
        methods = {
            f"ours FAB-{args.steps}": {"name": "fab"},
            f"torchattacks FAB-{args.steps}": {"name": "fab", "backend": "torchattacks"},
            f"ours APGD-CE-{args.steps}": {"name": "apgd"},
        }
        times: dict[str, list[float]] = {m: [] for m in methods}
        robust: dict[str, float] = {}
        for rep in range(args.repeats):
            order = list(methods)[rep % len(methods) :] + list(methods)[: rep % len(methods)]
            for label in order:
                params = dict(methods[label])
                attack = ATTACKS.build(params.pop("name"), eps=eps, norm=norm, steps=args.steps, **params)
                torch.manual_seed(0)
                tic = time.perf_counter()
                x_adv = attack(model, x, y)
                times[label].append(time.perf_counter() - tic)
                with torch.no_grad():
                    robust[label] = (model(x_adv).argmax(1) == y).float().mean().item()
        reference = statistics.median(times[f"ours FAB-{args.steps}"])
        print(
            f"\n{norm} eps={eps:.4g}\n| method | robust acc (%) | median time (s) | time / ours FAB |\n|---|---|---|---|"
        )
        for label in methods:
            t = statistics.median(times[label])
            print(f"| {label} | {100 * robust[label]:.1f} | {t:.2f} | {t / reference:.2f} |")


if __name__ == "__main__":
    main()
