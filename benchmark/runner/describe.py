"""How a cell is named for people: the labels of its dimensions (each with the parameters that differ from
the registered defaults), one line describing a spec, and one record as a flat row of labels and metrics.

The sweep's progress, the CLI and every report label cells through here, so a label means the same thing
everywhere.
"""

from __future__ import annotations

import json
from fractions import Fraction
from typing import Any

from afsl_bench.core.decision import DEFAULT_RULE
from afsl_bench.core.spec import EvalSettings, to_jsonable
from afsl_bench.store.record import Record


def eps_label(eps: Any, norm: str) -> str:
    """8/255 for L-inf budgets that are multiples of 1/255 (the field's convention), else the number."""
    if not isinstance(eps, float):
        return ""
    if norm == "linf":
        k = Fraction(eps * 255).limit_denominator(8)
        if abs(float(k) - eps * 255) < 1e-6:
            return f"{float(k):g}/255"
    return f"{eps:.3g}"


#: parameters a label never shows: the budget has its own notation. A detector's head is shown when it is not
#: the default (linear): any defense trains any head, so "tiny-cnn (head=cosine)" is another model
HIDDEN = {"attack": {"eps", "norm", "severity"}, "detector": set()}


def changed(registry: Any, component: dict[str, Any], hidden: set[str] = frozenset()) -> str:
    """' (k=v, ...)' for the parameters that differ from the registered defaults, else ''."""
    if component["name"] not in registry:
        return ""
    defaults = registry.params_of(component["name"])
    diff = [
        f"{k}={_show(v)}"
        for k, v in sorted(component["params"].items())
        if k not in hidden and k in defaults and to_jsonable(defaults[k].default) != v
    ]
    return f" ({', '.join(diff)})" if diff else ""


def _show(value: Any) -> str:
    return ",".join(map(str, value)) if isinstance(value, list) else str(value)


def attack_label(spec: dict[str, Any]) -> str:
    from afsl_bench.attacks import ATTACKS

    params = spec["attack"]["params"]
    name = spec["attack"]["name"]
    budget = eps_label(params.get("eps"), str(params.get("norm", "linf")))
    if budget and params.get("norm", "linf") != "linf":
        budget += f" {params['norm']}"
    if not budget and "severity" in params:
        budget = f"s{params['severity']}"
    extra = changed(ATTACKS, spec["attack"], HIDDEN["attack"])
    return f"{name} {budget}{extra}".strip() if budget else f"{name}{extra}"


def labels(spec: dict[str, Any]) -> dict[str, str]:
    """The table dimensions of one record, each with the parameters that differ from the defaults."""
    from afsl_bench.data import DATASETS
    from afsl_bench.defenses import DEFENSES
    from afsl_bench.detectors import DETECTORS

    return {
        "detector": spec["detector"]["name"] + changed(DETECTORS, spec["detector"], HIDDEN["detector"]),
        "defense": spec["defense"]["name"] + changed(DEFENSES, spec["defense"]),
        "attack": attack_label(spec),
        "train_data": spec["train_data"]["name"] + changed(DATASETS, spec["train_data"]),
        "eval_data": spec["eval_data"]["name"] + changed(DATASETS, spec["eval_data"]) + _rule(spec),
    }


def describe_spec(spec: dict[str, Any]) -> str:
    """'tiny-cnn + at (train: epochs=4) vs pgd 8/255, synthetic -> synthetic, seed 0': a cell on one line."""
    shown = labels(spec)
    return (
        f"{shown['detector']} + {shown['defense']}{train_label(spec)} vs {shown['attack']}, "
        f"{shown['train_data']} -> {shown['eval_data']}, seed {spec['seed']}"
    )


def model_label(training: dict[str, Any]) -> str:
    """'tiny-cnn + at (train: epochs=4), synthetic, seed 0': a trained model (a ``TrainSpec``'s JSON) on one line."""
    from afsl_bench.data import DATASETS
    from afsl_bench.defenses import DEFENSES
    from afsl_bench.detectors import DETECTORS

    detector = training["detector"]["name"] + changed(DETECTORS, training["detector"], HIDDEN["detector"])
    defense = training["defense"]["name"] + changed(DEFENSES, training["defense"])
    data = training["train_data"]["name"] + changed(DATASETS, training["train_data"])
    return f"{detector} + {defense}{train_label(training)}, {data}, seed {training['seed']}"


def train_label(spec: dict[str, Any]) -> str:
    """' (train: epochs=4, lr=0.001)' for training settings that differ from the defaults, else ''."""
    import dataclasses

    from afsl_bench.defenses.training import TrainSettings

    defaults = {f.name: to_jsonable(f.default) for f in dataclasses.fields(TrainSettings)}
    params = spec.get("train", {}).get("params", {})
    diff = [f"{k}={_show(v)}" for k, v in sorted(params.items()) if k in defaults and defaults[k] != v]
    return f" (train: {', '.join(diff)})" if diff else ""


def settings_label(spec: dict[str, Any]) -> str:
    """'train: epochs=2; eval.samples=100': what a table's dimensions do not show (the non-default training
    settings and a test subset), so ``afsl-bench table`` can tell records of other settings apart."""
    train = train_label(spec).strip()[1:-1]  # ' (train: epochs=2)' -> 'train: epochs=2'
    samples = EvalSettings.split(spec["eval_data"]["params"])[0].samples
    return "; ".join(part for part in (train, f"eval.samples={samples}" if samples else "") if part)


def _rule(spec: dict[str, Any]) -> str:
    """' (threshold=eer)' for a cell evaluated at another decision rule than the default (margin)."""
    rule = EvalSettings.split(spec["eval_data"]["params"])[0].threshold
    return "" if rule is DEFAULT_RULE else f" (threshold={rule.value})"


def surrogate_label(spec: dict[str, Any]) -> str | None:
    """'detector + defense' of a transfer attack's surrogate (with its data set and seed when they differ from
    the target's), else None."""
    params = spec["attack"]["params"]
    if "surrogate_detector" not in params:
        return None
    label = f"{params['surrogate_detector']} + {params['surrogate_defense']}"
    if params.get("surrogate_data"):
        label += f" on {params['surrogate_data']}"
    if params.get("surrogate_seed") is not None:
        label += f" seed {params['surrogate_seed']}"
    return label


def row(record: Record) -> dict[str, Any]:
    """One finished record as a flat row: its labelled dimensions, every metric, and the cell id."""
    spec = record.spec
    params = spec["attack"]["params"]
    shown = labels(spec)
    return {
        **shown,
        "surrogate": surrogate_label(spec),
        "target": f"{shown['detector']} + {shown['defense']}",
        "detector_name": spec["detector"]["name"],
        "defense_name": spec["defense"]["name"],
        "defense_params": json.dumps(spec["defense"]["params"], sort_keys=True),
        "attack_name": spec["attack"]["name"],
        "eps": params.get("eps") if isinstance(params.get("eps"), float) else None,
        "norm": params.get("norm"),
        "seed": spec["seed"],
        "train": json.dumps(spec["train"]["params"], sort_keys=True),
        "settings": settings_label(spec),
        **(record.metrics or {}),
        "cell_id": record.cell_id,
        "not_learned": not record.learned,
    }
