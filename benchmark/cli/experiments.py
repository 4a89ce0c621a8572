"""The commands that compute: ``run`` (one cell), ``sweep`` (a suite file) and ``gate`` (the CI gate).

Each parses its options, calls the library (``afsl_bench.api``, ``.sweep``, ``.gate``) and hands the result
to ``render``; progress is drawn by ``progress``. Heavy modules are imported inside the functions.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer

from afsl_bench.cli import render
from afsl_bench.cli.console import err, out, say
from afsl_bench.cli.options import (
    BATCH_SIZE,
    COMPILE,
    DEVICE,
    PRECISION,
    RESULTS_DIR,
    SEED,
    BatchSize,
    Checks,
    CompileOption,
    Device,
    ExecutorKind,
    PrecisionOption,
    ResultsDir,
    Seed,
    SetOption,
    Verbose,
    check_batch_size,
    configure_logging,
    results_path,
)
from afsl_bench.core.errors import ConfigError


def run(
    detector: Annotated[str, typer.Option(help="detector name (afsl-bench list detectors)")] = "tiny-cnn",
    defense: Annotated[str, typer.Option(help="training defense (afsl-bench list defenses)")] = "none",
    attack: Annotated[str, typer.Option(help="attack (afsl-bench list attacks)")] = "pgd",
    dataset: Annotated[str, typer.Option(help="training data set (afsl-bench list datasets)")] = "synthetic",
    eval_dataset: Annotated[str | None, typer.Option(help="evaluation data set (default: --dataset)")] = None,
    set_: SetOption = None,
    seed: Seed = SEED,
    device: Device = DEVICE,
    batch_size: BatchSize = BATCH_SIZE,
    results_dir: ResultsDir = RESULTS_DIR,
    force: Annotated[
        bool, typer.Option(metavar="", help="recompute even if this cell has a finished record")
    ] = False,
    checks: Checks = True,
    compile: CompileOption = COMPILE,
    precision: PrecisionOption = PRECISION,
    verbose: Verbose = False,
    as_json: Annotated[
        bool, typer.Option("--json", metavar="", help="print the record as JSON on stdout")
    ] = False,
) -> None:
    """Train (or load) a detector with a defense, attack it, print and store one result record."""
    from afsl_bench import api
    from afsl_bench.cli.progress import RunProgress
    from afsl_bench.store.disk import RecordStore

    configure_logging(verbose)
    check_batch_size(batch_size)
    with RunProgress(err) as progress:
        outcome = api.run(
            detector,
            defense,
            attack,
            dataset,
            eval_dataset=eval_dataset,
            overrides=set_ or (),
            seed=seed,
            results_dir=results_dir,
            device=device,
            batch_size=batch_size,
            force=force,
            checks=checks,
            compile=compile,
            precision=precision,
            progress=progress.callbacks(),
        )
    if as_json:
        sys.stdout.write(json.dumps(outcome.record.to_json(), indent=2, sort_keys=True) + "\n")
        render.warnings(err, outcome.record)  # for the person running the script, not for its parser
        return
    path = RecordStore(results_dir).record_path(outcome.record.cell_id)
    render.run_result(out, outcome.record, outcome.cached, path)


def sweep(
    suite: Annotated[Path, typer.Argument(help="a suite file, e.g. suites/smoke.toml")],
    dry_run: Annotated[
        bool, typer.Option(metavar="", help="list cached and to-run cells; run nothing")
    ] = False,
    device: Device = DEVICE,
    batch_size: BatchSize = BATCH_SIZE,
    results_dir: ResultsDir = RESULTS_DIR,
    checks: Checks = True,
    compile: CompileOption = COMPILE,
    precision: PrecisionOption = PRECISION,
    verbose: Verbose = False,
    executor: Annotated[
        ExecutorKind, typer.Option(help="local: cells one after another here; ray: cells as Ray tasks")
    ] = ExecutorKind.LOCAL,
    address: Annotated[
        str | None,
        typer.Option(help="with --executor ray: the cluster, host:port or auto (default: a local Ray)"),
    ] = None,
) -> None:
    """Run every cell of a suite file (finished cells are skipped; a failing cell is recorded, the rest
    run)."""
    from afsl_bench.cli.progress import SweepProgress
    from afsl_bench.runner.cell import RunOptions
    from afsl_bench.runner.executors import LocalExecutor, RayExecutor
    from afsl_bench.runner.sweep import certification_status, load_suite, missing_data, plan_status, run_sweep
    from afsl_bench.store.disk import RecordStore

    configure_logging(verbose)
    check_batch_size(batch_size)
    plan = load_suite(suite)  # every cell validated before anything runs
    cached, todo = plan_status(plan, results_dir)
    if dry_run:
        render.print_table(out, render.sweep_plan_table(plan, cached, todo))
        if plan.certifications:
            render.print_table(
                out, render.certify_plan_table(plan, certification_status(plan, results_dir)[1])
            )
        if missing := missing_data(plan):
            raise ConfigError(f"data that does not exist, these cells would fail: {'; '.join(missing)}")
        return
    if address is not None and executor is not ExecutorKind.RAY:
        raise ConfigError(f"--address {address} is a Ray cluster; add --executor ray to run there")
    if address is None:  # cells run on this machine: refuse a device it lacks once, up front
        from afsl_bench.core.env import resolve_device

        resolve_device(device)
    runner = RayExecutor(address) if executor is ExecutorKind.RAY else LocalExecutor()
    options = RunOptions(
        results_dir=results_dir,
        device=device,
        batch_size=batch_size,
        checks=checks,
        compile=compile,
        precision=precision,
    )
    with SweepProgress(err, plan.name, total=len(plan.cells), to_run=len(todo)) as progress:
        try:
            outcome = run_sweep(plan, options, progress.on_cell, runner)
        except KeyboardInterrupt:
            kept = len(cached) + progress.finished_here
            say(err, f"interrupted: {kept} of {len(plan.cells)} cells finished and kept (records in "
                     f"{RecordStore(results_dir).records}); run the same command to go on")  # fmt: skip
            raise typer.Exit(130) from None
    say(out, render.sweep_summary(plan.name, outcome, RecordStore(results_dir).records))
    if outcome.failed:
        raise typer.Exit(1)
    if plan.certifications:
        certify_suite(plan, options)


def certify_suite(plan: Any, options: Any) -> None:
    """The suite's ``[[certify]]`` jobs, after its cells, each a line and its own progress."""
    from afsl_bench.cli.progress import RunProgress
    from afsl_bench.runner.sweep import describe_certification, run_certifications

    total = len(plan.certifications)
    with RunProgress(err) as progress:
        ran, cached = run_certifications(
            plan, options,
            on_start=lambda job, index: progress.line(f"[{index + 1}/{total}] {describe_certification(job)}"),
            progress=progress.callbacks(),
            on_images=lambda done, total: progress.on_phase("certify", done, total),
        )  # fmt: skip
    say(out, f"{plan.name}: {len(ran)} certified, {len(cached)} stored before; results in "
             f"{Path(options.results_dir) / 'certified'}")  # fmt: skip


def gate(
    baseline: Annotated[Path, typer.Option(help="the committed baseline")] = Path("results/baseline.json"),
    suite: Annotated[
        Path | None, typer.Option(help="the suite (default: the one the baseline names)")
    ] = None,
    tolerance: Annotated[
        float | None,
        typer.Option(help="allowed change per metric, down or up (default: the baseline's, else 0.02)"),
    ] = None,
    update: Annotated[
        bool, typer.Option(metavar="", help="rewrite the baseline from the current results")
    ] = False,
    device: Device = DEVICE,
    results_dir: Annotated[
        Path | None,
        typer.Option(
            "--results-dir",
            parser=results_path,
            metavar="PATH",
            help="where the suite's records go (default: a new temporary store, deleted afterwards); every "
            "cell is recomputed either way, its trained models are reused from a store that holds them",
        ),
    ] = None,
    compile: CompileOption = COMPILE,
    precision: PrecisionOption = PRECISION,
    verbose: Verbose = False,
) -> None:
    """CI regression gate: run the baseline's suite afresh and fail when a metric moved beyond the tolerance
    (down: a regression; up: most often a weaker attack) or a new gradient-masking flag was raised."""
    from afsl_bench.report.gate import (
        TOLERANCE,
        check_tolerance,
        compare,
        current_metrics,
        read_baseline,
        suite_of,
        write_baseline,
    )
    from afsl_bench.runner.cell import RunOptions

    configure_logging(verbose)
    from afsl_bench.core.env import resolve_device

    resolve_device(device)  # once, up front, rather than one failed cell per cell
    if tolerance is not None:
        check_tolerance(tolerance, "--tolerance")  # a bad option is said before a missing baseline
    known = read_baseline(baseline) if (not update or baseline.is_file()) else None
    plan = suite_of(known, suite)
    allowed = check_tolerance(
        tolerance if tolerance is not None else (known or {}).get("tolerance", TOLERANCE),
        "--tolerance" if tolerance is not None else f"baseline '{baseline}'",
    )
    with tempfile.TemporaryDirectory(prefix="afsl-gate-") as fresh:
        store = results_dir if results_dir is not None else Path(fresh)
        options = RunOptions(
            results_dir=store, device=device, force=True, checks=True, compile=compile, precision=precision
        )
        current = current_metrics(plan, options)
    if update:
        write_baseline(baseline, plan, current, allowed)
        say(out, f"baseline {baseline} rewritten: {len(current)} cells of {plan.path}")
        return
    result = compare(known, current, allowed)
    render.print_table(out, render.gate_table(result, plan.path, baseline, allowed))
    if result.failures:
        render.regressions(err, result.failures)
        raise typer.Exit(1)
    checked = sum(r["metric"] not in ("-", "flags") for r in result.rows)
    say(out, f"ok: {checked} checks within {allowed} (down or up); no new gradient-masking flag")
