"""Check: the same attacks crafted in float32 and in bfloat16 (``--precision``; afsl_bench/core/precision.py)
on trained models, scored as the runner scores them (float32 always). Per model and attack: robust accuracy
in each precision, the samples whose decision differs, and which way (bf16 failing where fp32 broke the
sample, or the reverse); a bf16 attack must never report a stronger defense than fp32 by more than one sample
in 200.

The models are the leaderboard's (tiny-cnn and meso4 with the linear head; none, AT, TRADES beta 1, AFSL
beta1 8; seed 0), trained now or loaded from ``--results-dir``'s checkpoint cache; the images the fixed
subset of ``--samples`` test images a cell with ``eval.samples`` attacks::

    python scripts/precision_check.py --results-dir results --samples 200
"""

from __future__ import annotations

import argparse
import time

import torch

from afsl_bench.attacks import ATTACKS
from afsl_bench.core.runtime import Compile
from afsl_bench.core.speed import FrozenModel
from afsl_bench.runner.cell import RunOptions, subset_test, trained_model
from afsl_bench.runner.evaluation import score_split
from afsl_bench.runner.plan import plan_training

MODELS = [
    (detector, defense, overrides)
    for detector in ("tiny-cnn", "meso4")
    for defense, overrides in (("none", []), ("at", []), ("trades", ["defense.beta=1.0"]), ("afsl", ["defense.beta1=8.0"]))
]
ATTACKS_COMPARED = {
    "PGD-10": ("pgd", {"steps": 10}),
    "APGD-100": ("apgd", {"steps": 100}),
    "autoattack-binary": ("autoattack-binary", {"queries": 500}),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results-dir", default="results")
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--attacks", nargs="*", default=list(ATTACKS_COMPARED), choices=list(ATTACKS_COMPARED))
    parser.add_argument("--defenses", nargs="*", default=["none", "at", "trades", "afsl"],
                        choices=["none", "at", "trades", "afsl"])  # fmt: skip
    args = parser.parse_args()
    options, cpu = RunOptions(results_dir=args.results_dir, device="cpu"), torch.device("cpu")
    print("| model | attack | robust fp32 | robust bf16 | decisions differ | bf16 missed / bf16 found more | s fp32 / bf16 |")
    print("|---|---|---|---|---|---|---|")
    for detector, defense, overrides in [m for m in MODELS if m[1] in args.defenses]:
        training = plan_training(detector, defense, "synthetic", [*overrides, "detector.head=linear"])
        model, bundle = trained_model(training, options)
        split = subset_test(bundle, args.samples).test
        labels = split.labels.numpy().astype(bool)
        for label in args.attacks:
            name, params = ATTACKS_COMPARED[label]
            robust, seconds = {}, {}
            for dtype in (None, torch.bfloat16):
                start = time.perf_counter()
                table = score_split(FrozenModel(model, Compile.AUTO, dtype), ATTACKS.build(name, **params), split,
                                    batch_size=256, device=cpu, seed=0)  # fmt: skip
                seconds[dtype] = time.perf_counter() - start
                robust[dtype] = (table["adv_score"].to_numpy() > 0) == labels
            fp32, bf16 = robust[None], robust[torch.bfloat16]
            missed, more = int((bf16 & ~fp32).sum()), int((fp32 & ~bf16).sum())
            print(f"| {detector} + {defense} | {label} | {100 * fp32.mean():.1f} | {100 * bf16.mean():.1f} | "
                  f"{missed + more} | {missed} / {more} | {seconds[None]:.0f} / {seconds[torch.bfloat16]:.0f} |",
                  flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
