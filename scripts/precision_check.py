"""Check: the same attacks crafted in float32 and in bfloat16 (``--precision``; afsl_bench/core/precision.py)
on trained models, scored as the runner scores them (float32 always). Per model and attack, over ``--seeds``
seeds (the attack's random start): robust accuracy in each precision (mean, and the range over seeds), the
samples whose decision differs between the two precisions at the same seed and which way (bf16 failing where
fp32 broke the sample, or the reverse), and, as the yardstick, the most samples on which two float32 runs of
the same attack with different seeds disagree. A bf16 attack must not report a stronger defense than fp32:
its mean robust accuracy at most 1 sample in 200 above float32's.

The models are the leaderboard's (tiny-cnn and meso4 with the linear head; none, AT, TRADES beta 1, AFSL
beta1 8; seed 0), trained now or loaded from ``--results-dir``'s checkpoint cache; the images the fixed
subset of ``--samples`` test images a cell with ``eval.samples`` attacks (``--split val``: the first
``--samples`` validation images)::

    python scripts/precision_check.py --results-dir results --samples 200 --seeds 3
"""

from __future__ import annotations

import argparse
import itertools
import time

import numpy as np
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
    for defense, overrides in (
        ("none", []),
        ("at", []),
        ("trades", ["defense.beta=1.0"]),
        ("afsl", ["defense.beta1=8.0"]),
    )
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
    parser.add_argument(
        "--attacks", nargs="*", default=list(ATTACKS_COMPARED), choices=list(ATTACKS_COMPARED)
    )
    parser.add_argument("--defenses", nargs="*", default=["none", "at", "trades", "afsl"],
                        choices=["none", "at", "trades", "afsl"])  # fmt: skip
    parser.add_argument("--split", default="test", choices=["test", "val"])
    parser.add_argument("--seeds", type=int, default=3, help="attack seeds 0 .. N-1, each in both precisions")
    args = parser.parse_args()
    options = RunOptions(results_dir=args.results_dir, device="cpu")
    print(
        f"robust accuracy in % on {args.samples} {args.split} images: mean over seeds 0..{args.seeds - 1} (range)"
    )
    print(
        "| model | attack | fp32 | bf16 | differ at one seed: bf16 missed / bf16 found more | fp32 vs fp32, other seed: most differing | s per run fp32 / bf16 |"
    )
    print("|---|---|---|---|---|---|---|")  # fmt: skip
    for detector, defense, overrides in [m for m in MODELS if m[1] in args.defenses]:
        training = plan_training(detector, defense, "synthetic", [*overrides, "detector.head=linear"])
        model, bundle = trained_model(training, options)
        if args.split == "test":
            split = subset_test(bundle, args.samples).test
        else:
            split = bundle.val.subset(torch.arange(min(args.samples, len(bundle.val))))
        labels = split.labels.numpy().astype(bool)
        for label in args.attacks:
            name, params = ATTACKS_COMPARED[label]
            runs, seconds = {}, {None: 0.0, torch.bfloat16: 0.0}
            for dtype, seed in itertools.product(seconds, range(args.seeds)):
                start = time.perf_counter()
                runs[dtype, seed] = robust(model, dtype, ATTACKS.build(name, **params), split, labels, seed)
                seconds[dtype] += (time.perf_counter() - start) / args.seeds
            missed = [int((runs[torch.bfloat16, s] & ~runs[None, s]).sum()) for s in range(args.seeds)]
            more = [int((runs[None, s] & ~runs[torch.bfloat16, s]).sum()) for s in range(args.seeds)]
            spread = max((int((runs[None, a] != runs[None, b]).sum()) for a, b in
                          itertools.combinations(range(args.seeds), 2)), default=0)  # fmt: skip
            cells = [shown([runs[dtype, s] for s in range(args.seeds)]) for dtype in seconds]
            print(f"| {detector} + {defense} | {label} | {cells[0]} | {cells[1]} | "
                  f"{' '.join(f'{m}/{o}' for m, o in zip(missed, more))} | {spread} | "
                  f"{seconds[None]:.0f} / {seconds[torch.bfloat16]:.0f} |", flush=True)  # fmt: skip


def shown(robusts: list[np.ndarray]) -> str:
    """'49.2 (48.5-50.0)': the mean robust accuracy over seeds and its range, in %."""
    values = [100 * r.mean() for r in robusts]
    return f"{np.mean(values):.1f} ({min(values):.1f}-{max(values):.1f})"


def robust(model, dtype, attack, split, labels, seed: int) -> np.ndarray:
    """Per image: whether the attack crafted with ``dtype`` left it correctly classified (float32 scores)."""
    table = score_split(FrozenModel(model, Compile.AUTO, dtype), attack, split, batch_size=256,
                        device=torch.device("cpu"), seed=seed)  # fmt: skip
    return (table["adv_score"].to_numpy() > 0) == labels


if __name__ == "__main__":
    main()
