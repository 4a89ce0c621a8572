"""``afsl-bench ceiling``: the best robust accuracy any classifier can reach on a data set's split."""

from __future__ import annotations

from typing import Annotated

import typer

from afsl_bench.cli import render
from afsl_bench.cli.console import out

#: the budgets of the ceiling table in docs/data.md
BUDGETS = ["2/255", "4/255", "8/255", "16/255"]


def ceiling(
    dataset: Annotated[str, typer.Argument(help="a registered data set (afsl-bench list datasets)")],
    eps: Annotated[
        list[str] | None,
        typer.Option(help="L-inf budgets, repeatable (default: 2/255, 4/255, 8/255, 16/255)"),
    ] = None,
    split: Annotated[str, typer.Option(help="train, val or test")] = "test",
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="a data set parameter, KEY=VALUE or data.KEY=VALUE (repeatable)"),
    ] = None,
) -> None:
    """Exact robust-accuracy ceiling of a split: 1 - max matching of reals and fakes within 2 eps (L-inf)."""
    from afsl_bench.core.errors import ConfigError
    from afsl_bench.core.params import coerce, split_overrides, typed_params
    from afsl_bench.data import DATASETS
    from afsl_bench.data.ceiling import ceilings

    if split not in ("train", "val", "test"):
        raise ConfigError(f"--split {split}: choose train, val or test")
    budgets = [coerce(text, float) for text in eps or BUDGETS]
    if any(not 0 < b < 1 for b in budgets):
        raise ConfigError(f"--eps {', '.join(eps or [])}: budgets are in [0, 1] pixel units, e.g. 8/255")
    raw = split_overrides(set_ or [], ["data"], default_kind="data", example="n_identities=50")["data"]
    bundle = DATASETS.build(dataset, **typed_params("data", dataset, raw, DATASETS.params_of(dataset)))
    render.ceiling_result(out, dataset, split, ceilings(bundle.split(split), budgets))
