"""The leaderboard's tables: the ranking, one table per attack family, the AFSL ablation, the transfer
matrix, cross-data-set accuracy, the perturbation sizes, and the flags raised.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pandas as pd

from afsl_bench.report.leaderboard import paper
from afsl_bench.report.tables import NOT_LEARNED_MARK, pivot, tidy, to_markdown
from afsl_bench.store.record import NOT_LEARNED_AUC, Record, not_learned

#: the ranking attack: the strongest evaluation of the zoo (RobustBench ranks by AutoAttack)
RANKING = "autoattack-binary"


#: the perturbation figures of the budget table: (column, record key, format)
BUDGET = (
    ("L-inf max", "linf_max", lambda v: f"{255 * v:.1f}/255"),
    ("L2 mean", "l2_mean", lambda v: f"{v:.2f}"),
    ("SSIM median", "ssim_median", lambda v: f"{v:.4f}"),
    ("SSIM mean", "ssim_mean", lambda v: f"{v:.4f}"),
    ("PSNR median (dB)", "psnr_median", lambda v: f"{v:.1f}"),
    ("PSNR mean (dB)", "psnr_mean", lambda v: f"{v:.1f}"),
)


def perceptual_budget(records: list[Record], main: pd.DataFrame) -> str:
    """Per attack, the size of its perturbations in the units deepfake-attack papers report: L-inf, L2,
    SSIM and PSNR of the attacked samples it changed (each figure: the median over the attack's cells of
    the per-cell value; records from before the SSIM / PSNR columns are left out of those two)."""
    sizes = {r.cell_id: r.perturbation or {} for r in records}
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
            cells = [pm(getattr(row, k), getattr(row, f"{k}_sd")) for k in ("real", "fake") if per_class]
            lines.append(
                f"| {rank} | {row.detector} | {row.defense} | {row.train_data} -> {eval_data} | "
                f"{pm(row.clean, row.clean_sd)} | **{pm(row.robust, row.robust_sd)}** |"
                + "".join(f" {c} |" for c in cells)
                + f" {row.n} |"
            )
    return "\n".join(lines)


#: the deployment metrics (core/operating.py): fakes caught at 1 % false positives on validation reals
DEPLOYMENT = ("clean_tpr_at_fpr1", "robust_tpr_at_fpr1", "robust_fpr_at_fpr1")


def deployment(frame: pd.DataFrame) -> str:
    """Fakes caught at a 1 % false-alarm rate fixed on clean validation reals, clean and under the ranking
    attack, with the reals the attack then gets flagged. Per evaluation set, only where every ranked record
    carries them (records from before the operating points lack them): a set with one record short is left
    out and named, never shown in part."""
    rows = frame[frame["attack_name"] == RANKING]
    if rows.empty or any(c not in rows for c in DEPLOYMENT):
        return ""
    complete = rows.groupby("eval_data")[list(DEPLOYMENT)].apply(lambda part: bool(part.notna().all().all()))
    rows = rows[rows["eval_data"].map(complete)]
    lacking = sorted(complete.index[~complete])
    if rows.empty:
        return ""
    groups = rows.groupby(["train_data", "eval_data", "detector", "defense"])
    table = groups.agg(
        **{c: (c, "mean") for c in DEPLOYMENT}, **{f"{c}_sd": (c, "std") for c in DEPLOYMENT},
        n=("seed", "nunique"),
    ).reset_index().sort_values(["eval_data", "robust_tpr_at_fpr1"], ascending=[True, False])  # fmt: skip
    lines = [
        f"### Deployment: fakes caught at 1 % false positives, clean and under `{RANKING}`",
        "",
        "The threshold is fixed on the clean validation reals before any attack, as a deployer fixes it. The "
        "attack aims at the model's own decision rule (margin 0) and stops a sample once it crosses it; where "
        "the 1 % threshold lies beyond that boundary, a fake pushed just across it is still caught, so the "
        "attacked columns are upper bounds against an attacker who knows the deployed threshold."
        + (f" Not shown: evaluation on {', '.join(lacking)} (its records predate the operating points)."
           if lacking else ""),
        "",
        "| detector | defense | trained on -> evaluated on | caught, clean | caught, attacked | reals flagged, attacked | seeds |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in table.itertuples():
        cells = [pm(getattr(row, c), getattr(row, f"{c}_sd")) for c in DEPLOYMENT]
        lines.append(f"| {row.detector} | {row.defense} | {row.train_data} -> {row.eval_data} | "
                     + " | ".join(cells) + f" | {row.n} |")  # fmt: skip
    return "\n".join(lines)


#: robust accuracy per class (older records lack them: docs/changelog.md); the ranking shows them when every record has them
PER_CLASS = ("robust_acc_real", "robust_acc_fake")


def pm(mean: float, sd: float) -> str:
    return f"{100 * mean:.1f}" if math.isnan(sd) else f"{100 * mean:.1f} ± {100 * sd:.1f}"


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
    table = stats.apply(lambda s: pm(s["mean"], s["std"]), axis=1).unstack("eval_data")
    table.index.name = "detector + defense"
    train = ", ".join(sorted(frame["train_data"].unique()))
    return f"### Cross-dataset: clean accuracy, trained on {train}\n\n{to_markdown(table)}"


def not_learned_sentence(records: list[Record]) -> str:
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


def flags(records: list[Record]) -> str:
    checked = [r for r in records if r.flags["checked"]]
    raised = [
        (r, name)
        for r in records
        for name in [*r.flags["raised"], *(f"{s} (across records)" for s in r.flags["store"])]
    ]
    head = (
        f"### Gradient-masking checks (docs/checks.md)\n\n{not_learned_sentence(records)}{len(checked)} of "
        f"{len(records)} cells ran the per-cell probes (zero gradients, saturated CE, randomised forward pass, "
        "black-box stronger than white-box, robust accuracy not falling with eps, robust at L-inf 0.5)."
    )
    if not raised:
        return head + " No flag was raised."
    cells = {r.cell_id: r for r, _ in raised}
    frame = tidy(cells.values()).set_index("cell_id")
    rows = pd.DataFrame(
        [
            {
                "flag": name,
                "attack": frame.loc[r.cell_id, "attack"],
                "model": frame.loc[r.cell_id, "target"],
                "eval": frame.loc[r.cell_id, "eval_data"],
                "cell": r.cell_id,
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
