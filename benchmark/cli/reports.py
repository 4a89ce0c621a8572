"""The commands that read: ``list`` (the registries), ``plot``, ``leaderboard``, ``table`` and ``tune`` (the
store).

Nothing here runs a cell; heavy modules (the registries, pandas, matplotlib) are imported inside the
functions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from afsl_bench.cli import render
from afsl_bench.cli.console import err, out, say
from afsl_bench.cli.options import RESULTS_DIR, ResultsDir, TableFormat
from afsl_bench.core.errors import ConfigError


def list_components(
    kind: Annotated[str, typer.Argument(help="attacks, defenses, detectors, datasets or train")],
    params: Annotated[
        bool, typer.Option("--params", metavar="", help="also show each component's parameters")
    ] = False,
) -> None:
    """List registered components with a one-line description (``train``: the training settings)."""
    from afsl_bench.cli import listing

    typed, kind = kind, {"training": "train"}.get(kind, kind if kind in listing.KINDS else kind + "s")
    if kind not in listing.KINDS:
        raise ConfigError(f"unknown kind '{typed}'; choose one of {', '.join(listing.KINDS)}")
    entry = listing.entry(kind)
    render.print_table(
        out, render.settings_table(entry) if kind == "train" else render.components_table(entry, params)
    )
    if entry.get("weights"):
        render.print_table(out, render.weights_table(entry))


def plot(
    results_dir: ResultsDir = RESULTS_DIR,
    out_dir: Annotated[
        Path | None, typer.Option(help="where to write (default: <results-dir>/plots)")
    ] = None,
    attack: Annotated[
        str | None,
        typer.Option(help="only this attack (its name, e.g. apgd, or its label as `table` shows it)"),
    ] = None,
    eps: Annotated[str | None, typer.Option(help="only this budget, e.g. 8/255 or 0.03")] = None,
    detector: Annotated[str | None, typer.Option(help="only this detector (name or label)")] = None,
) -> None:
    """Plots from the stored records (PNG and SVG): robust accuracy vs eps, clean vs robust, cross-dataset."""
    from afsl_bench.report.plots import render_all
    from afsl_bench.report.tables import load, select
    from afsl_bench.store.disk import RecordStore

    frame = select(load(results_dir), attack=attack, eps=eps, detector=detector)
    chosen = frame["attack"].iloc[0] if attack and frame["attack"].nunique() == 1 else None
    written, skipped = render_all(frame, out_dir or RecordStore(results_dir).plots, chosen)
    for path in written:
        say(out, f"wrote {path}")
    for name, why in skipped.items():
        say(err, f"skipped {name}: {why}")
    if len(frame) == 1:
        say(err, "note: one record: each plot has one point; a sweep (e.g. afsl-bench sweep suites/smoke.toml) "
                 "gives the curves")  # fmt: skip
    if not written:
        raise ConfigError(f"no plot could be drawn from the records in {results_dir}; see the reasons above")


def leaderboard(
    suite: Annotated[Path, typer.Option(help="the leaderboard's suite")] = Path("suites/leaderboard.toml"),
    results_dir: ResultsDir = RESULTS_DIR,
    output: Annotated[Path, typer.Option(help="the page whose generated block is rewritten")] = Path(
        "leaderboard.md"
    ),
    export: Annotated[Path, typer.Option(help="the compact copy of the records (committed)")] = Path(
        "results/leaderboard/records.jsonl"
    ),
    from_export: Annotated[
        bool,
        typer.Option(
            metavar="", help="re-render from the committed copy instead of the store (no records needed)"
        ),
    ] = False,
    partial: Annotated[
        bool, typer.Option(metavar="", help="render even when some cells have no record yet")
    ] = False,
    plots: Annotated[
        bool, typer.Option(metavar="", help="redraw the plots (--no-plots keeps the files there)")
    ] = True,
    html: Annotated[
        Path | None,
        typer.Option(help="also write the leaderboard as a static site in this folder (index.html + plots)"),
    ] = None,
) -> None:
    """Rewrite leaderboard.md's generated block, its plots and the RobustBench model_info entries (and with
    --html, a static site: sortable, filterable tables of every cell, their records and the plots)."""
    from afsl_bench.core.io import atomic_write_text
    from afsl_bench.report import leaderboard as lb
    from afsl_bench.runner.sweep import load_suite

    if not output.is_file():
        raise ConfigError(f"'{output}' does not exist; create it with the markers {lb.BEGIN} and {lb.END}")
    loaded = load_suite(suite)
    certified_export = export.parent / lb.CERTIFIED.name
    if from_export:
        records, certified = lb.read_export(export), lb.read_certified(certified_export)
    else:
        kept = lb.read_export(export) if export.is_file() else []
        records = lb.collect(loaded, results_dir, partial, kept)
        certified = lb.collect_certified(loaded, results_dir, partial, lb.read_certified(certified_export))
        lb.write_export(export, records)
        if certified or certified_export.is_file():
            lb.write_certified(certified_export, certified)
    plots_dir = export.parent / "plots"
    if plots:
        _redraw(records, plots_dir)
    missing = lb.missing_cells(loaded, records)
    banner = lb.incomplete(missing, len(loaded.cells), lb.pending_note(export.parent / lb.PENDING.name))
    block = lb.render(records, suite, lb.plot_links(plots_dir, output), banner, certified)
    atomic_write_text(output, lb.replace_block(output.read_text(), block))
    entries = lb.write_model_info(export.parent / "model_info", lb.model_info(records) if records else {})
    if html is not None:
        from afsl_bench.report.site import write_site

        note = banner.removeprefix("> ").replace("**", "")
        page = write_site(records, html, plots_dir, f"afsl-bench leaderboard ({suite})", note)
        say(out, f"site: {page} ({len(records)} cells; opens from disk, no network requests)")
    say(
        out,
        f"{output}: generated block rewritten from {len(records)} records ({export}); "
        f"{len(entries)} RobustBench model_info entries in {export.parent / 'model_info'}",
    )


def _redraw(records: list[Any], plots_dir: Path) -> None:
    """Replace the leaderboard's plots: a plot the records no longer support must not stay linked."""
    from afsl_bench.report.plots import render_all
    from afsl_bench.report.tables import tidy

    for old in [*plots_dir.glob("*.png"), *plots_dir.glob("*.svg")]:
        old.unlink()
    if records:
        _, skipped = render_all(tidy(records), plots_dir)
        for name, why in skipped.items():
            say(err, f"skipped plot {name}: {why}")


def table(
    metric: Annotated[str, typer.Option(help="a record metric, e.g. robust_acc, clean_acc, robust_auc")] = (
        "robust_acc"
    ),
    rows: Annotated[str, typer.Option(help="dimension down the table")] = "defense",
    columns: Annotated[str, typer.Option(help="dimension across the table")] = "attack",
    fmt: Annotated[TableFormat, typer.Option("--format", help="rich, csv or markdown")] = TableFormat.RICH,
    results_dir: ResultsDir = RESULTS_DIR,
) -> None:
    """Pivot tables of a metric from the stored records (mean ± std over seeds, in %); nothing is re-run."""
    from afsl_bench.report.tables import load, pivot

    render.pivots(out, pivot(load(results_dir), metric, rows, columns), metric, rows, fmt)


def tune(
    suite: Annotated[Path, typer.Argument(help="a tuning suite, e.g. suites/tuning.toml")],
    results_dir: ResultsDir = RESULTS_DIR,
) -> None:
    """Choose each defense's parameters and the head on VALIDATION robust accuracy (APGD-CE, recorded at the
    end of training) from a swept tuning suite; writes <results-dir>/tuning/<suite>.json."""
    from afsl_bench.report import tuning
    from afsl_bench.runner.sweep import load_suite

    loaded = load_suite(suite)
    found = tuning.candidates(loaded, results_dir)
    choice = tuning.choose(found)
    path = tuning.write(Path(results_dir) / "tuning" / f"{suite.stem}.json", loaded, found, choice)
    render.print_table(out, render.tuning_table(found, choice))
    say(out, f"wrote {path}")
