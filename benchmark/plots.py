"""Plots from the record store (seaborn / matplotlib), each written as PNG and SVG.

- ``robust_vs_eps``: robust accuracy against the budget (k/255), one line per defense, one panel per
  attack, mean over seeds with the spread as a band (Madry et al.'s and RobustBench's standard view);
- ``clean_vs_robust``: the trade-off, one point per (detector, defense, attack) cell, mean over seeds;
- ``cross_dataset``: train set x eval set heatmap of a metric, one per (detector, defense, attack);
- ``transfer_matrix``: surrogate x target heatmap of robust accuracy under transfer attacks;
- ``afsl_ablation``: bars of robust accuracy per AFSL variant (a loss term switched off), mean ± sd over
  seeds, one bar per attack.

Nothing is re-run: every number comes from the records (``benchmark.tables.tidy``).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from benchmark.errors import ConfigError
from benchmark.tables import eps_label


def save(fig: plt.Figure, out_dir: Path, name: str) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{name}.png", out_dir / f"{name}.svg"]
    for path in paths:
        fig.savefig(path, bbox_inches="tight", dpi=150)
    plt.close(fig)
    return paths


def robust_vs_eps(frame: pd.DataFrame) -> plt.Figure:
    """Robust accuracy (%) vs L-inf eps (k/255); lines per defense, panels per attack and detector."""
    data = frame[(frame["norm"] == "linf") & frame["eps"].notna()].copy()
    if data["eps"].nunique() < 2:
        raise ConfigError("robust_vs_eps needs records at two or more L-inf budgets (sweep an eps list)")
    data["eps (k/255)"] = data["eps"] * 255
    data["robust accuracy (%)"] = 100 * data["robust_acc"]
    grid = sns.relplot(
        data=data, x="eps (k/255)", y="robust accuracy (%)", hue="defense", col="attack_name", row="detector",
        kind="line", marker="o", errorbar="sd", facet_kws={"sharey": True}, height=3.2, aspect=1.1,
    )
    grid.set_titles(row_template="{row_name}", col_template="{col_name}")
    grid.figure.suptitle("Robust accuracy vs budget (mean ± sd over seeds)", y=1.03)
    return grid.figure


def clean_vs_robust(frame: pd.DataFrame) -> plt.Figure:
    """The accuracy trade-off: clean vs robust accuracy (%), one point per cell (mean over seeds), one panel
    per detector."""
    means = frame.groupby(["detector", "defense", "attack"], as_index=False)[["clean_acc", "robust_acc"]].mean()
    means[["clean accuracy (%)", "robust accuracy (%)"]] = 100 * means[["clean_acc", "robust_acc"]]
    grid = sns.relplot(
        data=means, x="clean accuracy (%)", y="robust accuracy (%)", hue="defense", style="attack",
        col="detector", kind="scatter", s=70, height=4, aspect=1.1,
    )
    grid.set_titles(col_template="{col_name}")
    grid.figure.suptitle("Clean vs robust accuracy (mean over seeds)", y=1.03)
    return grid.figure


def cross_dataset(frame: pd.DataFrame, metric: str = "robust_acc") -> plt.Figure:
    """Train set x eval set heatmap of a metric (%), one panel per (detector, defense, attack)."""
    groups = list(frame.groupby(["detector", "defense", "attack"]))
    usable = [(k, g) for k, g in groups if g["eval_data"].nunique() > 1 or g["train_data"].nunique() > 1]
    if not usable:
        raise ConfigError("cross_dataset needs records evaluated on more than one data set (sweep an eval list)")
    fig, axes = plt.subplots(1, len(usable), figsize=(4.2 * len(usable), 3.4), squeeze=False)
    for ax, ((detector, defense, attack), part) in zip(axes[0], usable, strict=True):
        table = 100 * part.groupby(["train_data", "eval_data"])[metric].mean().unstack("eval_data")
        sns.heatmap(table, annot=True, fmt=".1f", vmin=0, vmax=100, cmap="viridis", cbar=False, ax=ax)
        ax.set_title(f"{detector} + {defense}\n{attack}", fontsize=9)
        ax.set_xlabel("evaluated on")
        ax.set_ylabel("trained on")
    fig.suptitle(f"Cross-dataset {metric.replace('_', ' ')} (%)", y=1.04)
    return fig


def transfer_matrix(frame: pd.DataFrame) -> plt.Figure:
    """Surrogate x target robust accuracy (%) under transfer attacks, one panel per (budget, data sets)."""
    data = frame[frame["surrogate"].notna()].copy()
    if data.empty:
        raise ConfigError("transfer_matrix needs records of the 'transfer' attack")
    data["budget"] = [eps_label(e, "linf") for e in data["eps"]]
    groups = list(data.groupby(["budget", "train_data", "eval_data"]))
    fig, axes = plt.subplots(
        1, len(groups), figsize=(1.6 + 1.5 * data["target"].nunique(), 1.2 + 0.6 * data["surrogate"].nunique()),
        squeeze=False,
    )
    for ax, ((budget, train_data, eval_data), part) in zip(axes[0], groups, strict=True):
        table = 100 * part.groupby(["surrogate", "target"])["robust_acc"].mean().unstack("target")
        sns.heatmap(table, annot=True, fmt=".1f", vmin=0, vmax=100, cmap="viridis", cbar=False, ax=ax)
        ax.set_title(f"eps {budget}, {train_data} -> {eval_data}", fontsize=9)
        ax.set_xlabel("target (attacked model)")
        ax.set_ylabel("surrogate (attack crafted on)")
        ax.tick_params(axis="x", labelrotation=30)
    fig.suptitle("Transfer attacks: robust accuracy of the target (%), mean over seeds", y=1.04)
    return fig


def afsl_ablation(frame: pd.DataFrame) -> plt.Figure:
    """Robust accuracy (%) of each AFSL variant per attack: bars are means over seeds, whiskers one sd."""
    data = frame[frame["defense_name"] == "afsl"].copy()
    if data["defense"].nunique() < 2:
        raise ConfigError("afsl_ablation needs records of two or more AFSL variants (e.g. use_asl = false)")
    data["robust accuracy (%)"] = 100 * data["robust_acc"]
    data["variant"] = data["defense"].str.removeprefix("afsl").str.strip().replace("", "full AFSL")
    grid = sns.catplot(
        data=data, x="variant", y="robust accuracy (%)", hue="attack", col="detector", row="eval_data",
        kind="bar", errorbar="sd", height=3.4, aspect=1.4, sharey=True,
    )
    grid.set_titles(row_template="eval {row_name}", col_template="{col_name}")
    grid.set_xticklabels(rotation=20)
    grid.figure.suptitle("AFSL ablation: robust accuracy per variant (mean ± sd over seeds)", y=1.03)
    return grid.figure


PLOTS = {
    "robust_vs_eps": robust_vs_eps,
    "clean_vs_robust": clean_vs_robust,
    "cross_dataset": cross_dataset,
    "transfer_matrix": transfer_matrix,
    "afsl_ablation": afsl_ablation,
}


def render_all(frame: pd.DataFrame, out_dir: Path) -> tuple[list[Path], dict[str, str]]:
    """Every plot the records allow: (files written, {plot: why it was skipped})."""
    written, skipped = [], {}
    for name, make in PLOTS.items():
        try:
            written += save(make(frame), out_dir, name)
        except ConfigError as why:
            skipped[name] = str(why)
    return written, skipped
