"""The ``afsl-bench`` command line (typer + rich).

User errors (``ConfigError``) print one line and exit with code 2; Ctrl-C exits with 130, keeping the
partial training checkpoint so the same command resumes. Results go to stdout (a table, or the record as
JSON with ``--json``); progress goes to stderr.
"""

from __future__ import annotations

import functools
import itertools
import json
import logging
import sys
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from benchmark.errors import ConfigError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="afsl-bench: adversarial robustness of deepfake detectors (detectors x defenses x attacks x data sets).",
)
out = Console()
err = Console(stderr=True)


def user_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """One readable line and exit code 2 for a user error; 130 and a resume hint for Ctrl-C."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except ConfigError as error:
            err.print(f"[bold red]error:[/] {error}", markup=True, highlight=False)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            err.print("interrupted: no record was written; rerun the same command to resume training.")
            raise typer.Exit(130) from None

    return wrapper


def _registries() -> dict[str, Any]:
    from attacks import ATTACKS
    from benchmark.data import DATASETS
    from defenses import DEFENSES
    from detectors import DETECTORS

    return {"attacks": ATTACKS, "defenses": DEFENSES, "detectors": DETECTORS, "datasets": DATASETS}


@app.command("list")
@user_errors
def list_components(
    kind: Annotated[str, typer.Argument(help="attacks, defenses, detectors or datasets")],
    params: Annotated[bool, typer.Option("--params", help="also show each component's parameters")] = False,
) -> None:
    """List registered components with a one-line description."""
    registries = _registries()
    registry = registries.get(kind) or registries.get(kind + "s")
    if registry is None:
        raise ConfigError(f"unknown kind '{kind}'; choose one of {', '.join(registries)}")
    table = Table(title=f"{registry.kind}s", show_lines=params)
    table.add_column("name", style="bold")
    table.add_column("description")
    if params:
        table.add_column("parameters (default)")
    for name in registry.names():
        row = [name, registry.describe(name)]
        if params:
            row.append("\n".join(f"{p.name}={_show(p.default)}" for p in registry.params_of(name).values()))
        table.add_row(*row)
    out.print(table)


def _show(value: Any) -> str:
    if isinstance(value, float):
        k = value * 255
        return f"{k:.0f}/255" if abs(k - round(k)) < 1e-9 and 0 < value < 1 and k >= 1 else f"{value:g}"
    return str(getattr(value, "value", value))


@app.command()
@user_errors
def run(
    detector: Annotated[str, typer.Option(help="detector name (afsl-bench list detectors)")] = "tiny-cnn",
    defense: Annotated[str, typer.Option(help="training defense (afsl-bench list defenses)")] = "none",
    attack: Annotated[str, typer.Option(help="attack (afsl-bench list attacks)")] = "pgd",
    dataset: Annotated[str, typer.Option(help="training data set (afsl-bench list datasets)")] = "synthetic",
    eval_dataset: Annotated[str | None, typer.Option(help="evaluation data set (default: --dataset)")] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="override a parameter: KIND.KEY=VALUE, KIND in detector, defense, "
            "attack, data, eval, train; e.g. --set attack.eps=8/255",
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="training and attack seed")] = 0,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N")] = "auto",
    batch_size: Annotated[int, typer.Option(help="evaluation batch size (does not change results)")] = 256,
    results_dir: Annotated[Path, typer.Option(help="where records and checkpoints are stored")] = Path(
        "results"
    ),
    force: Annotated[bool, typer.Option(help="recompute even if this cell has a finished record")] = False,
    checks: Annotated[
        bool, typer.Option(help="run the gradient-masking probes (docs/checks.md) and record their flags")
    ] = True,
    as_json: Annotated[bool, typer.Option("--json", help="print the record as JSON on stdout")] = False,
) -> None:
    """Train (or load) a detector with a defense, attack it, print and store one result record."""
    from benchmark.cli_progress import RichProgress
    from benchmark.runner import RunOptions, plan_cell, run_cell

    logging.basicConfig(level=logging.WARNING)
    if batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1, got {batch_size}")
    spec = plan_cell(detector, defense, attack, dataset, eval_dataset, set_ or [], seed)
    options = RunOptions(
        results_dir=results_dir, device=device, batch_size=batch_size, force=force, checks=checks
    )
    with RichProgress(err, disable=not sys.stderr.isatty()) as progress:
        outcome = run_cell(spec, options, progress.callbacks())
    if as_json:
        sys.stdout.write(json.dumps(outcome.record, indent=2, sort_keys=True) + "\n")
        return
    out.print(result_table(outcome.record, outcome.cached))
    if warning := flags_line(outcome.record):
        out.print(warning)
    out.print(f"record: {Path(results_dir) / 'records' / (outcome.record['cell_id'] + '.json')}")


class ExecutorKind(StrEnum):
    LOCAL = "local"
    RAY = "ray"


@app.command()
@user_errors
def sweep(
    suite: Annotated[Path, typer.Argument(help="a suite file, e.g. suites/smoke.toml")],
    dry_run: Annotated[bool, typer.Option(help="list cached and to-run cells; run nothing")] = False,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N")] = "auto",
    batch_size: Annotated[int, typer.Option(help="evaluation batch size (does not change results)")] = 256,
    results_dir: Annotated[Path, typer.Option(help="where records and checkpoints are stored")] = Path(
        "results"
    ),
    checks: Annotated[bool, typer.Option(help="run the gradient-masking probes in every cell")] = True,
    executor: Annotated[
        ExecutorKind, typer.Option(help="local: cells one after another here; ray: cells as Ray tasks")
    ] = ExecutorKind.LOCAL,
    address: Annotated[
        str | None,
        typer.Option(help="with --executor ray: the cluster, host:port or auto (default: a local Ray)"),
    ] = None,
) -> None:
    """Run every cell of a suite file (finished cells are skipped; a failing cell is recorded, the rest run)."""
    import time
    from datetime import timedelta

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Column

    from benchmark.executors import LocalExecutor, RayExecutor
    from benchmark.runner import RunOptions
    from benchmark.sweep import describe, load_suite, plan_status, run_sweep

    logging.basicConfig(level=logging.WARNING)
    plan = load_suite(suite)  # every cell validated before anything runs
    cached, todo = plan_status(plan, results_dir)
    if dry_run:
        table = Table(title=f"{plan.name}: {len(plan.cells)} cells, {len(cached)} cached, {len(todo)} to run")
        table.add_column("cell")
        table.add_column("status")
        table.add_column("what")
        for cell in plan.cells:
            table.add_row(cell.cell_id, "cached" if cell in cached else "to run", describe(cell))
        out.print(table)
        return
    if address is not None and executor is not ExecutorKind.RAY:
        raise ConfigError(f"--address {address} is a Ray cluster; add --executor ray to run there")
    runner = RayExecutor(address) if executor is ExecutorKind.RAY else LocalExecutor()
    options = RunOptions(results_dir=results_dir, device=device, batch_size=batch_size, checks=checks)
    columns = (
        TextColumn("{task.description}"),
        BarColumn(bar_width=24),
        MofNCompleteColumn(),
        TextColumn("{task.fields[counts]}"),
        TimeElapsedColumn(),
        TextColumn("{task.fields[left]}"),
        TextColumn("[dim]{task.fields[cell]}", table_column=Column(no_wrap=True, max_width=48)),
    )
    start, started = time.monotonic(), [0]
    with Progress(*columns, console=err, disable=not sys.stderr.isatty()) as bar:
        task = bar.add_task(plan.name, total=len(plan.cells), counts="", left="", cell="")

        def on_cell(cell: Any, status: str, progress: Any) -> None:
            """Counts of done / cached / running / failed cells; time left from the cells run so far."""
            started[0] += status == "running"
            finished = len(progress.done) + len(progress.cached) + len(progress.failed)
            ran = len(progress.done) + len(progress.failed)
            left = max(0, len(todo) - ran) * (time.monotonic() - start) / ran if ran else None
            bar.update(
                task,
                completed=finished,
                counts=f"done {len(progress.done)}, cached {len(progress.cached)}, "
                f"running {started[0] - finished}, failed {len(progress.failed)}",
                left="left ?" if left is None else f"left ~{timedelta(seconds=round(left))}",
                cell=describe(cell) if status == "running" else "",
            )
            if status == "failed":
                bar.console.log(f"[red]failed[/] {describe(cell)} (the error is in its record)")

        outcome = run_sweep(plan, options, on_cell, runner)
    out.print(
        f"{plan.name}: {len(outcome.done)} run, {len(outcome.cached)} cached, {len(outcome.failed)} failed "
        f"in {outcome.seconds:.0f} s; records in {Path(results_dir) / 'records'}"
    )
    if outcome.failed:
        raise typer.Exit(1)


@app.command()
@user_errors
def check(
    baseline: Annotated[Path, typer.Option(help="the committed baseline")] = Path("results/baseline.json"),
    suite: Annotated[Path | None, typer.Option(help="the suite (default: the one the baseline names)")] = None,
    tolerance: Annotated[
        float | None, typer.Option(help="allowed drop per metric (default: the baseline's, else 0.02)")
    ] = None,
    update: Annotated[bool, typer.Option(help="rewrite the baseline from the current results")] = False,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N")] = "cpu",
    results_dir: Annotated[Path, typer.Option(help="where records and checkpoints are stored")] = Path(
        "results"
    ),
) -> None:
    """CI gate: run the baseline's suite (cached cells are read) and fail when a metric dropped."""
    from benchmark.gate import TOLERANCE, compare, current_metrics, read_baseline, suite_of, write_baseline
    from benchmark.runner import RunOptions

    logging.basicConfig(level=logging.WARNING)
    known = read_baseline(baseline) if (not update or baseline.is_file()) else None
    plan = suite_of(known, suite)
    allowed = tolerance if tolerance is not None else (known or {}).get("tolerance", TOLERANCE)
    options = RunOptions(results_dir=results_dir, device=device, checks=False)
    current = current_metrics(plan, options)
    if update:
        write_baseline(baseline, plan, current, allowed)
        out.print(f"baseline {baseline} rewritten: {len(current)} cells of {plan.path}")
        return
    result = compare(known, current, allowed)
    shown = Table(title=f"afsl-bench check: {plan.path} vs {baseline} (tolerance {allowed})")
    for column in ("cell", "metric: baseline -> current", "verdict"):
        shown.add_column(column, overflow="fold")
    for cell, rows in itertools.groupby(result.rows, key=lambda r: r["cell"]):
        rows = list(rows)
        change = "; ".join(
            f"{r['metric']}: {_number(r['baseline'])} -> {_number(r['current'])}" for r in rows if r["metric"] != "-"
        )
        problems = [f"{r['metric']} {r['why']}" for r in rows if not r["ok"]]
        notes = [r["why"] for r in rows if r["ok"] and r["why"]]
        verdict = "[bold red]FAIL[/] " + "; ".join(problems) if problems else "[green]ok[/] " + "; ".join(notes)
        shown.add_row(f"{cell}\n{rows[0]['what']}", change, verdict)
    out.print(shown)
    if result.failures:
        for row in result.failures:
            err.print(
                f"regression: cell {row['cell']} ({row['what']}) {row['metric']}: {row['why']}", highlight=False
            )
        raise typer.Exit(1)
    out.print(f"ok: {len(result.rows)} checks within {allowed}")


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


@app.command()
@user_errors
def plot(
    results_dir: Annotated[Path, typer.Option(help="the record store to read")] = Path("results"),
    out_dir: Annotated[Path | None, typer.Option(help="where to write (default: <results-dir>/plots)")] = None,
) -> None:
    """Plots from the stored records (PNG and SVG): robust accuracy vs eps, clean vs robust, cross-dataset."""
    from benchmark.plots import render_all
    from benchmark.tables import load

    target = out_dir or Path(results_dir) / "plots"
    written, skipped = render_all(load(results_dir), target)
    for path in written:
        out.print(f"wrote {path}", highlight=False)
    for name, why in skipped.items():
        err.print(f"skipped {name}: {why}", highlight=False)
    if not written:
        raise ConfigError(f"no plot could be drawn from the records in {results_dir}; see the reasons above")


@app.command()
@user_errors
def leaderboard(
    suite: Annotated[Path, typer.Option(help="the leaderboard's suite")] = Path("suites/leaderboard.toml"),
    results_dir: Annotated[Path, typer.Option(help="the record store to read")] = Path("results"),
    output: Annotated[Path, typer.Option(help="the page whose generated block is rewritten")] = Path(
        "leaderboard.md"
    ),
    export: Annotated[Path, typer.Option(help="the compact copy of the records (committed)")] = Path(
        "results/leaderboard/records.jsonl"
    ),
    from_export: Annotated[
        bool, typer.Option(help="re-render from the committed copy instead of the store (no records needed)")
    ] = False,
    partial: Annotated[bool, typer.Option(help="render even when some cells have no record yet")] = False,
    plots: Annotated[bool, typer.Option(help="redraw the plots (--no-plots keeps the files there)")] = True,
) -> None:
    """Rewrite leaderboard.md's generated block, its plots and the RobustBench model_info entries."""
    from benchmark import leaderboard as lb
    from benchmark.plots import render_all
    from benchmark.sweep import load_suite
    from benchmark.tables import tidy

    if not output.is_file():
        raise ConfigError(f"'{output}' does not exist; create it with the markers {lb.BEGIN} and {lb.END}")
    if from_export:
        records = lb.read_export(export)
    else:
        records = lb.collect(load_suite(suite), results_dir, partial)
        lb.write_export(export, records)
    plots_dir = export.parent / "plots"
    for old in [*plots_dir.glob("*.png"), *plots_dir.glob("*.svg")] if plots else []:
        old.unlink()  # a plot the records no longer support must not stay linked
    if records and plots:
        _, skipped = render_all(tidy(records), plots_dir)
        for name, why in skipped.items():
            err.print(f"skipped plot {name}: {why}", highlight=False)
    block = lb.render(records, suite, lb.plot_links(plots_dir, output))
    from results.store import atomic_write_bytes

    atomic_write_bytes(output, lb.replace_block(output.read_text(), block).encode())
    entries = lb.write_model_info(export.parent / "model_info", lb.model_info(records)) if records else []
    out.print(
        f"{output}: generated block rewritten from {len(records)} records ({export}); "
        f"{len(entries)} RobustBench model_info entries in {export.parent / 'model_info'}",
        highlight=False,
    )


class TableFormat(StrEnum):
    RICH = "rich"
    CSV = "csv"
    MARKDOWN = "markdown"


@app.command()
@user_errors
def table(
    metric: Annotated[str, typer.Option(help="a record metric, e.g. robust_acc, clean_acc, robust_auc")] = (
        "robust_acc"
    ),
    rows: Annotated[str, typer.Option(help="dimension down the table")] = "defense",
    columns: Annotated[str, typer.Option(help="dimension across the table")] = "attack",
    fmt: Annotated[TableFormat, typer.Option("--format", help="rich, csv or markdown")] = TableFormat.RICH,
    results_dir: Annotated[Path, typer.Option(help="the record store to read")] = Path("results"),
) -> None:
    """Pivot tables of a metric from the stored records (mean ± std over seeds, in %); nothing is re-run."""
    from benchmark.tables import load, pivot, to_markdown

    for where, frame in pivot(load(results_dir), metric, rows, columns):
        title = f"{metric} (%): " + ", ".join(f"{k} {v}" for k, v in where.items())
        if fmt is TableFormat.CSV:
            out.print(f"# {title}", markup=False, highlight=False)
            sys.stdout.write(frame.to_csv())
        elif fmt is TableFormat.MARKDOWN:
            out.print(f"**{title}**\n\n{to_markdown(frame)}\n", markup=False, highlight=False, soft_wrap=True)
        else:
            shown = Table(title=title)
            shown.add_column(rows)
            for column in frame.columns:
                shown.add_column(str(column), justify="right")
            for index, values in zip(frame.index, frame.values, strict=True):
                shown.add_row(str(index), *map(str, values))
            out.print(shown)


def result_table(record: dict[str, Any], cached: bool) -> Table:
    """Metrics as rows; clean and under-attack columns, frame level and (when present) video level."""
    spec, metrics = record["spec"], record["metrics"]
    title = (
        f"{spec['detector']['name']} + {spec['defense']['name']} vs {spec['attack']['name']} "
        f"(eps {_show(spec['attack']['params'].get('eps', float('nan')))}), "
        f"{spec['train_data']['name']} -> {spec['eval_data']['name']}"
    )
    levels = [("frame", "")] + ([("video", "video_")] if "video_clean_acc" in metrics else [])
    table = Table(title=title, caption=_caption(record, cached))
    table.add_column("metric (%)")
    for level, _ in levels:
        table.add_column(f"{level} clean", justify="right")
        table.add_column(f"{level} attacked", justify="right")
    for name, key in (("accuracy", "acc"), ("AUC", "auc"), ("AP", "ap"), ("EER", "eer")):
        row = [name]
        for _, prefix in levels:
            row += [_pct(metrics[f"{prefix}clean_{key}"]), _pct(metrics[f"{prefix}robust_{key}"])]
        table.add_row(*row)
    row = ["attack success rate"]
    for _, prefix in levels:
        row += ["", _pct(metrics[f"{prefix}asr"])]
    table.add_row(*row)
    for name, after in record.get("after_round_trip", {}).items():
        row = [f"accuracy after {name}"]
        for _, prefix in levels:
            row += ["", _pct(after[f"{prefix}robust_acc"])]
        table.add_row(*row)
    return table


def flags_line(record: dict[str, Any]) -> str | None:
    """One warning line naming the raised gradient-masking flags (docs/checks.md), or None."""
    flags = record.get("flags", {})
    raised = list(flags.get("raised", [])) + [f"{f['flag']} (across records)" for f in flags.get("store", [])]
    if not raised:
        return None
    return f"[yellow]flags raised: {', '.join(raised)}; the robust numbers may be optimistic (docs/checks.md)"


def _pct(value: float | None) -> str:
    return "-" if value is None or value != value else f"{100 * value:.1f}"


def _caption(record: dict[str, Any], cached: bool) -> str:
    t = record["timings"]
    how = (
        "cached record"
        if cached
        else (
            f"trained in {t['train_s']:.0f}s" if not record["training"]["cached"] else "checkpoint from cache"
        )
    )
    return (
        f"{record['n_samples']} test samples ({record['n_attacked']} attacked); {how}; "
        f"attack + eval {t['eval_s']:.0f}s; cell {record['cell_id']}"
    )


@app.command()
@user_errors
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
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="a layout parameter KEY=VALUE, e.g. compression=c40 or methods=Deepfakes"),
    ] = None,
) -> None:
    """Decode raw videos, crop the largest face of N evenly spaced frames, write a prepared store."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from benchmark.data.prepared import store_path
    from benchmark.params import typed_params
    from benchmark.prepare import LAYOUTS, PrepareOptions
    from benchmark.prepare import prepare as run_prepare

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    params = {k: p for k, p in LAYOUTS.params_of(dataset).items() if k != "root"}
    layout = typed_params("layout", dataset, _key_values(set_ or []), params)
    options = PrepareOptions(frames, size, scale, face_detector, workers)
    store = store_dir or store_path(dataset, "")
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=err, disable=not sys.stderr.isatty()) as progress:
        task = progress.add_task(f"prepare {dataset}", total=None)
        summary = run_prepare(
            dataset,
            root,
            store,
            options,
            layout,
            on_start=lambda todo, skipped: progress.update(task, total=todo),
            on_video=lambda result: progress.advance(task),
        )
    out.print(prepare_table(dataset, summary))
    for video, reason in list(summary["corrupt"].items())[:5]:
        out.print(f"corrupt: {video}: {reason}", markup=False, highlight=False)
    out.print(f"store: {store} (manifest.parquet, summary.json)", markup=False, highlight=False)


def _key_values(items: list[str]) -> dict[str, str]:
    pairs = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set '{item}' must look like KEY=VALUE, e.g. compression=c40")
        pairs[key.strip()] = value.strip()
    return pairs


def prepare_table(dataset: str, summary: dict[str, Any]) -> Table:
    """The counts of a prepared store: videos per split and label, frames, faces, and what went wrong."""
    table = Table(title=f"prepared {dataset}")
    table.add_column("count")
    table.add_column("value", justify="right")
    for split, labels in summary["videos_by_split"].items():
        table.add_row(f"{split} videos (real / fake)", f"{labels['real']} / {labels['fake']}")
    rows = [
        ("frames stored", "frames"),
        ("frames with a face", "faces_found"),
        ("frames without a face", "no_face_frames"),
        ("videos without any face", "videos_without_faces"),
        ("corrupt videos", "corrupt_videos"),
        ("videos missing or in no split", "missing_videos"),
    ]
    for name, key in rows:
        table.add_row(name, str(summary[key]))
    run = summary["this_run"]
    table.add_row("this run: prepared / skipped (done before)", f"{run['prepared']} / {run['skipped']}")
    return table


if __name__ == "__main__":
    app()
