"""``afsl-bench certify``: certified robustness of a trained detector by randomized smoothing
(``afsl_bench.runner.certification``; Cohen et al. 2019)."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer
from rich.table import Table

from afsl_bench.cli import render
from afsl_bench.cli.console import err, out, say
from afsl_bench.cli.options import (
    BATCH_SIZE,
    DEVICE,
    RESULTS_DIR,
    SEED,
    BatchSize,
    Device,
    ResultsDir,
    Seed,
    check_batch_size,
)


def certify(
    detector: Annotated[str, typer.Option(help="detector name (afsl-bench list detectors)")] = "tiny-cnn",
    defense: Annotated[
        str, typer.Option(help="the defense it was trained with; smoothing is the one made for it")
    ] = "smoothing",
    dataset: Annotated[
        str, typer.Option(help="training data set; its test split is certified")
    ] = "synthetic",
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="KIND.KEY=VALUE, KIND in detector, defense, data, train (repeatable)"),
    ] = None,
    sigma: Annotated[
        float | None,
        typer.Option(
            help="noise standard deviation on [0, 1] pixels (default: the smoothing defense's, else 0.25)"
        ),
    ] = None,
    n0: Annotated[int, typer.Option(help="noisy copies per image that choose the class")] = 100,
    n: Annotated[int, typer.Option(help="noisy copies per image that estimate its probability")] = 1000,
    alpha: Annotated[float, typer.Option(help="the certificate's failure probability")] = 0.001,
    samples: Annotated[int, typer.Option(help="test images (the fixed subset eval.samples picks)")] = 200,
    eps: Annotated[str, typer.Option(help="the L-inf budget whose enclosing L2 ball is reported")] = "8/255",
    force: Annotated[bool, typer.Option(metavar="", help="recompute a stored certification")] = False,
    as_json: Annotated[bool, typer.Option("--json", metavar="", help="print the result as JSON")] = False,
    results_dir: ResultsDir = RESULTS_DIR,
    device: Device = DEVICE,
    batch_size: BatchSize = BATCH_SIZE,
    seed: Seed = SEED,
) -> None:
    """Certified accuracy at L2 radii of a trained detector made a smoothed classifier (randomized smoothing)."""
    from afsl_bench.cli.progress import RunProgress
    from afsl_bench.core.params import parse_number
    from afsl_bench.runner.cell import RunOptions
    from afsl_bench.runner.certification import CertifySettings, certify_model
    from afsl_bench.runner.plan import plan_training

    check_batch_size(batch_size)
    training = plan_training(detector, defense, dataset, set_ or [], seed)
    noise = sigma if sigma is not None else training.defense.params.get("sigma", 0.25)
    settings = CertifySettings(noise, n0, n, alpha, samples, parse_number(eps))
    options = RunOptions(results_dir=results_dir, device=device, batch_size=batch_size, force=force)
    with RunProgress(err) as progress:
        result = certify_model(
            training, settings, options, progress.callbacks(),
            on_images=lambda done, total: progress.on_phase("certify", done, total),
        )  # fmt: skip
    if as_json:
        sys.stdout.write(json.dumps(result, indent=1) + "\n")
        return
    render.print_table(out, certified_table(result))
    ball = result["linf_ball"]
    say(out, f"abstained on {100 * result['abstain']:.1f} % of {result['n_samples']} images; "
             f"{result['throughput']['noisy_images_per_s']:.0f} noisy images/s; "
             f"the L-inf {render.show(ball['eps'])} ball lies within L2 {ball['l2_radius']:.3f} at "
             f"{'x'.join(map(str, ball['input_shape']))}")  # fmt: skip
    say(out, f"stored: {results_dir}/certified/{result['certify_id']}.json")


def certified_table(result: dict) -> Table:
    """Certified accuracy (%) at each L2 radius, overall and per class."""
    settings = result["spec"]["certify"]
    table = Table(title=f"certified accuracy (randomized smoothing, sigma {settings['sigma']:g}, n {settings['n']}, "
                        f"alpha {settings['alpha']:g})")  # fmt: skip
    for column in ("L2 radius", "certified (%)", "on reals", "on fakes"):
        table.add_column(column, justify="right")
    for radius in result["certified_acc"]:
        cells = (result[k][radius] for k in ("certified_acc", "certified_acc_real", "certified_acc_fake"))
        table.add_row(radius, *(render.pct(v) for v in cells))
    return table
