"""``afsl-bench prepare``: decode a raw data set's videos into a prepared store (``afsl_bench.prepare``)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from afsl_bench.cli import render
from afsl_bench.cli.console import err, out
from afsl_bench.cli.options import LAYOUT, LAYOUT_EXAMPLE, LayoutSetOption


def prepare(
    dataset: Annotated[
        str, typer.Argument(help="raw data set: ff++, faceshifter, deeperforensics, celeb-df, dfdc")
    ],
    root: Annotated[Path, typer.Option(help="the raw data set's folder, in its published layout")],
    store_dir: Annotated[
        Path | None,
        typer.Option("--out", help="the store (default: $AFSL_DATA/<dataset>, else data/prepared/<dataset>)"),
    ] = None,
    frames: Annotated[int, typer.Option(help="frames sampled evenly per video (DeepfakeBench: 32)")] = 32,
    size: Annotated[int, typer.Option(help="crop side in pixels (DeepfakeBench: 256)")] = 64,
    scale: Annotated[float, typer.Option(help="crop side / face box side")] = 1.3,
    face_detector: Annotated[str, typer.Option(help="haar (OpenCV) or mtcnn (facenet-pytorch)")] = "haar",
    workers: Annotated[int, typer.Option(help="processes decoding videos in parallel (0: this one)")] = 2,
    min_score: Annotated[
        float | None,
        typer.Option(help="detector confidence below which a box is no face (default: haar 1.0, mtcnn 0.9)"),
    ] = None,
    set_: LayoutSetOption = None,
) -> None:
    """Decode raw videos, keep one face track over N evenly spaced frames, write a prepared store."""
    from afsl_bench.cli.progress import PrepareProgress
    from afsl_bench.core.params import split_overrides, typed_params
    from afsl_bench.data.prepared import store_path
    from afsl_bench.prepare import LAYOUTS, PrepareOptions
    from afsl_bench.prepare import prepare as run_prepare

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    raw = split_overrides(set_ or [], [LAYOUT], default_kind=LAYOUT, example=LAYOUT_EXAMPLE)[LAYOUT]
    params = {k: p for k, p in LAYOUTS.params_of(dataset).items() if k != "root"}
    layout = typed_params(LAYOUT, dataset, raw, params)
    options = PrepareOptions(frames, size, scale, face_detector, workers, min_score)
    store = store_dir or store_path(dataset, "")
    with PrepareProgress(err, dataset) as progress:
        summary = run_prepare(
            dataset, root, store, options, layout, on_start=progress.on_start, on_video=progress.on_video
        )
    render.prepare_result(out, dataset, summary, store)
