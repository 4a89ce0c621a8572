"""``afsl-bench predict``: P(fake) of images, folders or videos from a detector with weights (or a model the
store trained), optionally under an attack, with the adversarial images and side-by-side pictures."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from afsl_bench.cli.console import err, out, say
from afsl_bench.cli.options import DEVICE, RESULTS_DIR, SEED, Device, ResultsDir, Seed
from afsl_bench.core.errors import ConfigError


def predict(
    inputs: Annotated[
        list[Path], typer.Argument(help="images, videos, or folders of them", show_default=False)
    ],
    detector: Annotated[str, typer.Option(help="detector name (afsl-bench list detectors)")] = "meso4",
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="KIND.KEY=VALUE, KIND in detector, attack (repeatable); e.g. --set detector.weights=mesonet:Meso4_DF",
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(help="instead of --detector: the train_id of a model the results folder trained"),
    ] = None,
    attack: Annotated[
        str | None, typer.Option(help="also attack each input (afsl-bench list attacks)")
    ] = None,
    face_detector: Annotated[
        str | None, typer.Option(help="crop the largest face first: haar or mtcnn (default: the whole image)")
    ] = None,
    frames: Annotated[int, typer.Option(help="frames per video, evenly spaced")] = 16,
    size: Annotated[
        int | None, typer.Option(help="input side in pixels (default: the detector's native size)")
    ] = None,
    save_adv: Annotated[
        Path | None,
        typer.Option(
            help="with --attack: write each adversarial image (PNG) and a side-by-side picture here"
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", metavar="", help="print JSON rows on stdout")] = False,
    as_csv: Annotated[bool, typer.Option("--csv", metavar="", help="print CSV on stdout")] = False,
    results_dir: ResultsDir = RESULTS_DIR,
    device: Device = DEVICE,
    seed: Seed = SEED,
) -> None:
    """P(fake) per image (per frame and the mean for a video), and with --attack what the attack does to it."""
    import torch

    from afsl_bench.attacks import ATTACKS
    from afsl_bench.cli import render
    from afsl_bench.cli.progress import RunProgress
    from afsl_bench.core.env import resolve_device
    from afsl_bench.core.params import split_overrides, typed_params
    from afsl_bench.detectors import DETECTORS
    from afsl_bench.runner import predict as run
    from afsl_bench.runner.plan import build_attack, component_of

    if save_adv is not None and attack is None:
        raise ConfigError("--save-adv writes adversarial images: give an --attack too (e.g. --attack pgd)")
    if frames < 1:
        raise ConfigError(f"--frames {frames}: give at least 1 frame per video")
    raw = split_overrides(set_ or [], ["detector", "attack"])
    torch.manual_seed(seed)
    if model is not None:
        if raw["detector"]:
            raise ConfigError("--model loads a trained model as it is: drop --set detector.*")
        network = run.store_model(model, results_dir)
    else:
        params = typed_params("detector", detector, raw["detector"], DETECTORS.params_of(detector))
        network = DETECTORS.build(detector, **params).eval()
    bound = None
    if attack is not None:
        params = typed_params("attack", attack, raw["attack"], ATTACKS.params_of(attack))
        bound = build_attack(component_of(ATTACKS, attack, params))
    elif raw["attack"]:
        raise ConfigError("--set attack.* needs an --attack")
    where = resolve_device(device)
    items = run.load_items(inputs, size or network.input_size, face_detector, frames)
    say(
        err,
        f"scoring {len(items)} image(s) with {model or detector}" + (f" under {attack}" if attack else ""),
    )
    with RunProgress(err) as progress:
        label = "attack + scoring" if bound is not None else "scoring"
        table, adversarial = run.predict(
            network.to(where),
            items,
            bound,
            where,
            on_batch=lambda done, total: progress.on_phase(label, done, total),
        )
    videos = run.video_means(table)
    if as_json:
        sys.stdout.write(table.to_json(orient="records", indent=1) + "\n")
    elif as_csv:
        sys.stdout.write(table.to_csv(index=False))
    else:
        render.print_table(out, render.predictions_table(table))
        if len(videos):
            render.print_table(out, render.video_means_table(videos))
    if save_adv is not None and adversarial is not None:
        written = run.save_adversarial(items, adversarial, save_adv)
        say(err, f"wrote {len(written)} files to {save_adv} (*_adv.png, *_side_by_side.png)")
