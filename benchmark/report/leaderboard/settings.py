"""The leaderboard's settings paragraph: data, training, selection, attacks and compute, said from the records."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from afsl_bench.core.decision import DecisionRule
from afsl_bench.data.synthetic import NOTES
from afsl_bench.runner.describe import eps_label
from afsl_bench.store.record import Record

OPTIMIZERS = {"adam": "AdamW", "sgd": "SGD (momentum 0.9, Nesterov)"}


def _decision_rules(records: list[Record]) -> str:
    """How the records decided "fake" (docs/records.md): the model's own margin or the EER threshold."""
    said = {
        DecisionRule.MARGIN.value: "the models' own decision rule (logit margin > 0)",
        DecisionRule.EER.value: "the clean-validation EER threshold (`eval.threshold=eer`)",
    }
    rules = sorted({r.rule.value for r in records})
    return "decided at " + " or ".join(said[r] for r in rules)


def settings(records: list[Record], frame: pd.DataFrame, suite_path: Path | str) -> str:
    first = records[0]
    train = first.spec["train"]["params"]
    models = {r.train_id for r in records}
    seeds = sorted(frame["seed"].unique())
    compute_s = sum(r.timings["total_s"] for r in records)
    # per model the longest training time any of its records noted: independent of the records' order
    trained: dict[str, float] = {}
    for r in records:
        trained[r.train_id] = max(trained.get(r.train_id, 0.0), r.extra.get("training_s") or 0.0)
    train_s = sum(trained.values())
    devices = sorted({f"{r.env['device']} ({r.env['device_name'] or 'unknown'})" for r in records})
    shas = sorted({(r.env["git_sha"] or "unknown")[:10] for r in records})
    created = sorted(r.created for r in records)
    data = sorted(set(frame["train_data"]) | set(frame["eval_data"]))
    synthetic = all(d in NOTES for d in data)
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
            + "; ".join(f"`{d}`: {NOTES.get(d, 'see afsl-bench list datasets')}" for d in data)
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


def _training_attacks(records: list[Record]) -> str:
    """'; at / afsl / trades train against PGD-10 (step 2/255) at L-inf 8/255', from the defenses' parameters
    in the records (one clause per distinct setting)."""
    by_setting: dict[str, set[str]] = {}
    for record in records:
        defense = record.spec["defense"]
        params = defense["params"]
        if "steps" in params:
            step = eps_label(params.get("step_size"), "linf") or str(params.get("step_size"))
            setting = f"PGD-{params['steps']} (step {step}) at L-inf {eps_label(params['eps'], 'linf')}"
            by_setting.setdefault(setting, set()).add(defense["name"])
    return "".join(f"; {' / '.join(sorted(names))} train against {s}" for s, names in by_setting.items())


def _test_set(record: Record) -> str:
    if record.extra.get("test_of"):
        return (
            f"Each cell attacks the same fixed subset of {record.n_samples} of the {record.extra['test_of']} "
            "test images (`eval.samples`)."
        )
    return f"Test split: {record.n_samples} images."
