"""``afsl-bench convert-weights``: a source's pickled whole model into a weights-only state dict file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from afsl_bench.cli.console import out

PICKLE_RISK = (
    "a pickle can name code to run when it is read; afsl-bench reads it with PyTorch's weights-only "
    "unpickler, rebuilds only torch.nn modules and tensors and puts empty stand-ins in place of the "
    "file's own classes, but convert only files from the source's official release"
)


def convert_weights(
    source: Annotated[str, typer.Argument(help="the checkpoint's source (e.g. faceforensics)")],
    model_file: Annotated[Path, typer.Argument(help="the pickled whole model, e.g. full_c23.p")],
    output: Annotated[Path, typer.Argument(help="where to write the state dict, e.g. full_c23.pt")],
    allow_pickle: Annotated[
        bool, typer.Option("--allow-pickle", help=f"required: read a pickled model ({PICKLE_RISK})")
    ] = False,
) -> None:
    """Write the state dict of a source's pickled whole model (FaceForensics++ ships its Xception so) as a
    weights-only file, for --set detector.weights=SOURCE:OUTPUT."""
    from afsl_bench.core.errors import ConfigError
    from afsl_bench.core.io import atomic_write
    from afsl_bench.detectors.sources import SOURCES
    from afsl_bench.detectors.sources.pickled import read_pickled_model

    known = SOURCES.get(source)
    pickled = sorted(name for name, s in SOURCES.items() if s.pickled_namespaces)
    if known is None or not known.pickled_namespaces:
        raise ConfigError(
            f"source '{source}' ships no pickled models to convert; sources that do: {', '.join(pickled)} "
            f"(the others' files load directly: --set detector.weights={source}:PATH)"
        )
    if not allow_pickle:
        raise ConfigError(
            f"{model_file} is a pickled model; pass --allow-pickle to convert it ({PICKLE_RISK})"
        )
    if not model_file.is_file():
        raise ConfigError(f"model file not found: {model_file}")
    state = read_pickled_model(model_file, known.pickled_namespaces)
    import torch

    atomic_write(output, lambda tmp: torch.save(state, tmp))
    out.print(f"wrote {len(state)} tensors to {output}; use --set detector.weights={source}:{output}")
