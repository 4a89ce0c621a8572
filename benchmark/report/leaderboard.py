"""The leaderboard: ``leaderboard.md``'s generated block, its plots and RobustBench-style entries, rendered
from the records of one suite (``suites/leaderboard.toml``).

``afsl-bench leaderboard`` reads the finished records of the suite's cells from the store, writes a compact
copy of them (``results/leaderboard/records.jsonl``: spec, metrics, flags, timings and environment of each
cell; committed, so the block can be checked and re-rendered without re-running anything), renders the
markdown block and the plots from that copy, and replaces only the text between the markers in
``leaderboard.md``. A test re-renders the block from the committed copy and fails when it is stale, or when
the suite plans cells the copy does not hold.

RobustBench (Croce et al., NeurIPS 2021 Datasets and Benchmarks, https://arxiv.org/abs/2010.09670) lists a
model as one ``model_info`` JSON file; ``model_info`` writes ours in that shape (``autoattack_acc`` is
``autoattack-binary``'s robust accuracy: the binary-safe ensemble, docs/attacks.md), without importing
robustbench (its PyPI release cannot be imported).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from afsl_bench.core.errors import ConfigError
from afsl_bench.core.io import atomic_write_text
from afsl_bench.core.spec import to_jsonable
from afsl_bench.data.synthetic import DATA_VERSION
from afsl_bench.data.synthetic_cues import FFPP_CUES, HQ_CUES
from afsl_bench.report import paper
from afsl_bench.report.tables import NOT_LEARNED_MARK, pivot, tidy, to_markdown
from afsl_bench.run.describe import attack_label, eps_label
from afsl_bench.run.plan import LEGACY_RULE, THRESHOLD, DecisionRule
from afsl_bench.run.sweep import Suite
from afsl_bench.store.disk import RecordStore
from afsl_bench.store.record import NOT_LEARNED_AUC, not_learned

BEGIN = "<!-- BEGIN GENERATED: afsl-bench leaderboard -->"
END = "<!-- END GENERATED: afsl-bench leaderboard -->"
SUITE = Path("suites/leaderboard.toml")
EXPORT = Path("results/leaderboard/records.jsonl")
PLOTS = Path("results/leaderboard/plots")
MODEL_INFO = Path("results/leaderboard/model_info")
#: why the committed leaderboard is incomplete, when it is (a test requires it then, and only then)
PENDING = Path("results/leaderboard/PENDING")
#: the ranking attack: the strongest evaluation of the zoo (RobustBench ranks by AutoAttack)
RANKING = "autoattack-binary"
OPTIMIZERS = {"adam": "AdamW", "sgd": "SGD (momentum 0.9, Nesterov)"}
#: what the data sets of the committed leaderboard are, said next to every table
DATA_NOTES = {
    "synthetic": (
        f"the embedded procedural face set, data version {DATA_VERSION}: each fake is its own real frame "
        f"forged, with a resampling trace of at least {round(FFPP_CUES.trace[0] * 255)}/255 and a colour shift "
        f"of at least {round(FFPP_CUES.colour[0] * 255)}/255, so its robust-accuracy ceiling is 100 % up to "
        "16/255 (docs/data-design.md; not real faces)"
    ),
    "synthetic-hq": (
        f"the same generator at higher quality and weaker cues (trace >= {round(HQ_CUES.trace[0] * 255)}/255, "
        f"colour >= {round(HQ_CUES.colour[0] * 255)}/255), other identities and methods: a shifted test "
        "distribution (not real faces)"
    ),
}


def compact(record: dict[str, Any]) -> dict[str, Any]:
    """What the leaderboard keeps of a record: enough to render every table and plot and to say how and
    where each number was produced (the per-epoch history and per-sample table stay in the store)."""
    flags = record.get("flags", {})
    return {
        "cell_id": record["cell_id"],
        "train_id": record["train_id"],
        "status": record["status"],
        "spec": record["spec"],
        "metrics": record["metrics"],
        "n_samples": record["n_samples"],
        "n_attacked": record["n_attacked"],
        "test_of": record.get("data", {}).get("test_samples_of"),
        "perturbation": record.get("perturbation", {}),
        "flags": {
            "checked": flags.get("checked", False),
            "raised": flags.get("raised", []),
            "store": [f["flag"] for f in flags.get("store", [])],
        },
        "training_s": record["timings"].get("train_s"),
        "timings": record["timings"],
        "env": {k: record["env"].get(k) for k in ("afsl_bench", "git_sha", "torch", "device", "device_name")},
        "created": record["created"],
    }


def collect(
    suite: Suite, results_dir: Path | str, partial: bool = False, kept: Iterable[dict[str, Any]] = ()
) -> list[dict[str, Any]]:
    """The compact records of every cell of the suite: from the store, else from ``kept`` (the committed
    export, so a leaderboard finished over several sessions keeps what earlier ones ran); a record of a cell
    the suite no longer plans is dropped. A missing cell is an error unless ``partial``."""
    store = RecordStore(results_dir)
    earlier = {r["cell_id"]: r for r in kept}
    found = {}
    for cell in suite.cells:
        record = store.finished(cell.cell_id)
        found[cell.cell_id] = compact(record) if record is not None else earlier.get(cell.cell_id)
    missing = [cell_id for cell_id, record in found.items() if record is None]
    if missing and not partial:
        raise ConfigError(
            f"{len(missing)} of {len(found)} cells of {suite.path} have no finished record in {results_dir}: "
            f"run `afsl-bench sweep {suite.path}` first (or pass --partial to render what there is)"
        )
    return [r for r in found.values() if r is not None]


def missing_cells(suite: Suite, records: Iterable[dict[str, Any]]) -> list[Any]:
    """The suite's cells that have no record."""
    held = {r["cell_id"] for r in records}
    return [c for c in suite.cells if c.cell_id not in held]


def pending_note(path: Path) -> str | None:
    """The committed reason why the leaderboard is incomplete (``PENDING`` beside the export), if any."""
    return path.read_text().strip() if path.is_file() else None


def incomplete(missing: list[Any], planned: int, note: str | None) -> str:
    """The banner of a leaderboard whose suite is not fully run: how much is missing, of which models, why."""
    if not missing:
        return ""
    from afsl_bench.run.describe import labels

    models = sorted({"{detector} + {defense}".format(**labels(c.to_json())) for c in missing})
    shown = "; ".join(models[:12]) + (f"; and {len(models) - 12} more" if len(models) > 12 else "")
    return (
        f"> **Incomplete: {planned - len(missing)} of the {planned} cells of the suite have records; "
        f"{len(missing)} are still to run** (models: {shown}). Every number below comes from the current "
        f"code and protocol; the missing cells are simply absent. Why: {note or 'not stated'}"
    )


def write_export(path: Path, records: Iterable[dict[str, Any]]) -> None:
    lines = [json.dumps(r, sort_keys=True) for r in sorted(records, key=lambda r: r["cell_id"])]
    atomic_write_text(path, "\n".join(lines) + "\n")


def read_export(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise ConfigError(f"'{path}' does not exist: run `afsl-bench leaderboard` to write it")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def replace_block(text: str, block: str) -> str:
    """``text`` with the part between the markers replaced by ``block``; the rest is kept byte for byte."""
    if text.count(BEGIN) != 1 or text.count(END) != 1 or text.index(BEGIN) > text.index(END):
        raise ConfigError(f"leaderboard file needs exactly one pair of markers:\n{BEGIN}\n{END}")
    head, rest = text.split(BEGIN)
    _, tail = rest.split(END)
    return f"{head}{BEGIN}\n{block.strip()}\n{END}{tail}"


def current_block(text: str) -> str:
    return text.split(BEGIN)[1].split(END)[0].strip()


# ---------------------------------------------------------------------------------------------- rendering


def family(attack: str) -> str:
    """white-box (gradients), black-box (scores or a surrogate only) or distortion (no adversary)."""
    from afsl_bench.attacks import ATTACKS

    if "severity" in ATTACKS.params_of(attack):
        return "distortion"
    return "white-box" if ATTACKS.get(attack).requires_grad else "black-box"


FAMILIES = {
    "white-box": "White-box attacks (the attacker has the model's gradients)",
    "black-box": "Black-box attacks (scores only, or a surrogate model)",
    "distortion": "Distortions (no adversary: compression, blur, noise, resizing, colour)",
}


def render(
    records: list[dict[str, Any]], suite_path: Path | str, plots: dict[str, str], banner: str = ""
) -> str:
    """The markdown block: settings, the ranking, the paper reproduction, one table per attack family, the
    AFSL ablation, the transfer matrix, cross-dataset clean accuracy, flags and plots, after ``banner``
    (``incomplete``'s, when cells are missing). The main tables hold every record but AFSL's ablation
    variants (a term switched off), which have their own table."""
    if not records:
        return (
            "_No records yet: run `afsl-bench sweep suites/leaderboard.toml`, then `afsl-bench leaderboard`._"
        )
    frame = tidy(records)
    frame["family"] = frame["attack_name"].map(family)
    main = frame[~ablated(frame)]
    parts = [banner, settings(records, frame, suite_path), ranking(main), paper_reproduction(frame)]
    for name, title in FAMILIES.items():
        part = main[(main["family"] == name) & main["surrogate"].isna()]
        if name == "black-box":  # the default transfer cell (resnet surrogate) is a black-box column
            part = main[
                (main["family"] == name) & (main["attack_name"].ne("transfer") | is_default_transfer(main))
            ]
        if len(part):
            parts.append(section(f"### {title}", part, "robust_acc"))
    parts += [perceptual_budget(records, main), ablation(frame), transfer(frame), cross_dataset(main)]
    parts += [flags(records), figures(plots)]
    return "\n\n".join(p for p in parts if p)


#: the perturbation figures of the budget table: (column, record key, format)
BUDGET = (
    ("L-inf max", "linf_max", lambda v: f"{255 * v:.1f}/255"),
    ("L2 mean", "l2_mean", lambda v: f"{v:.2f}"),
    ("SSIM median", "ssim_median", lambda v: f"{v:.4f}"),
    ("SSIM mean", "ssim_mean", lambda v: f"{v:.4f}"),
    ("PSNR median (dB)", "psnr_median", lambda v: f"{v:.1f}"),
    ("PSNR mean (dB)", "psnr_mean", lambda v: f"{v:.1f}"),
)


def perceptual_budget(records: list[dict[str, Any]], main: pd.DataFrame) -> str:
    """Per attack, the size of its perturbations in the units deepfake-attack papers report: L-inf, L2,
    SSIM and PSNR of the attacked samples it changed (each figure: the median over the attack's cells of
    the per-cell value; records from before the SSIM / PSNR columns are left out of those two)."""
    sizes = {r["cell_id"]: r.get("perturbation", {}) for r in records}
    part = main[main["cell_id"].map(lambda c: sizes[c].get("ssim_median") is not None)]
    if part.empty:
        return ""
    rows = []
    for attack, cells in part.groupby("attack", sort=True):
        values = {key: [sizes[c][key] for c in cells["cell_id"] if sizes[c].get(key) is not None]
                  for _, key, _ in BUDGET}  # fmt: skip
        rows.append(
            {"attack": attack, "cells": len(cells)}
            | {
                name: show(float(np.median(values[key]))) if values[key] else "-"
                for name, key, show in BUDGET
            }
        )
    table = pd.DataFrame(rows).set_index("attack")
    return (
        "### Perturbation size: L-inf, L2, SSIM and PSNR\n\nOver the attacked samples each attack changed "
        "(SSIM: Wang et al. 2004, Gaussian window 11, sigma 1.5; PSNR in dB; pixel range [0, 1]; torchmetrics); "
        "each figure is the median over the attack's cells of the per-cell value.\n\n" + to_markdown(table)
    )


def _decision_rules(records: list[dict[str, Any]]) -> str:
    """How the records decided "fake" (docs/records.md): the model's own margin or the EER threshold."""
    said = {
        DecisionRule.MARGIN.value: "the models' own decision rule (logit margin > 0)",
        DecisionRule.EER.value: "the clean-validation EER threshold (`eval.threshold=eer`)",
    }
    rules = sorted({r["spec"]["eval_data"]["params"].get(THRESHOLD, LEGACY_RULE.value) for r in records})
    return "decided at " + " or ".join(said[r] for r in rules)


def is_default_transfer(frame: pd.DataFrame) -> pd.Series:
    return frame["attack"].str.match(r"^transfer [^(]*$")


def settings(records: list[dict[str, Any]], frame: pd.DataFrame, suite_path: Path | str) -> str:
    first = records[0]
    train = first["spec"]["train"]["params"]
    models = {r["train_id"] for r in records}
    seeds = sorted(frame["seed"].unique())
    compute_s = sum(r["timings"]["total_s"] for r in records)
    train_s = sum({r["train_id"]: r["training_s"] or 0.0 for r in records}.values())
    devices = sorted({f"{r['env']['device']} ({r['env']['device_name'] or 'unknown'})" for r in records})
    shas = sorted({(r["env"]["git_sha"] or "unknown")[:10] for r in records})
    created = sorted(r["created"] for r in records)
    data = sorted(set(frame["train_data"]) | set(frame["eval_data"]))
    synthetic = all(d in DATA_NOTES for d in data)
    return "\n".join(
        [
            (
                f"Rendered by `afsl-bench leaderboard` from the {len(records)} records of `{suite_path}` "
                f"({len(models)} trained models, seeds {', '.join(map(str, seeds))}; every number is the mean "
                f"± sd over the seeds, in %). Reproduce: `afsl-bench sweep {suite_path}` then "
                "`afsl-bench leaderboard`."
            ),
            "",
            ("- **Data (synthetic, not real faces):** " if synthetic else "- **Data:** ")
            + "; ".join(f"`{d}`: {DATA_NOTES.get(d, 'see afsl-bench list datasets')}" for d in data)
            + f". {_test_set(first)}"
            + (
                " Numbers here say how the methods compare on this set; they are not FaceForensics++ or "
                "Celeb-DF results."
                if synthetic
                else ""
            ),
            (
                f"- **Training:** {train['epochs']} epochs, batch {train['batch_size']}, "
                f"{OPTIMIZERS.get(train['optimizer'], train['optimizer'])} lr {train['lr']}"
                f"{', cosine schedule' if train['cosine'] else ''}; {_selection(train)}"
                f"{_training_attacks(records)} (defaults: `afsl-bench list defenses --params`)."
            ),
            (
                "- **Threat model:** L-inf eps 8/255 on [0, 1] RGB unless a column says otherwise, both directions "
                "attacked (real -> fake and fake -> real); parameters that differ from the defaults are written "
                "next to the attack's name. Robust accuracy counts a sample correct when its attacked version is "
                "still classified correctly (the unattacked clean errors count as errors); "
                f"{_decision_rules(records)}."
            ),
            (
                f"- **Compute:** {compute_s / 60:.0f} min of cell time; training the {len(models)} models took "
                f"{train_s / 60:.0f} min (inside these cells, or in another suite's that shared the model), on "
                f"{', '.join(devices)}; records written {created[0]} to {created[-1]}; code {', '.join(shas)}."
            ),
        ]
    )


#: how the kept epoch was chosen (``train.select_on``, on the validation split); {attack}: the robust one
SELECTION = {
    "last": "the last epoch is kept",
    "clean": "the epoch kept is the best on clean validation accuracy",
    "robust": "the epoch kept is the best on robust validation accuracy ({attack})",
}


def _selection(train: dict[str, Any]) -> str:
    return SELECTION[train["select_on"]].format(attack=_validation_attack(train))


def _validation_attack(train: dict[str, Any]) -> str:
    """The robust validation attack as the record's training settings say (records from before
    ``robust_val_steps`` attacked validation with the defense's own training attack)."""
    samples = train.get("robust_val_samples", 0)
    if "robust_val_steps" not in train:
        return f"the defense's own training attack on {samples} validation samples"
    eps = eps_label(train["robust_val_eps"], "linf")
    return f"APGD-CE, {train['robust_val_steps']} steps at L-inf {eps} on {samples} validation samples"


def _training_attacks(records: list[dict[str, Any]]) -> str:
    """'; at / afsl / trades train against PGD-10 (step 2/255) at L-inf 8/255', from the defenses' parameters
    in the records (one clause per distinct setting)."""
    by_setting: dict[str, set[str]] = {}
    for record in records:
        defense = record["spec"]["defense"]
        params = defense["params"]
        if "steps" in params:
            step = eps_label(params.get("step_size"), "linf") or str(params.get("step_size"))
            setting = f"PGD-{params['steps']} (step {step}) at L-inf {eps_label(params['eps'], 'linf')}"
            by_setting.setdefault(setting, set()).add(defense["name"])
    return "".join(f"; {' / '.join(sorted(names))} train against {s}" for s, names in by_setting.items())


def _test_set(record: dict[str, Any]) -> str:
    if record.get("test_of"):
        return (
            f"Each cell attacks the same fixed subset of {record['n_samples']} of the {record['test_of']} test "
            "images (`eval.samples`)."
        )
    return f"Test split: {record['n_samples']} images."


def ranking(frame: pd.DataFrame) -> str:
    """Detector + defense ranked by robust accuracy under the ranking attack, in-domain first; with robust
    accuracy on reals and on fakes beside the total when every ranked record has them."""
    rows = frame[frame["attack_name"] == RANKING]
    if rows.empty:
        return ""
    per_class = PER_CLASS[0] in rows and rows[list(PER_CLASS)].notna().all().all()
    stats = {"clean": "clean_acc", "robust": "robust_acc"} | (
        dict(zip(("real", "fake"), PER_CLASS, strict=True)) if per_class else {}
    )
    groups = rows.groupby(["train_data", "eval_data", "detector", "defense"])
    table = groups.agg(
        **{k: (m, "mean") for k, m in stats.items()},
        **{f"{k}_sd": (m, "std") for k, m in stats.items()},
        n=("seed", "nunique"),
    ).reset_index()
    table = table.sort_values(["eval_data", "robust", "clean"], ascending=[True, False, False])
    extra = " robust on reals | robust on fakes |" if per_class else ""
    lines = [
        f"### Ranking: robust accuracy under `{RANKING}` (APGD-CE, APGD-margin, Square; L-inf 8/255)",
        "",
        f"| # | detector | defense | trained on -> evaluated on | clean | robust |{extra} seeds |",
        "|---|---|---|---|---|---|" + ("---|---|" if per_class else "") + "---|",
    ]
    for eval_data, part in table.groupby("eval_data", sort=False):
        for rank, row in enumerate(part.itertuples(), start=1):
            cells = [_pm(getattr(row, k), getattr(row, f"{k}_sd")) for k in ("real", "fake") if per_class]
            lines.append(
                f"| {rank} | {row.detector} | {row.defense} | {row.train_data} -> {eval_data} | "
                f"{_pm(row.clean, row.clean_sd)} | **{_pm(row.robust, row.robust_sd)}** |"
                + "".join(f" {c} |" for c in cells)
                + f" {row.n} |"
            )
    return "\n".join(lines)


#: robust accuracy per class (records from 2026-12-01 on); the ranking shows them when every record has them
PER_CLASS = ("robust_acc_real", "robust_acc_fake")


def _pm(mean: float, sd: float) -> str:
    return f"{100 * mean:.1f}" if math.isnan(sd) else f"{100 * mean:.1f} ± {100 * sd:.1f}"


# ----------------------------------------------------------------------------------- paper reproduction

#: the reproduction tables' columns: (title, metric); the clean ones are read from the PGD-10 records
REPRODUCED = (
    ("clean AUC", "clean_auc"),
    ("PGD-10 AUC", "robust_auc"),
    ("clean acc", "clean_acc"),
    ("PGD-10 acc", "robust_acc"),
)
#: the levels a table is given at: (title, metric prefix); video level only where the records have it
LEVELS = (("frame level", ""), ("video level (mean frame score per video)", "video_"))


def pgd10_label() -> str:
    """The table label of the paper's attack: ``pgd`` at its defaults with 10 steps (L-inf 8/255, both
    directions); it names ``steps=10`` should PGD's default ever change."""
    from afsl_bench.attacks import ATTACKS

    params = {k: to_jsonable(p.default) for k, p in ATTACKS.params_of("pgd").items()}
    return attack_label({"attack": {"name": "pgd", "params": params | {"steps": 10}}})


def paper_reproduction(frame: pd.DataFrame) -> str:
    """Table 2 and the ablation of Khan et al. (MMM 2024, https://arxiv.org/abs/2403.08806; ``paper.py``)
    rebuilt from the records present: one table per detector and in-domain data set, our mean ± sd over
    seeds beside the paper's numbers, and the ordering that came out. Empty without PGD-10 records of the
    paper's defenses."""
    pgd10 = pgd10_label()
    in_domain = frame[frame["train_data"] == frame["eval_data"]]
    if not (in_domain["attack"].eq(pgd10) & in_domain["defense_name"].isin(list(paper.TABLE2))).any():
        return ""
    parts = [
        "### Paper reproduction: Khan et al. 2024 (AFSL), Table 2 and the ablation",
        (
            f"Ours: mean ± sd over seeds in %, trained and evaluated on the same set, under `{pgd10}` "
            "(PGD-10, the paper's attack) and the binary-safe AutoAttack where it ran. Paper: "
            f"{paper.TABLE2_SOURCE}. Where the detector or the data differ from the paper's, compare "
            "orderings, not values."
        ),
    ]
    for (detector, data), part in in_domain.groupby(["detector", "train_data"], sort=True):
        parts += reproduction(part.assign(ablated=ablated(part)), f"{detector}, {data} -> {data}", pgd10)
    return "\n\n".join(parts) if len(parts) > 2 else ""


def reproduction(part: pd.DataFrame, where: str, pgd10: str) -> list[str]:
    """The Table-2 analogue (main rows) and the ablation table of one detector and data set."""
    main = part[~part["ablated"]]
    if main[main["attack"] == pgd10].empty:
        return []
    order = list(paper.TABLE2)  # none, at, trades, afsl; other defenses after them
    ranks = main["defense_name"].map(lambda name: order.index(name) if name in order else len(order))
    names = main.drop_duplicates("defense").set_index("defense")["defense_name"]
    out = []
    for level, prefix in levels(main):
        table = reproduction_table(main, main["defense"], ranks, prefix, pgd10)
        table["paper clean / PGD-10 AUC"] = [_reported(names[label]) for label in table.index]
        out.append(f"**Table 2 analogue: {where}, {level}**\n\n{to_markdown(table)}")
    if main["defense"].nunique() > 1:
        out.append(f"{orderings(main, main['defense'], pgd10)} {PAPER_ORDERING}")
    return out + ablation_reproduction(part, where, pgd10)


def ablation_reproduction(part: pd.DataFrame, where: str, pgd10: str) -> list[str]:
    """The paper's ablation rows (recognised by their flags, whatever the loss weights) with the paper's
    qualitative claim; nothing when no ablation variant ran."""
    if not part["ablated"].any():
        return []
    variants = [
        paper.ablation_variant(name, json.loads(params))
        for name, params in zip(part["defense_name"], part["defense_params"], strict=True)
    ]
    known = [v is not None for v in variants]
    part = part[known]
    variants = [v for v in variants if v is not None]
    rows = pd.Series(
        [f"{v.label}: {d}" for v, d in zip(variants, part["defense"], strict=True)], index=part.index
    )
    ranks = pd.Series([paper.ABLATION.index(v) for v in variants], index=part.index)
    tables = [(level, reproduction_table(part, rows, ranks, prefix, pgd10)) for level, prefix in levels(part)]
    out = [f"**Ablation: {where}, {level}**\n\n{to_markdown(table)}" for level, table in tables]
    claim = f"The paper's claim ({paper.CITATION}, qualitative only): {paper.ABLATION_CLAIM}."
    return out + [f"{claim} {orderings(part, rows, pgd10)}"]


def levels(part: pd.DataFrame) -> list[tuple[str, str]]:
    """Frame level always; video level when every record has video-level metrics (clip or frame data with
    several samples per video)."""

    def present(prefix: str) -> bool:
        return f"{prefix}clean_auc" in part and bool(part[f"{prefix}clean_auc"].notna().all())

    return [(title, prefix) for title, prefix in LEVELS if not prefix or present(prefix)]


def reproduction_table(
    part: pd.DataFrame, rows: pd.Series, ranks: pd.Series, prefix: str, pgd10: str
) -> pd.DataFrame:
    """``rows`` (a label per record) x the reproduced columns, 'mean ± sd' over seeds in %, in the order of
    ``ranks`` (a number per record); an AutoAttack cell says '(n=k)' where it holds another number of
    seeds than the PGD-10 cells of its row."""
    part = part.assign(row=rows)
    pgd = part[part["attack"] == pgd10]
    seeds = pgd.groupby("row")["seed"].nunique()
    present = [(title, f"{prefix}{metric}") for title, metric in REPRODUCED if f"{prefix}{metric}" in part]
    columns = {title: _stats(pgd, metric, seeds) for title, metric in present}
    for label, attacked in part[part["attack_name"] == RANKING].groupby("attack", sort=True):
        columns[f"{label} acc"] = _stats(attacked, f"{prefix}robust_acc", seeds)
    table = pd.DataFrame(columns).assign(seeds=seeds).fillna("-")
    rank = ranks.groupby(rows).min()
    table = table.loc[sorted(table.index, key=lambda label: (rank[label], label))]
    table.index.name = "defense"
    return table


def _stats(rows: pd.DataFrame, metric: str, seeds: pd.Series) -> pd.Series:
    stats = rows.groupby("row")[metric].agg(["mean", "std", "count"])
    cells = {
        label: _pm(s["mean"], s["std"]) + _other_seeds(s["count"], seeds.get(label))
        for label, s in stats.iterrows()
    }
    return pd.Series(cells, dtype=object)


def _other_seeds(count: int, seeds: int | None) -> str:
    return "" if count == seeds else f" (n={count:.0f})"


def _reported(defense_name: str) -> str:
    reported = paper.TABLE2.get(defense_name)
    return f"{reported.clean_auc:.1f} / {reported.pgd10_auc:.1f}" if reported else "-"


def orderings(part: pd.DataFrame, rows: pd.Series, pgd10: str) -> str:
    """'Ordering here by PGD-10 accuracy: a 40.0 > b 35.0 = c 35.0; by PGD-10 AUC: ...', computed from the
    frame-level means over seeds."""
    pgd = part.assign(row=rows)
    pgd = pgd[pgd["attack"] == pgd10]
    by = {"accuracy": "robust_acc", "AUC": "robust_auc"}
    shown = [
        f"by PGD-10 {name}: {ranked(pgd.groupby('row')[metric].mean())}"
        for name, metric in by.items()
        if metric in pgd
    ]
    return f"Ordering here (frame level, mean over seeds) {'; '.join(shown)}."


def ranked(means: pd.Series) -> str:
    """'a 40.0 > b 35.0 = c 35.0': best first, '=' where the values tie as shown (as the tables round)."""
    means = means.sort_values(ascending=False, kind="stable")
    shown = [(label, f"{100 * mean:.1f}") for label, mean in means.items()]
    text = f"{shown[0][0]} {shown[0][1]}"
    for (label, value), (_, before) in zip(shown[1:], shown, strict=False):
        text += f" {'=' if value == before else '>'} {label} {value}"
    return text


#: the paper's ordering under PGD-10 (from ``paper.TABLE2``), which the tables test rather than assume
PAPER_ORDERING = (
    f"The paper reports {' > '.join(sorted(paper.TABLE2, key=lambda n: -paper.TABLE2[n].pgd10_auc))} by "
    "PGD-10 AUC; that ordering is a hypothesis under test here, not an assumption."
)


def section(title: str, frame: pd.DataFrame, metric: str) -> str:
    """One table per detector and data-set pair: defenses down, attacks across, with the clean column."""
    parts = [title]
    clean = frame.drop_duplicates(["detector", "defense", "train_data", "eval_data", "seed"])
    clean_tables = pivot(clean.assign(attack="clean"), "clean_acc", rows="defense", columns="attack")
    for where, table in pivot(frame, metric, rows="defense", columns="attack"):
        clean_column = next(t for w, t in clean_tables if w == where)
        order = frame.drop_duplicates("attack").sort_values(["attack_name", "eps", "attack"])["attack"]
        table = pd.concat([clean_column, table[[a for a in order if a in table.columns]]], axis=1).fillna("-")
        parts.append(f"**{_where(dict(where))}**\n\n{to_markdown(_plain(table))}")
    return "\n\n".join(parts)


def _plain(table: pd.DataFrame) -> pd.DataFrame:
    """Seeds are stated once in the settings: drop the per-cell '(n=3)'."""
    return table.map(lambda v: v.split(" (n=")[0] if isinstance(v, str) else v)


def _where(where: dict[str, Any]) -> str:
    shown = [str(where.pop("detector", ""))]
    if "train_data" in where:
        shown.append(f"{where.pop('train_data')} -> {where.pop('eval_data')}")
    shown += [f"{k} {v}" for k, v in where.items()]
    return ", ".join(s for s in shown if s)


def ablated(frame: pd.DataFrame) -> pd.Series:
    """AFSL runs with a loss term switched off (``paper.is_ablated``): ablation variants, not main results."""
    return pd.Series(
        [paper.is_ablated(d, json.loads(p)) for d, p in zip(frame["defense_name"], frame["defense_params"])],
        index=frame.index,
        dtype=bool,
    )


def ablation(frame: pd.DataFrame) -> str:
    """The ablation variants beside the full AFSL runs (every term on), for the detectors, data sets and
    attacks that have ablation variants."""
    part = frame[frame["defense_name"] == "afsl"]
    keys = ["detector", "train_data", "eval_data", "attack"]
    has_variants = part.assign(ablated=ablated(part)).groupby(keys)["ablated"].transform("any")
    part = part[has_variants]
    if part.empty:
        return ""
    return section(
        "### AFSL ablation (Khan et al. 2024: L_dcl + 1·L_asl + 0.1·L_srl; terms switched off per row)",
        part,
        "robust_acc",
    )


def transfer(frame: pd.DataFrame) -> str:
    part = frame[frame["surrogate"].notna()]
    if part["surrogate"].nunique() < 2:
        return ""
    parts = [
        "### Transfer matrix: robust accuracy of the target (columns) under PGD crafted on a surrogate (rows)"
    ]
    for where, table in pivot(part, "robust_acc", rows="surrogate", columns="target"):
        parts.append(f"**{_where(dict(where))}**\n\n{to_markdown(_plain(table))}")
    return "\n\n".join(parts)


def cross_dataset(frame: pd.DataFrame) -> str:
    if frame["eval_data"].nunique() < 2:
        return ""
    clean = frame.drop_duplicates(["detector", "defense", "train_data", "eval_data", "seed"])
    clean = clean.assign(target=clean["detector"] + " + " + clean["defense"])
    stats = clean.groupby(["target", "eval_data"])["clean_acc"].agg(["mean", "std"])
    table = stats.apply(lambda s: _pm(s["mean"], s["std"]), axis=1).unstack("eval_data")
    table.index.name = "detector + defense"
    train = ", ".join(sorted(frame["train_data"].unique()))
    return f"### Cross-dataset: clean accuracy, trained on {train}\n\n{to_markdown(table)}"


def not_learned_sentence(records: list[dict[str, Any]]) -> str:
    """Which cells' detectors did not learn (clean AUC below the threshold; marked in every table)."""
    unlearned = [r for r in records if not_learned(r)]
    if not unlearned:
        return f"Every detector learned (clean AUC >= {NOT_LEARNED_AUC} in every cell). "
    frame = tidy(unlearned)
    models = sorted({f"{t} ({e})" for t, e in zip(frame["target"], frame["eval_data"], strict=True)})
    return (
        f"**{len(unlearned)} cells' detectors did not learn** (clean AUC < {NOT_LEARNED_AUC}; marked "
        f"{NOT_LEARNED_MARK.strip()} in the tables, their robust numbers are noise): {'; '.join(models)}. "
    )


def flags(records: list[dict[str, Any]]) -> str:
    checked = [r for r in records if r["flags"]["checked"]]
    raised = [
        (r, name)
        for r in records
        for name in [*r["flags"]["raised"], *(f"{s} (across records)" for s in r["flags"]["store"])]
    ]
    head = (
        f"### Gradient-masking checks (docs/checks.md)\n\n{not_learned_sentence(records)}{len(checked)} of "
        f"{len(records)} cells ran the per-cell probes (zero gradients, saturated CE, randomised forward pass, "
        "black-box stronger than white-box, robust accuracy not falling with eps, robust at L-inf 0.5)."
    )
    if not raised:
        return head + " No flag was raised."
    cells = {r["cell_id"]: r for r, _ in raised}
    frame = tidy(cells.values()).set_index("cell_id")
    rows = pd.DataFrame(
        [
            {
                "flag": name,
                "attack": frame.loc[r["cell_id"], "attack"],
                "model": frame.loc[r["cell_id"], "target"],
                "eval": frame.loc[r["cell_id"], "eval_data"],
                "cell": r["cell_id"],
            }
            for r, name in raised
        ]
    )
    lines = [
        head
        + f" Flags were raised in {len(cells)} of them (grouped by flag and attack; the first cell id of each"
        " group is named, its record holds the probe values):",
        "",
        "| flag | attack | cells | models (evaluated on) | e.g. cell |",
        "|---|---|---|---|---|",
    ]
    for (name, attack), group in rows.groupby(["flag", "attack"], sort=True):
        models = sorted({f"{m} ({e})" for m, e in zip(group["model"], group["eval"], strict=True)})
        lines.append(f"| {name} | {attack} | {len(group)} | {'; '.join(models)} | `{min(group['cell'])}` |")
    return "\n".join(lines)


def plot_links(plots_dir: Path, page: Path) -> dict[str, str]:
    """{plot: path relative to the page} for the PNGs present, in the order ``afsl_bench.report.plots`` draws them."""
    from afsl_bench.report.plots import PLOTS as ORDER

    present = {p.stem: p for p in plots_dir.glob("*.png")}
    return {
        name: Path(present[name]).resolve().relative_to(page.resolve().parent).as_posix()
        for name in ORDER
        if name in present
    }


def figures(plots: dict[str, str]) -> str:
    if not plots:
        return ""
    return "### Plots\n\n" + "\n\n".join(f"![{name}]({path})" for name, path in plots.items())


# ----------------------------------------------------------------------------------- RobustBench export


def model_info(records: list[dict[str, Any]]) -> dict[Path, dict[str, Any]]:
    """One RobustBench ``model_info`` entry per (detector, defense, train set, eval set) with a ranking
    record, mean over seeds; keyed by its relative path ``<eval set>/Linf/<name>.json``."""
    frame = tidy(records)
    rows = frame[(frame["attack_name"] == RANKING) & (frame["norm"] == "linf")]
    out = {}
    for (detector, defense, train_data, eval_data, eps), part in rows.groupby(
        ["detector", "defense", "train_data", "eval_data", "eps"]
    ):
        name = f"{detector}-{defense}-{train_data}".replace(" ", "").replace("(", "_").replace(")", "")
        name = name.replace(",", "_").replace("=", "-")
        out[Path(eval_data) / "Linf" / f"{name}.json"] = {
            "link": "",
            "name": f"{detector} + {defense} (afsl-bench)",
            "authors": "afsl-bench",
            "additional_data": False,
            "number_forward_passes": 1,
            "dataset": eval_data,
            "venue": "afsl-bench leaderboard",
            "architecture": detector,
            "eps": eps_label(eps, "linf"),
            "clean_acc": f"{100 * part['clean_acc'].mean():.2f}",
            "reported": "",
            "autoattack_acc": f"{100 * part['robust_acc'].mean():.2f}",
            "footnote": (
                f"Trained on {train_data}; mean of {part['seed'].nunique()} seeds. autoattack_acc is "
                "afsl-bench's binary-safe ensemble (APGD-CE, APGD-margin, Square), not AutoAttack's standard "
                "version, whose DLR and targeted members need three or more classes."
            ),
            "unreliable": False,
        }
    return out


def write_model_info(root: Path, entries: dict[Path, dict[str, Any]]) -> list[Path]:
    """Write the entries and remove every other entry under ``root``: a model the records no longer hold
    must not stay listed."""
    for old in root.rglob("*.json") if root.is_dir() else []:
        if old.relative_to(root) not in entries:
            old.unlink()
    written = []
    for relative, entry in sorted(entries.items()):
        path = root / relative
        atomic_write_text(path, json.dumps(entry, indent=2) + "\n")
        written.append(path)
    return written
