"""Everything the commands show: rich tables and result lines built from what the library returns.

Nothing here computes a result; the heavy modules (pandas, the sweep planner) are imported only by the
functions that need them, so ``afsl-bench --help`` stays light.
"""

from __future__ import annotations

import itertools
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from afsl_bench.cli.console import say
from afsl_bench.cli.options import TableFormat

if TYPE_CHECKING:  # the CLI imports no torch or pandas until a command runs
    from afsl_bench.store.record import Record

#: parameters that are pixel budgets (written k/255 when they are multiples of 1/255); every other float is
#: a plain number (a fraction such as Square's p_init or folder's val_fraction is not a budget)
BUDGETS = frozenset({"eps", "step_size", "eps_step", "max_eps"})


def show(value: Any, name: str = "eps") -> str:
    """A parameter value as a user writes it: budgets (``BUDGETS``) as k/255, enums by value."""
    if isinstance(value, float):
        k = value * 255
        budget = name in BUDGETS and abs(k - round(k)) < 1e-9 and 0 < value < 1 and k >= 1
        return f"{k:.0f}/255" if budget else f"{value:g}"
    return str(getattr(value, "value", value))


def print_table(console: Console, table: Table) -> None:
    """A table at any terminal width (``COLUMNS=30``) with no number or word cut: every column folds at
    spaces but is never narrower than its longest word (a number is one word), so labels and headers wrap;
    when even that is wider than the terminal, the table is printed at that width (the terminal wraps the
    lines) rather than cropped to an ellipsis."""
    for column in table.columns:
        words = [
            w for cell in (column.header, *column.cells) for w in Text.from_markup(str(cell)).plain.split()
        ]
        column.min_width = max(map(len, words), default=1)
        column.overflow = "fold"
    needed = fitting_width(console, table)
    if needed <= console.width:
        console.print(table)
        return
    saved = console._width  # print(width=) is capped at the console's width; None: the terminal's, read live
    console.width = needed
    try:
        console.print(table)
    finally:
        console._width = saved


def fitting_width(console: Console, table: Table) -> int:
    """The narrowest width, from the console's, at which rich lays ``table`` out without cropping a column
    below its ``min_width`` (rich's collapse shrinks the widest wrappable column first, so the table's
    measured minimum is not always reachable). A wider layout never fits worse, so it is bisected."""
    span = Measurement.get(console, console.options.update_width(10_000), table)
    extra = table._extra_width  # borders and edges: rich's own layout, read rather than re-derived

    def fits(width: int) -> bool:
        widths = table._calculate_column_widths(console, console.options.update_width(width - extra))
        return sum(widths) + extra <= width

    low, high = min(console.width, span.maximum), span.maximum
    if fits(low):
        return low
    while high - low > 1:  # fits(high) holds: the natural width
        middle = (low + high) // 2
        low, high = (low, middle) if fits(middle) else (middle, high)
    return high


def pct(value: float | None) -> str:
    return "-" if value is None or math.isnan(value) else f"{100 * value:.1f}"


def number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


# --- list ---------------------------------------------------------------------------------------------------


def settings_table(entry: dict[str, Any]) -> Table:
    """The training settings (``--set train.NAME=VALUE``): one row per field with its type and default."""
    table = Table(title="training settings (--set train.NAME=VALUE)")
    for column in ("name", "type", "default"):
        table.add_column(column, style="bold" if column == "name" else None)
    for row in entry["settings"]:
        table.add_row(*row)
    return table


def components_table(entry: dict[str, Any], params: bool) -> Table:
    """One row per component of a ``listing.entry``: name, description and (with ``params``) parameter
    defaults."""
    table = Table(title=f"{entry['kind']}s", show_lines=params)
    table.add_column("name", style="bold")
    table.add_column("description")
    if params:
        table.add_column("parameters (default)")
    for component in entry["components"]:
        row = [component["name"], component["description"]]
        if params:
            row.append("\n".join(component["params"]))
        table.add_row(*row)
    return table


def weights_table(entry: dict[str, Any]) -> Table:
    """The published weights the detectors load by source (``--set detector.weights=SOURCE:PATH``): which
    detectors, the files built in (``SOURCE:NAME``, no download), where they come from."""
    table = Table(title="published weights (--set detector.weights=SOURCE:FILE)")
    for column in ("source", "detectors", "built in", "from"):
        table.add_column(column)
    for row in entry["weights"]:
        built_in = ", ".join(f"{row['source']}:{name}" for name in row["builtin"]) or "-"
        table.add_row(row["source"], ", ".join(row["detectors"]), built_in, row["citation"])
    return table


def predictions_table(table: Any) -> Table:
    """``predict``'s rows: input (and frame), P(fake) and the decision; under an attack also the adversarial
    P(fake) and decision, the change's L-inf (in /255) and SSIM."""
    attacked, videos = "adv_p_fake" in table, bool(table["frame"].notna().any())
    out = Table(title="P(fake)" + (" clean and under attack" if attacked else ""))
    out.add_column("input")
    names = [*(["frame"] if videos else []), "P(fake)", "says"]
    for name in [*names, *(["P(fake) attacked", "says", "L-inf", "SSIM"] if attacked else [])]:
        out.add_column(name, justify="right")
    for row in table.itertuples():
        frame = ["" if _missing(row.frame) else str(row.frame)] if videos else []
        cells = [Path(row.input).name, *frame, f"{row.p_fake:.4f}", "fake" if row.fake else "real"]
        if attacked:
            cells += [f"{row.adv_p_fake:.4f}", "fake" if row.adv_fake else "real", f"{255 * row.linf:.1f}/255",
                      f"{row.ssim:.4f}"]  # fmt: skip
        out.add_row(*cells)
    return out


def _missing(value: Any) -> bool:
    """No frame number: None, pandas' NA or NaN (a still image)."""
    import pandas as pd

    return bool(pd.isna(value))


def video_means_table(videos: Any) -> Table:
    """One row per video: its frames' mean P(fake), clean (and under the attack)."""
    out = Table(title="videos: mean P(fake) over the frames")
    for name in ("video", "frames", "P(fake)", *(["P(fake) attacked"] if "adv_p_fake" in videos else [])):
        out.add_column(name, justify="left" if name == "video" else "right")
    for row in videos.itertuples():
        cells = [Path(row.input).name, str(row.frames), f"{row.p_fake:.4f}"]
        out.add_row(*cells, *([f"{row.adv_p_fake:.4f}"] if "adv_p_fake" in videos else []))
    return out


# --- run ----------------------------------------------------------------------------------------------------


def run_result(console: Console, record: Record, cached: bool, path: Path) -> None:
    """The result table, the raised gradient-masking flags (if any) and where the record is."""
    print_table(console, result_table(record, cached))
    warnings(console, record)
    say(console, f"record: {path}")


def result_table(record: Record, cached: bool) -> Table:
    """Metrics as rows; clean and under-attack columns, frame level and (when present) video level."""
    from afsl_bench.runner.describe import describe_spec

    metrics = record.metrics or {}
    title = describe_spec(record.spec)
    levels = ["", "video_"] if "video_clean_acc" in metrics else [""]
    table = Table(title=title, caption=caption(record, cached))
    table.add_column("metric (%)")
    for prefix in levels:
        level = prefix.rstrip("_") or "frame"
        table.add_column(f"{level} clean", justify="right")
        table.add_column(f"{level} attacked", justify="right")
    rows = [("accuracy", "acc"), ("  on reals", "acc_real"), ("  on fakes", "acc_fake")]
    for name, key in [*rows, ("AUC", "auc"), ("AP", "ap"), ("EER", "eer")]:
        cells = [pct(metrics.get(f"{p}{where}_{key}")) for p in levels for where in ("clean", "robust")]
        table.add_row(name, *cells)
    table.add_row("attack success rate", *[s for p in levels for s in ("", pct(metrics[f"{p}asr"]))])
    # deployment: thresholds fixed on the clean validation reals (frame level; core/operating.py)
    for tag, share in (("fpr1", "1 %"), ("fpr5", "5 %")):
        if f"clean_tpr_at_{tag}" in metrics:
            used = ((record.operating_points or {}).get(tag) or {}).get("used")
            said = (
                share if used is None or abs(used - float(share[:-2]) / 100) < 1e-9 else f"{100 * used:.1f} %"
            )
            spare = ["", ""] * (len(levels) - 1)
            table.add_row(f"fakes caught at {said} FPR", pct(metrics[f"clean_tpr_at_{tag}"]),
                          pct(metrics[f"robust_tpr_at_{tag}"]), *spare)  # fmt: skip
            table.add_row("  reals flagged there", pct(metrics[f"clean_fpr_at_{tag}"]),
                          pct(metrics[f"robust_fpr_at_{tag}"]), *spare)  # fmt: skip
    for name, after in (record.after_round_trip or {}).items():
        cells = [s for p in levels for s in ("", pct(after[f"{p}robust_acc"]))]
        table.add_row(f"accuracy after {name}", *cells)
    return table


def warnings(console: Console, record: Record) -> None:
    """The record's warnings, one line each: the detector did not learn; gradient-masking flags raised."""
    for warning in (not_learned_line(record), flags_line(record)):
        if warning:
            console.print(warning, style="yellow", markup=False, highlight=False, soft_wrap=True)


def not_learned_line(record: Record) -> str | None:
    """One warning line when the detector did not learn (clean AUC below the threshold), or None."""
    from afsl_bench.store.record import learning

    flag = learning(record.metrics or {})
    if not flag["raised"]:
        return None
    return (
        f"not learned: clean AUC {flag['clean_auc']:.3f} < {flag['threshold']} on the evaluation set: the "
        "detector is near chance, so its robust numbers mean nothing (train longer, or check the data's labels)"
    )


def flags_line(record: Record) -> str | None:
    """One warning line naming the raised gradient-masking flags (docs/checks.md), or None."""
    flags = record.flags or {}
    raised = list(flags.get("raised", [])) + [f"{f['flag']} (across records)" for f in flags.get("store", [])]
    if not raised:
        return None
    return f"flags raised: {', '.join(raised)}; the robust numbers may be optimistic (docs/checks.md)"


def caption(record: Record, cached: bool) -> str:
    """Samples, where the model came from, the time taken and the cell id."""
    t = record.timings or {}
    training = record.training or {}
    if cached:
        how = "cached record"
    elif training.get("epochs") == 0:
        how = f"weights {training['weights']['given']} evaluated as published, not trained"
    elif training.get("cached"):
        how = "checkpoint from cache"
    else:
        how = f"trained in {t['train_s']:.0f}s"
    requested = (record.data or {}).get("test_samples_requested")
    capped = (
        f" (eval.samples={requested}: the whole test split)"
        if requested and requested > record.n_samples
        else ""
    )
    classes = f": {record.n_reals} real, {record.n_fakes} fake" if record.n_reals is not None else ""
    return (
        f"{record.n_samples} test samples{classes}{capped} ({record.n_attacked} attacked); {how}; "
        f"attack + eval {t['eval_s']:.0f}s; cell {record.cell_id}"
    )


# --- sweep --------------------------------------------------------------------------------------------------


def sweep_plan_table(plan: Any, cached: list[Any], todo: list[Any]) -> Table:
    """``sweep --dry-run``: every cell of the suite, cached or to run."""
    from afsl_bench.runner.sweep import describe

    table = Table(title=f"{plan.name}: {len(plan.cells)} cells, {len(cached)} cached, {len(todo)} to run")
    for column in ("cell", "status", "what"):
        table.add_column(column)
    for cell in plan.cells:
        table.add_row(cell.cell_id, "cached" if cell in cached else "to run", describe(cell))
    return table


def certify_plan_table(plan: Any, todo: list[Any]) -> Table:
    """``sweep --dry-run``: the suite's certifications (``[[certify]]``), stored or to run."""
    from afsl_bench.runner.sweep import describe_certification

    table = Table(title=f"{plan.name}: {len(plan.certifications)} certifications, {len(todo)} to run")
    for column in ("certification", "status", "what"):
        table.add_column(column)
    for job in plan.certifications:
        table.add_row(job.certify_id, "to run" if job in todo else "stored", describe_certification(job))
    return table


def sweep_summary(name: str, outcome: Any, records: Path) -> str:
    return (
        f"{name}: {len(outcome.done)} run, {len(outcome.cached)} cached, {len(outcome.failed)} failed "
        f"in {outcome.seconds:.0f} s; records in {records}"
    )


# --- gate ---------------------------------------------------------------------------------------------------


def gate_table(result: Any, suite: Path, baseline: Path, tolerance: float) -> Table:
    """One row per cell: each metric's baseline -> current, and the verdict with its reasons."""
    table = Table(title=Text(f"afsl-bench gate: {suite} vs {baseline} (tolerance {tolerance})"))
    for column in ("cell", "metric: baseline -> current", "verdict"):
        table.add_column(column, overflow="fold")
    for cell, rows in itertools.groupby(result.rows, key=lambda r: r["cell"]):
        rows = list(rows)
        change = "; ".join(_change(r) for r in rows if r["metric"] not in ("-", "flags"))
        problems = [f"{r['metric']} {r['why']}" for r in rows if not r["ok"]]
        notes = [r["why"] for r in rows if r["ok"] and r["why"]]
        word = ("FAIL", "bold red") if problems else ("ok", "green")
        verdict = Text.assemble(word, " ", "; ".join(problems or notes))
        table.add_row(Text(f"{cell}\n{rows[0]['what']}"), Text(change), verdict)
    return table


def _change(row: dict[str, Any]) -> str:
    return f"{row['metric']}: {number(row['baseline'])} -> {number(row['current'])}"


def regressions(console: Console, failures: list[dict[str, Any]]) -> None:
    for row in failures:
        say(console, f"regression: cell {row['cell']} ({row['what']}) {row['metric']}: {row['why']}")


# --- table --------------------------------------------------------------------------------------------------


def pivots(console: Console, tables: Any, metric: str, rows: str, fmt: TableFormat) -> None:
    """Each ``(where, frame)`` pivot of ``afsl_bench.report.tables.pivot`` as a rich table, CSV or Markdown."""
    from afsl_bench.report.tables import to_markdown

    for where, frame in tables:
        title = f"{metric} (%): " + ", ".join(f"{k} {v}" for k, v in where.items())
        if fmt is TableFormat.CSV:
            say(console, f"# {title}")
            console.file.flush()
            sys.stdout.write(frame.to_csv())
        elif fmt is TableFormat.MARKDOWN:
            say(console, f"**{title}**\n\n{to_markdown(frame)}\n")
        else:
            print_table(console, pivot_table(title, rows, frame))


def pivot_table(title: str, rows: str, frame: Any) -> Table:
    table = Table(title=title)
    table.add_column(rows)
    for column in frame.columns:
        table.add_column(str(column), justify="right")
    for index, values in zip(frame.index, frame.values, strict=True):
        table.add_row(str(index), *map(str, values))
    return table


# --- prepare ------------------------------------------------------------------------------------------------

PREPARE_COUNTS = (
    ("frames stored", "frames"),
    ("frames with a face", "faces_found"),
    ("frames without a face", "no_face_frames"),
    ("videos without any face", "videos_without_faces"),
    ("corrupt videos", "corrupt_videos"),
    ("videos missing or in no split", "missing_videos"),
)


def prepare_result(
    console: Console, dataset: str, summary: dict[str, Any], store: Path, corrupt: int = 5
) -> None:
    """The counts table, the first ``corrupt`` corrupt videos with their reason, and where the store is."""
    print_table(console, prepare_table(dataset, summary))
    for video, reason in list(summary["corrupt"].items())[:corrupt]:
        say(console, f"corrupt: {video}: {reason}")
    say(console, f"store: {store} (manifest.parquet, summary.json)")


def prepare_table(dataset: str, summary: dict[str, Any]) -> Table:
    """The counts of a prepared store: videos per split and label, frames, faces, and what went wrong."""
    table = Table(title=f"prepared {dataset}")
    table.add_column("count")
    table.add_column("value", justify="right")
    for split, labels in summary["videos_by_split"].items():
        table.add_row(f"{split} videos (real / fake)", f"{labels['real']} / {labels['fake']}")
    for name, key in PREPARE_COUNTS:
        table.add_row(name, str(summary[key]))
    run = summary["this_run"]
    table.add_row("this run: prepared / skipped (done before)", f"{run['prepared']} / {run['skipped']}")
    return table


def ceiling_result(console: Console, dataset: str, split: str, rows: list[dict[str, Any]]) -> None:
    """The ceiling per budget, and the closest real-fake pair (docs/data.md)."""
    table = Table(title=f"robust-accuracy ceiling of {dataset} ({split} split, {rows[0]['n']} images, L-inf)")
    for column in ("eps", "ceiling (%)", "real-fake conflicts"):
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(show(row["eps"]), pct(row["ceiling"]), str(row["conflicts"]))
    print_table(console, table)
    closest = rows[0]["closest_pair"]
    console.print(f"closest real-fake pair: L-inf {closest:.4f} ({255 * closest:.1f}/255)", highlight=False)


def tuning_table(found: list[Any], choice: dict[str, Any]) -> Table:
    """Every tuning candidate with its validation accuracies; the chosen ones (per head) marked."""
    table = Table(
        title="Tuning on validation (APGD-CE robust accuracy; * chosen, ** chosen on the chosen head)"
    )
    for column in ("detector", "head", "defense", "val robust", "val clean", ""):
        table.add_column(column, justify="right" if column.startswith("val") else "left")
    for c in sorted(found, key=lambda c: (c.detector, c.head, c.defense, c.params != "", c.label)):
        pick = choice[c.detector]
        chosen = pick["heads"][c.head]["defenses"][c.defense]["train_id"] == c.train_id
        mark = ("**" if c.head == pick["head"] else "*") if chosen else ""
        table.add_row(c.detector, c.head, c.label, pct(c.val_robust_acc), pct(c.val_clean_acc), mark)
    return table
