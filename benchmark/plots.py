"""Plots from the record store (seaborn / matplotlib), each written as PNG and SVG.

- ``robust_vs_eps``: robust accuracy against the budget (k/255), one line per defense, one panel per
  attack, mean over seeds with the spread as a band (Madry et al.'s and RobustBench's standard view);
- ``clean_vs_robust``: the trade-off, one point per (detector, defense, attack) cell, mean over seeds;
- ``cross_dataset``: train set x eval set heatmap of a metric, one per (detector, defense, attack).

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


PLOTS = {"robust_vs_eps": robust_vs_eps, "clean_vs_robust": clean_vs_robust, "cross_dataset": cross_dataset}


def render_all(frame: pd.DataFrame, out_dir: Path) -> tuple[list[Path], dict[str, str]]:
    """Every plot the records allow: (files written, {plot: why it was skipped})."""
    written, skipped = [], {}
    for name, make in PLOTS.items():
        try:
            written += save(make(frame), out_dir, name)
        except ConfigError as why:
            skipped[name] = str(why)
    return written, skipped
