"""Plots from the record store (seaborn / matplotlib), each written as PNG and SVG.

- ``robust_vs_eps``: robust accuracy against the budget (k/255), one line per defense, one panel per
  attack, mean over seeds with the spread as a band (Madry et al.'s and RobustBench's standard view);
- ``clean_vs_robust``: the trade-off, one point per (detector, defense, attack) cell, mean over seeds;
- ``cross_dataset``: train set x eval set heatmap of a metric, one per (detector, defense, attack);
- ``transfer_matrix``: surrogate x target heatmap of robust accuracy under transfer attacks;
- ``afsl_ablation``: bars of robust accuracy per AFSL variant (a loss term switched off), mean ± sd over
  seeds, one bar per attack.

Nothing is re-run: every number comes from the records (``afsl_bench.report.tables.tidy``).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from afsl_bench.core.errors import ConfigError
from afsl_bench.core.io import atomic_write
from afsl_bench.report.tables import with_settings
from afsl_bench.runner.describe import eps_label

#: no creation date and a fixed id salt, so the same records draw byte-identical files (committed plots
#: change only when their data does)
METADATA = {"png": {}, "svg": {"Date": None}}
#: accuracy axes span 0-100 % whatever the data: one point or a narrow spread is never blown up to fill them
PERCENT = (-3.0, 103.0)


def save(fig: plt.Figure, out_dir: Path, name: str) -> list[Path]:
    """``name``.png and ``name``.svg, each written atomically and deterministically."""
    paths = [out_dir / f"{name}.png", out_dir / f"{name}.svg"]
    with matplotlib.rc_context({"svg.hashsalt": "afsl-bench"}):
        for path in paths:
            kind = path.suffix[1:]
            atomic_write(path, lambda tmp, kind=kind: fig.savefig(
                tmp, format=kind, bbox_inches="tight", dpi=150, metadata=METADATA[kind]))  # fmt: skip
    plt.close(fig)
    return paths


def _with_panel(frame: pd.DataFrame) -> pd.DataFrame:
    """A 'panel' column: the detector and the data sets, so that no plot averages over evaluation sets."""
    return frame.assign(panel=frame["detector"] + ", " + frame["train_data"] + " -> " + frame["eval_data"])


def top_attack(frame: pd.DataFrame) -> str:
    """The attack evaluated on the most models, for one-attack summaries; ties go to a bounded attack (a
    minimum-norm attack's accuracy says little without its perturbation size), then to the first label."""
    coverage = frame.groupby("attack").agg(
        models=("target", "nunique"), unbounded=("eps", lambda e: e.isna().all())
    )
    ranked = coverage.reset_index().sort_values(
        ["models", "unbounded", "attack"], ascending=[False, True, True]
    )
    return ranked["attack"].iloc[0]


def robust_vs_eps(frame: pd.DataFrame) -> plt.Figure:
    """Robust accuracy (%) vs L-inf eps (k/255); lines per defense, a panel per attack and per detector and
    data sets (only the ones swept over two or more budgets)."""
    data = _with_panel(frame[(frame["norm"] == "linf") & frame["eps"].notna()])
    budgets = data.groupby(["panel", "attack_name"])["eps"].transform("nunique")
    data = data[budgets > 1].copy()  # the others are single points
    if data.empty:
        raise ConfigError("robust_vs_eps needs records at two or more L-inf budgets (sweep an eps list)")
    data["eps (k/255)"] = data["eps"] * 255
    data["robust accuracy (%)"] = 100 * data["robust_acc"]
    grid = sns.relplot(
        data=data, x="eps (k/255)", y="robust accuracy (%)", hue="defense", col="attack_name", row="panel",
        hue_order=sorted(data["defense"].unique()), col_order=sorted(data["attack_name"].unique()),
        row_order=sorted(data["panel"].unique()), kind="line", marker="o", errorbar="sd", facet_kws={"sharey": True}, height=3.2, aspect=1.1,
    )  # fmt: skip
    grid.set(ylim=PERCENT)
    grid.set_titles(row_template="{row_name}", col_template="{col_name}")
    grid.figure.suptitle("Robust accuracy vs budget (mean ± sd over seeds)", y=1.03)
    return grid.figure


def clean_vs_robust(frame: pd.DataFrame, attack: str | None = None) -> plt.Figure:
    """The accuracy trade-off: clean vs robust accuracy (%) under one attack (default: the one evaluated on
    the most models), one point per detector + defense (mean over seeds), a panel per data-set pair."""
    chosen = attack or top_attack(frame)
    data = _with_panel(frame[frame["attack"] == chosen]).assign(
        data=lambda f: f["train_data"] + " -> " + f["eval_data"]
    )
    means = data.groupby(["data", "detector", "defense"], as_index=False)[["clean_acc", "robust_acc"]].mean()
    means[["clean accuracy (%)", "robust accuracy (%)"]] = 100 * means[["clean_acc", "robust_acc"]]
    grid = sns.relplot(
        data=means, x="clean accuracy (%)", y="robust accuracy (%)", hue="defense", style="detector",
        col="data", hue_order=sorted(means["defense"].unique()), style_order=sorted(means["detector"].unique()),
        col_order=sorted(means["data"].unique()), kind="scatter", s=80, height=4, aspect=1.1,
    )  # fmt: skip
    grid.set(xlim=PERCENT, ylim=PERCENT)
    grid.set_titles(col_template="{col_name}")
    how = "chosen with --attack" if attack else "the attack run on the most models; --attack picks another"
    alone = "\none model: a sweep over defenses or detectors draws the trade-off" if len(means) == 1 else ""
    title = f"Clean vs robust accuracy under {chosen}\n({how}; mean over seeds){alone}"
    grid.figure.suptitle(title, y=1.04 + 0.07 * title.count("\n"))
    return grid.figure


def cross_dataset(frame: pd.DataFrame, metric: str = "robust_acc", max_attacks: int = 3) -> plt.Figure:
    """Model x evaluation set heatmaps (%): clean accuracy, then the metric under the attacks evaluated on
    the most models (at most ``max_attacks``). A model is detector + defense, with its training set when
    the records hold several (then the rows and columns are the train x eval matrix)."""
    several = frame["train_data"].nunique() > 1
    data = frame.assign(
        model=frame["detector"]
        + " + "
        + frame["defense"]
        + ((" <- " + frame["train_data"]) if several else "")
    )
    spans = data.groupby("attack")["eval_data"].nunique()
    data = data[data["attack"].isin(spans[spans > 1].index)]
    if data.empty:
        raise ConfigError(
            "cross_dataset needs records evaluated on more than one data set (sweep an eval list)"
        )
    coverage = (
        data.groupby("attack")["model"]
        .nunique()
        .reset_index()
        .sort_values(["model", "attack"], ascending=[False, True])
    )
    attacks = list(coverage["attack"][:max_attacks])
    clean = data.drop_duplicates(["model", "eval_data", "seed"])
    panels = [("clean accuracy", clean, "clean_acc")]
    panels += [(f"{metric.replace('_', ' ')}: {a}", data[data["attack"] == a], metric) for a in attacks]
    rows = data["model"].nunique()
    fig, axes = plt.subplots(
        1, len(panels), figsize=(2.2 + 2.4 * len(panels), 1.2 + 0.45 * rows), squeeze=False
    )
    for ax, (title, part, column) in zip(axes[0], panels, strict=True):
        table = 100 * part.groupby(["model", "eval_data"])[column].mean().unstack("eval_data")
        sns.heatmap(table, annot=True, fmt=".1f", vmin=0, vmax=100, cmap="viridis", cbar=False, ax=ax)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("evaluated on")
        ax.set_ylabel("model" + (" <- trained on" if several else ""))
    for ax in axes[0][1:]:
        ax.set_yticklabels([])
        ax.set_ylabel("")
    fig.suptitle("Cross-dataset accuracy (%), mean over seeds", y=1.02)
    return fig


def transfer_matrix(frame: pd.DataFrame) -> plt.Figure:
    """Surrogate x target robust accuracy (%) under transfer attacks, one panel per (budget, data sets)."""
    data = frame[frame["surrogate"].notna()].copy()
    if data.empty:
        raise ConfigError("transfer_matrix needs records of the 'transfer' attack")
    data["budget"] = [eps_label(e, "linf") for e in data["eps"]]
    groups = list(data.groupby(["budget", "train_data", "eval_data"]))
    fig, axes = plt.subplots(
        1,
        len(groups),
        figsize=(1.6 + 1.5 * data["target"].nunique(), 1.2 + 0.6 * data["surrogate"].nunique()),
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
    """Robust accuracy (%) of each AFSL variant per attack: bars are means over seeds, whiskers one sd. Only
    the attacks run on two or more variants of a panel (an ablation compares variants), in a fixed order."""
    data = frame[frame["defense_name"] == "afsl"].copy()
    if data["defense"].nunique() < 2:
        raise ConfigError("afsl_ablation needs records of two or more AFSL variants (e.g. use_asl = false)")
    data["robust accuracy (%)"] = 100 * data["robust_acc"]
    data["variant"] = data["defense"].str.removeprefix("afsl").str.strip().replace("", "full AFSL")
    shared = data.groupby(["detector", "eval_data", "attack"])["variant"].transform("nunique") > 1
    data = data[shared]
    if data.empty:
        raise ConfigError("afsl_ablation needs an attack run on two or more AFSL variants of one model")
    grid = sns.catplot(
        data=data,
        x="variant",
        y="robust accuracy (%)",
        hue="attack",
        col="detector",
        row="eval_data",
        kind="bar",
        errorbar="sd",
        order=sorted(data["variant"].unique(), key=lambda v: (v != "full AFSL", v)),
        hue_order=sorted(data["attack"].unique()),
        col_order=sorted(data["detector"].unique()),
        row_order=sorted(data["eval_data"].unique()),
        height=3.4,
        aspect=1.4,
        sharey=True,
    )
    grid.set(ylim=(0, 103))
    grid.set_titles(row_template="eval {row_name}", col_template="{col_name}")
    for ax in grid.axes.flat:
        ax.tick_params(axis="x", labelrotation=20, labelbottom=True)
    grid.figure.suptitle("AFSL ablation: robust accuracy per variant (mean ± sd over seeds)", y=1.03)
    return grid.figure


PLOTS = {
    "robust_vs_eps": robust_vs_eps,
    "clean_vs_robust": clean_vs_robust,
    "cross_dataset": cross_dataset,
    "transfer_matrix": transfer_matrix,
    "afsl_ablation": afsl_ablation,
}


def render_all(
    frame: pd.DataFrame, out_dir: Path, attack: str | None = None
) -> tuple[list[Path], dict[str, str]]:
    """Every plot the records allow: (files written, {plot: why it was skipped}); ``attack``: the attack
    label of the one-attack plots (default: the one run on the most models)."""
    written, skipped = [], {}
    frame = with_settings(frame, "defense")
    for name, make in PLOTS.items():
        try:
            figure = make(frame, attack) if name == "clean_vs_robust" else make(frame)
            written += save(figure, out_dir, name)
        except ConfigError as why:
            skipped[name] = str(why)
    return written, skipped
