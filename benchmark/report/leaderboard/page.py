"""The leaderboard page: the generated block between the markers of ``leaderboard.md``, rendered from the
sections (settings, ranking, paper reproduction, one table per attack family, ablation, transfer, cross-data
set, flags, plots).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from afsl_bench.core.errors import ConfigError
from afsl_bench.report.leaderboard.certified import certified_section
from afsl_bench.report.leaderboard.reproduction import paper_reproduction
from afsl_bench.report.leaderboard.sections import (
    ablated,
    ablation,
    cross_dataset,
    deployment,
    flags,
    perceptual_budget,
    ranking,
    section,
    transfer,
)
from afsl_bench.report.leaderboard.settings import settings
from afsl_bench.report.tables import tidy
from afsl_bench.store.record import Record

BEGIN = "<!-- BEGIN GENERATED: afsl-bench leaderboard -->"


END = "<!-- END GENERATED: afsl-bench leaderboard -->"


def replace_block(text: str, block: str) -> str:
    """``text`` with the part between the markers replaced by ``block``; the rest is kept byte for byte."""
    if text.count(BEGIN) != 1 or text.count(END) != 1 or text.index(BEGIN) > text.index(END):
        raise ConfigError(f"leaderboard file needs exactly one pair of markers:\n{BEGIN}\n{END}")
    head, rest = text.split(BEGIN)
    _, tail = rest.split(END)
    return f"{head}{BEGIN}\n{block.strip()}\n{END}{tail}"


def current_block(text: str) -> str:
    return text.split(BEGIN)[1].split(END)[0].strip()


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
    records: list[Record],
    suite_path: Path | str,
    plots: dict[str, str],
    banner: str = "",
    certified: list[dict[str, Any]] | None = None,
) -> str:
    """The markdown block: settings, the ranking, deployment, the paper reproduction, one table per attack
    family, the certified accuracies (``certified``: the suite's certifications), the AFSL ablation, the
    transfer matrix, cross-dataset clean accuracy, flags and plots, after ``banner``
    (``incomplete``'s, when cells are missing). The main tables hold every record but AFSL's ablation
    variants (a term switched off), which have their own table."""
    if not records:
        return (
            "_No records yet: run `afsl-bench sweep suites/leaderboard.toml`, then `afsl-bench leaderboard`._"
        )
    frame = tidy(records)
    frame["family"] = frame["attack_name"].map(family)
    main = frame[~ablated(frame)]
    parts = [
        banner,
        settings(records, frame, suite_path),
        ranking(main),
        deployment(main),
        paper_reproduction(frame),
    ]
    for name, title in FAMILIES.items():
        part = main[(main["family"] == name) & main["surrogate"].isna()]
        if name == "black-box":  # the default transfer cell (resnet surrogate) is a black-box column
            part = main[
                (main["family"] == name) & (main["attack_name"].ne("transfer") | is_default_transfer(main))
            ]
        if len(part):
            parts.append(section(f"### {title}", part, "robust_acc"))
    parts.append(certified_section(certified or [], records))
    parts += [perceptual_budget(records, main), ablation(frame), transfer(frame), cross_dataset(main)]
    parts += [flags(records), figures(plots)]
    return "\n\n".join(p for p in parts if p)


def is_default_transfer(frame: pd.DataFrame) -> pd.Series:
    return frame["attack"].str.match(r"^transfer [^(]*$")


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
