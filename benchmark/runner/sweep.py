"""Sweeps: a TOML suite file crossed into cells, every cell planned (validated) before any runs.

A suite (``suites/<name>.toml``; read with ``tomllib``, never executed)::

    [sweep]
    detectors = ["tiny-cnn"]
    defenses  = ["none", "at", "afsl"]
    attacks   = ["pgd", "apgd"]
    data      = ["synthetic"]                  # training sets
    eval      = ["synthetic", "synthetic-hq"]  # evaluation sets (default: each training set itself)
    eps       = ["4/255", "8/255"]             # optional: attack.eps, for the attacks that have one
    seeds     = [0, 1, 2]

    [set]                                      # every cell, as --set KIND.KEY=VALUE
    "train.epochs" = 4

    [attack.square]                            # only the cells of that component
    queries = 500

An axis entry may be an inline table, ``{name = "afsl", use_asl = false}``: its parameters apply to that
entry only, so one list holds ablations or several transfer surrogates. Several grids (``[[sweep]]``
tables, each with its own axes) make one suite; the cells of all grids are deduplicated.

A ``[[certify]]`` grid (or ``[certify]``) plans certifications by randomized smoothing of trained models
(``afsl-bench certify``; ``runner/certification.py``), run after the cells::

    [[certify]]
    detectors = ["tiny-cnn"]
    defenses  = ["none", "at", {name = "smoothing", sigma = 0.25}]
    data      = ["synthetic"]
    seeds     = [0]
    sigma     = [0.25]      # optional: the noise (default: a smoothing defense's own sigma, else 0.25)
    n = 1000                # optional scalars: n0, n, alpha, samples, eps (certify's defaults)

Cells are content-addressed (``cell_id``), so a rerun skips finished cells and cells sharing a trained
model train it once (the checkpoint cache). A cell that fails is recorded with its error (status
``failed``) and the sweep goes on; a rerun retries it. Ctrl-C stops the sweep; finished cells stay.
"""

from __future__ import annotations

import itertools
import re
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from afsl_bench.core.errors import ConfigError
from afsl_bench.core.registry import did_you_mean
from afsl_bench.core.spec import CellSpec
from afsl_bench.runner.cell import RunOptions
from afsl_bench.runner.certification import Certification, certify_model, stored
from afsl_bench.runner.executors import Executor, LocalExecutor
from afsl_bench.runner.plan import KINDS, missing_locations, plan_cell, plan_training
from afsl_bench.store.disk import RecordStore

#: the [sweep] keys: the lists crossed into cells
AXES = ("detectors", "defenses", "attacks", "data", "eval", "eps", "seeds")
REQUIRED = ("detectors", "defenses", "attacks", "data")
SECTIONS = ("sweep", "certify", "set", *KINDS)
#: the [[certify]] keys: lists crossed into certifications, then CERTIFY's settings (one value per grid)
CERTIFY_AXES = ("detectors", "defenses", "data", "seeds", "sigma")
CERTIFY_SETTINGS = {"n0": int, "n": int, "alpha": float, "samples": int, "eps": str}


@dataclass(frozen=True)
class Suite:
    """A parsed suite: its name, source path, the planned cells (in run order) and certifications."""

    name: str
    path: Path
    cells: list[CellSpec]
    certifications: list[Certification] = field(default_factory=list)


@dataclass
class SweepOutcome:
    done: list[str] = field(default_factory=list)
    cached: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    #: the first line of each failed cell's error, by cell id (the whole error is in its record)
    errors: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0


def load_suite(path: Path | str) -> Suite:
    """Parse and plan every cell of a suite; any error names the file, its line and the valid choices."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"suite file '{path}' does not exist (suites live in suites/<name>.toml)")
    text = path.read_text()
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML: {err}") from None
    try:
        cells = plan_suite(raw)
        certifications = plan_certifications(raw)
    except ConfigError as err:
        raise ConfigError(f"{path}{_where(text, str(err))}: {err}") from None
    return Suite(path.stem, path, cells, certifications)


def plan_suite(raw: dict[str, Any]) -> list[CellSpec]:
    """Every cell of every grid (``[sweep]``, or several ``[[sweep]]``), deduplicated, in run order."""
    for section in raw:
        if section not in SECTIONS:
            raise ConfigError(
                f"unknown section [{section}].{did_you_mean(section, list(SECTIONS))} "
                f"Valid: {', '.join(SECTIONS)}"
            )
    grids = _grids(raw, "sweep")
    if not grids:
        raise ConfigError("a suite needs a [sweep] table (or [[sweep]] tables) with " + ", ".join(REQUIRED))
    cells = {cell.cell_id: cell for grid in grids for cell in plan_grid(raw, grid)}
    # cells of one trained model run together: its checkpoint is trained once and stays warm
    return sorted(cells.values(), key=lambda c: c.training.train_id)


def plan_grid(raw: dict[str, Any], axes: dict[str, Any]) -> list[CellSpec]:
    """The cells of one grid: the product of its axes. An axis entry is a name or an inline table
    ``{name = "afsl", use_asl = false}`` whose parameters apply to that entry only (ablations, transfer
    surrogates)."""
    for key, values in axes.items():
        if key not in AXES:
            raise ConfigError(
                f"unknown [sweep] key '{key}'.{did_you_mean(key, list(AXES))} Valid: {', '.join(AXES)}"
            )
        if not isinstance(values, list) or not values:
            raise ConfigError(f"[sweep] {key} must be a non-empty list, got {values!r}")
    missing = [key for key in REQUIRED if key not in axes]
    if missing:
        raise ConfigError(f"[sweep] is missing {', '.join(missing)}")
    _check_seeds("sweep", axes.get("seeds", [0]))
    common = [f"{key}={_text(value)}" for key, value in _quoted_keys(raw.get("set", {})).items()]
    cells = []
    for detector, defense, attack, data, eval_data, eps, seed in itertools.product(
        *(map(_entry, axes[key]) for key in ("detectors", "defenses", "attacks", "data")),
        map(_entry, axes.get("eval", [None])),
        axes.get("eps", [None]),
        axes.get("seeds", [0]),
    ):
        eval_data = eval_data if eval_data[0] is not None else (data[0], {})
        entries = {
            "detector": detector,
            "defense": defense,
            "attack": attack,
            "data": data,
            "eval": eval_data,
        }
        overrides = common + [
            f"{kind}.{key}={_text(value)}"
            for kind, (name, own) in entries.items()
            for key, value in (_component_table(raw, kind, name) | own).items()
        ]
        if eps is not None and _has_eps(attack[0]):
            overrides.append(f"attack.eps={_text(eps)}")
        names = [entries[kind][0] for kind in ("detector", "defense", "attack", "data", "eval")]
        cells.append(plan_cell(*names, overrides, int(seed)))
    return cells  # an eps-free attack (a distortion) crossed with an eps list repeats: plan_suite dedups


def plan_certifications(raw: dict[str, Any]) -> list[Certification]:
    """Every certification of the ``[[certify]]`` grids: the product of detectors, defenses, data, seeds and
    sigma, each with the grid's CERTIFY settings; deduplicated, in the order of their trained models."""
    from afsl_bench.core.params import parse_number
    from afsl_bench.runner.certification import CertifySettings

    planned = {}
    for grid in _grids(raw, "certify"):
        for key, values in grid.items():
            if key not in (*CERTIFY_AXES, *CERTIFY_SETTINGS):
                valid = [*CERTIFY_AXES, *CERTIFY_SETTINGS]
                raise ConfigError(
                    f"unknown [certify] key '{key}'.{did_you_mean(key, valid)} Valid: {', '.join(valid)}"
                )
            if key in CERTIFY_AXES and (not isinstance(values, list) or not values):
                raise ConfigError(f"[certify] {key} must be a non-empty list, got {values!r}")
        if missing := [key for key in ("detectors", "defenses", "data") if key not in grid]:
            raise ConfigError(f"[certify] is missing {', '.join(missing)}")
        seeds = _check_seeds("certify", grid.get("seeds", [0]))
        if any(isinstance(s, bool) or not isinstance(s, int | float) for s in grid.get("sigma", [])):
            raise ConfigError(
                f"[certify] sigma must be numbers, e.g. sigma = [0.25, 0.5]; got {grid['sigma']!r}"
            )
        settings = {}
        for key, kind in CERTIFY_SETTINGS.items():
            if key not in grid:
                continue
            value = grid[key]
            if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
                raise ConfigError(f"[certify] {key} must be a whole number, got {value!r}")
            settings[key] = parse_number(str(value)) if kind is not int else value
        common = [
            f"{key}={_text(value)}"
            for key, value in _quoted_keys(raw.get("set", {})).items()
            if key.split(".")[0] in ("detector", "defense", "data", "train")
        ]
        for detector, defense, data, seed in itertools.product(
            *(map(_entry, grid[key]) for key in ("detectors", "defenses", "data")), seeds
        ):
            entries = {"detector": detector, "defense": defense, "data": data}
            overrides = common + [
                f"{kind}.{key}={_text(value)}"
                for kind, (name, own) in entries.items()
                for key, value in (_component_table(raw, kind, name) | own).items()
            ]
            training = plan_training(detector[0], defense[0], data[0], overrides, int(seed))
            for sigma in grid.get("sigma", [training.defense.params.get("sigma", 0.25)]):
                job = Certification(training, CertifySettings(sigma=float(sigma), **settings))
                planned[job.certify_id] = job
    return sorted(planned.values(), key=lambda c: (c.training.train_id, c.certify_id))


def _grids(raw: dict[str, Any], section: str) -> list[dict[str, Any]]:
    """The tables of ``[section]`` or ``[[section]]`` (none: an empty list)."""
    grids = raw.get(section, [])
    grids = [grids] if isinstance(grids, dict) else grids
    if not isinstance(grids, list) or not all(isinstance(g, dict) for g in grids):
        raise ConfigError(f"[{section}] must be a table (or [[{section}]] tables), got {grids!r}")
    return grids


def _check_seeds(section: str, seeds: Any) -> list[int]:
    if not isinstance(seeds, list) or any(isinstance(s, bool) or not isinstance(s, int) for s in seeds):
        raise ConfigError(f"[{section}] seeds must be whole numbers, e.g. seeds = [0, 1, 2]; got {seeds!r}")
    return seeds


def _entry(value: Any) -> tuple[Any, dict[str, Any]]:
    """An axis entry: 'name' or {name = ..., param = value, ...} -> (name, params)."""
    if isinstance(value, dict):
        params = dict(value)
        name = params.pop("name", None)
        if not isinstance(name, str):
            raise ConfigError(
                f'an inline table in [sweep] needs a name, e.g. {{name = "afsl", ...}}; got {value!r}'
            )
        return name, params
    return value, {}


def _component_table(raw: dict[str, Any], kind: str, name: str) -> dict[str, Any]:
    table = raw.get(kind, {})
    if not isinstance(table, dict):
        raise ConfigError(f"[{kind}] must hold tables like [{kind}.<name>], got {table!r}")
    entry = table.get(name, {})
    if not isinstance(entry, dict):
        raise ConfigError(f"[{kind}.{name}] must be a table of parameters, got {entry!r}")
    return entry


def _has_eps(attack: str) -> bool:
    from afsl_bench.attacks import ATTACKS

    return "eps" in ATTACKS.params_of(attack)


def _text(value: Any) -> str:
    """A TOML value as --set text: lists join with commas, booleans are lower case."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(_text(v) for v in value)
    return str(value)


def _quoted_keys(table: dict[str, Any]) -> dict[str, Any]:
    """``[set]``'s keys, which must be quoted dotted names: TOML reads an unquoted ``data.root = ...`` as a
    table ``data`` holding ``root``, which is said with the line and the fix."""
    for kind, value in table.items():
        if isinstance(value, dict) and value:
            key, inner = next(iter(value.items()))
            raise ConfigError(
                f"[set] reads '{key}' as a table inside '{kind}': quote the dotted key, "
                f'"{kind}.{key}" = {_text(inner)!r} (TOML splits an unquoted key at its dots)'
            )
    return table


def _where(text: str, message: str) -> str:
    """', line N' where the offending name of the message first appears in the suite text, else ''. The
    names quoted before any suggestion, most specific (last) first: "attack 'apgd' has no parameter 'stepz'"
    points at ``stepz``, not at ``apgd``."""
    head = re.split(r"Did you mean|Valid", message)[0]
    for token in reversed(re.findall(r"'([^']+)'", head)):
        for number, line in enumerate(text.splitlines(), start=1):
            if re.search(rf"(?<![\w-]){re.escape(token)}(?![\w-])", line):
                return f", line {number}"
    return ""


def missing_data(suite: Suite) -> list[str]:
    """What a dry run can find before anything runs: data locations (a folder's ``root``, a store path given
    as ``prepared``) that do not exist, once each, as 'data.root=PATH (N cells)'."""
    counts: dict[str, int] = {}
    for cell in suite.cells:
        for name, value, dataset in missing_locations(cell):
            label = f"{name}={value or '(unset)'} ({dataset})"
            counts[label] = counts.get(label, 0) + 1
    return [f"{label}: {n} cell{'s' if n > 1 else ''}" for label, n in sorted(counts.items())]


def plan_status(suite: Suite, results_dir: Path | str) -> tuple[list[CellSpec], list[CellSpec]]:
    """(cached, to run): what ``--dry-run`` prints."""
    store = RecordStore(results_dir)
    done = {c.cell_id for c in suite.cells if store.finished(c.cell_id)}  # each record read once
    return [c for c in suite.cells if c.cell_id in done], [c for c in suite.cells if c.cell_id not in done]


def run_sweep(
    suite: Suite,
    options: RunOptions,
    on_cell: Callable[[CellSpec, str, SweepOutcome], None] = lambda cell, status, outcome: None,
    executor: Executor | None = None,
) -> SweepOutcome:
    """Run every cell not yet finished (here, or on Ray: ``benchmark/runner/executors.py``); ``on_cell`` hears
    "running", then "done", "cached" or "failed". A failing cell is recorded with its error, the sweep goes
    on."""
    executor = executor or LocalExecutor()
    outcome, store, start = SweepOutcome(), RecordStore(options.results_dir), time.perf_counter()
    store.check_writable()  # once, up front: not one failed cell per cell
    for cell, result in executor.run(suite.cells, options, lambda cell: on_cell(cell, "running", outcome)):
        if result.error is not None:
            store.write_failure(cell.cell_id, cell.training.train_id, cell.to_json(), result.error)
            outcome.failed.append(cell.cell_id)
            message = (str(result.error.get("message", "")).strip().splitlines() or [""])[0]
            outcome.errors[cell.cell_id] = f"{result.error.get('type', 'Error')}: {message}"
            on_cell(cell, "failed", outcome)
        else:
            (outcome.cached if result.cached else outcome.done).append(cell.cell_id)
            on_cell(cell, "cached" if result.cached else "done", outcome)
    outcome.seconds = time.perf_counter() - start
    return outcome


def certification_status(
    suite: Suite, results_dir: Path | str
) -> tuple[list[Certification], list[Certification]]:
    """(stored, to run) of the suite's certifications."""
    done = [c for c in suite.certifications if stored(results_dir, c.certify_id) is not None]
    return done, [c for c in suite.certifications if c not in done]


def run_certifications(
    suite: Suite,
    options: RunOptions,
    on_start: Callable[[Certification, int], None] = lambda job, index: None,
    **progress: Any,
) -> tuple[list[str], list[str]]:
    """Certify every planned model not yet certified (``runner/certification.py``), one after another here,
    after the cells (which train the models they share). Returns the ids (run, stored before)."""
    ran, cached = [], []
    for index, job in enumerate(suite.certifications):
        if stored(options.results_dir, job.certify_id) is not None:
            cached.append(job.certify_id)
            continue
        on_start(job, index)
        certify_model(job.training, job.settings, options, **progress)
        ran.append(job.certify_id)
    return ran, cached


def describe_certification(job: Certification) -> str:
    """One line: the trained model as a cell's label says it, then CERTIFY's settings."""
    from afsl_bench.runner.describe import model_label

    s = job.settings
    return (
        f"certify {model_label(job.training.to_json())}: sigma {s.sigma:g}, n {s.n}, "
        f"{s.samples or 'all'} test images"
    )


def describe(cell: CellSpec) -> str:
    """One line per cell, with the parameters that differ from the defaults (the table labels, the training
    settings) and the seed."""
    from afsl_bench.runner.describe import describe_spec

    return describe_spec(cell.to_json())
