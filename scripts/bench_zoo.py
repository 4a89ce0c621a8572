"""Benchmark: C&W against ART's CarliniL2Method, and the binary AutoAttack with and without early stopping.

Unlike ``bench_attacks.py`` (random weights suffice for timing PGD steps), both comparisons here depend on
what the attacks achieve, so the model is a trained detector: ``--detector`` + ``--defense`` trained on a
small ``synthetic`` set (or loaded from the checkpoint cache in ``--results-dir``). One batch of test
images, each method timed in one process, interleaved over ``--repeats`` repetitions; reported as medians
and ratios, with the robust accuracy each method left:

- ``cw``: ours (with its per-sample early abort, the default, and without it: equal work) vs ART's
  ``CarliniL2Method`` with the same Adam steps, binary-search steps, initial constant (1.0: ART's search
  only doubles c, so from 0.01 it never reaches a working constant), learning rate and confidence. ART works
  on numpy arrays on the CPU and spends 4-5 model passes per iteration. Target: ours >= 10x faster.
- ``autoattack-binary``: members run only on still-robust points (``early_stop``, as AutoAttack) vs every
  member on every point. Target: >= 2x faster with the same robust accuracy.
- ``pgd``: ``bench_attacks.py``'s comparison (ours PGD / APGD vs the bare forward + input-gradient loop,
  torchattacks, ART; early stopping off) on this trained model and batch, so that every ratio of this
  script comes from one run on one model and one batch. Target: within 1.05x of the bare loop.

Run from a checkout installed with ``pip install -e '.[dev]'``::

    python scripts/bench_zoo.py                       # tiny-cnn, no defense, 128 images, 1 thread
    python scripts/bench_zoo.py --defense at --device cuda --batch 512
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from functools import partial

import bench_attacks  # the sibling script (scripts/ is on sys.path when a script in it runs)
import torch

from afsl_bench.attacks import ATTACKS
from afsl_bench.runner.cell import RunOptions, trained_model
from afsl_bench.runner.plan import plan_cell

SMALL_DATA = ["data.n_identities=60", "data.images_per_identity=8", "data.resolution=64", "train.epochs=4"]


def accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def cw_methods(model: torch.nn.Module, args: argparse.Namespace) -> dict[str, Callable]:
    """Ours with and without its per-sample early abort (equal work: every step on every sample) vs ART,
    which has no early abort (our backend refuses abort_early=True for it)."""
    params = {"steps": args.cw_steps, "search_steps": args.cw_search, "initial_const": 1.0, "lr": 0.01}
    attacks = {
        "ours cw (abort early, the default)": ATTACKS.build("cw", **params),
        "ours cw (no early abort)": ATTACKS.build("cw", **params, abort_early=False),
    }
    if not args.skip_art:
        attacks["ART CarliniL2Method"] = ATTACKS.build("cw", **params, abort_early=False, backend="art")
    return {name: partial(attack, model) for name, attack in attacks.items()}


def ensemble_methods(model: torch.nn.Module, args: argparse.Namespace) -> dict[str, Callable]:
    budget = {"eps": 8 / 255, "steps": args.apgd_steps, "queries": args.queries}
    attacks = {
        "autoattack-binary, early stop": ATTACKS.build("autoattack-binary", **budget),
        "autoattack-binary, every member on every point": ATTACKS.build(
            "autoattack-binary", **budget, early_stop=False
        ),
    }
    return {name: partial(attack, model) for name, attack in attacks.items()}


def measure(methods: dict[str, Callable], model, x, y, repeats: int) -> None:
    times: dict[str, list[float]] = {name: [] for name in methods}
    accs: dict[str, list[float]] = {name: [] for name in methods}
    names = list(methods)
    for rep in range(repeats):
        for name in names[rep % len(names) :] + names[: rep % len(names)]:
            torch.manual_seed(rep)
            if x.is_cuda:
                torch.cuda.synchronize()
            start = time.perf_counter()
            x_adv = methods[name](x, y)
            if x.is_cuda:
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - start)
            accs[name].append(accuracy(model, x_adv, y))
    floor = statistics.median(times[names[0]])
    print(f"{'method':48s} {'median s':>9s} {'x first':>8s} {'robust acc':>11s}")
    for name in names:
        median = statistics.median(times[name])
        print(f"{name:48s} {median:9.2f} {median / floor:8.2f} {statistics.mean(accs[name]):11.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--detector", default="tiny-cnn")
    parser.add_argument("--defense", default="none")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (0: torch's default)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--results-dir", default="results", help="checkpoint cache of the trained model")
    parser.add_argument("--cw-steps", type=int, default=50)
    parser.add_argument("--cw-search", type=int, default=5)
    parser.add_argument("--apgd-steps", type=int, default=50)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--skip-art", action="store_true")
    parser.add_argument("--only", choices=["pgd", "cw", "ensemble"], default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    spec = plan_cell(args.detector, args.defense, "pgd", "synthetic", overrides=SMALL_DATA)
    options = RunOptions(results_dir=args.results_dir, device=args.device)
    model, bundle = trained_model(spec.training, options)
    batch = bundle.test.batch(torch.arange(min(args.batch, len(bundle.test)))).to(model.threshold.device)
    x, y = batch.x, batch.y
    print(
        f"{args.detector} + {args.defense} on synthetic; {len(x)} test images {tuple(x.shape[1:])} on "
        f"{args.device}, {torch.get_num_threads()} threads; clean accuracy {accuracy(model, x, y):.4f}; "
        f"{args.repeats} interleaved repetitions"
    )
    if args.only in (None, "pgd"):
        print("\nPGD / APGD (early stopping off), ratios to the bare loop (as bench_attacks.py)")
        skip = {"art"} if args.skip_art else set()
        todo = bench_attacks.methods(model, args.apgd_steps // 5, 8 / 255, skip)
        bench_attacks.report(
            bench_attacks.measure(todo, x, y, args.repeats, time.perf_counter), args.apgd_steps // 5
        )
    if args.only in (None, "cw"):
        print(f"\nC&W L2: {args.cw_steps} Adam steps x {args.cw_search} binary-search steps")
        measure(cw_methods(model, args), model, x, y, args.repeats)
    if args.only in (None, "ensemble"):
        print(
            f"\nbinary AutoAttack at L-inf 8/255: APGD-CE, APGD-margin ({args.apgd_steps} steps), Square "
            f"({args.queries} queries)"
        )
        measure(ensemble_methods(model, args), model, x, y, args.repeats)


if __name__ == "__main__":
    main()
