"""Content-addressed specs: a Component is a name plus its full, resolved parameters; a CellSpec crosses
detector x defense x attack x train set x eval set (+ training settings and seed).

``cell_id`` hashes the canonical JSON of the spec with the schema version and each component's ``version``
class attribute, so a change to a component's behaviour (bump its version) invalidates old records, while
batch size, device and worker counts (which must not change results) stay out of the id.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any

from afsl_bench.core.decision import DEFAULT_RULE, LEGACY_RULE, DecisionRule

SCHEMA_VERSION = 1


def to_jsonable(value: Any) -> Any:
    """Parameters -> plain JSON values (enums by value, tuples as lists, floats kept exact via repr)."""
    if isinstance(value, enum.Enum):
        return value.value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in sorted(value.items())}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    return value


def spec_identity(spec_json: dict[str, Any]) -> dict[str, Any]:
    """A stored spec's JSON as ids see it: each component without the parameters its ``location`` lists."""

    def strip(part: Any) -> Any:
        if not isinstance(part, dict) or "location" not in part:
            return part
        params = {k: v for k, v in part["params"].items() if k not in part["location"]}
        return {k: v for k, v in part.items() if k != "location"} | {"params": params}

    return {key: strip(value) for key, value in spec_json.items()}


def canonical_json(obj: Any) -> str:
    return json.dumps(to_jsonable(obj), sort_keys=True, separators=(",", ":"))


def content_hash(obj: Any, length: int = 16) -> str:
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()[:length]


@dataclass(frozen=True)
class Component:
    """A registered component by name with its complete parameters (defaults filled in); ``location`` names
    the parameters that say where its data lies (``core.registry.Location``): in the JSON, not in the ids."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)
    version: int = 1
    location: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        located = {"location": list(self.location)} if self.location else {}
        return {"name": self.name, "params": to_jsonable(self.params), "version": self.version, **located}

    def identity(self) -> dict[str, Any]:
        """What identifies the component in ids: its JSON without the location parameters."""
        kept = {k: v for k, v in self.params.items() if k not in self.location}
        return {"name": self.name, "params": to_jsonable(kept), "version": self.version}

    def label(self) -> str:
        return self.name


@dataclass(frozen=True)
class TrainSpec:
    """Everything that determines a trained checkpoint; its hash keys the checkpoint cache."""

    detector: Component
    defense: Component
    train_data: Component
    train: Component
    seed: int

    def to_json(self) -> dict[str, Any]:
        return {
            "detector": self.detector.to_json(),
            "defense": self.defense.to_json(),
            "train_data": self.train_data.to_json(),
            "train": self.train.to_json(),
            "seed": self.seed,
            "schema_version": SCHEMA_VERSION,
        }

    def identity(self) -> dict[str, Any]:
        """``to_json`` without the data's locations: what ``train_id`` hashes."""
        parts = ("detector", "defense", "train_data", "train")
        return self.to_json() | {part: getattr(self, part).identity() for part in parts}

    @property
    def train_id(self) -> str:
        return content_hash(self.identity())


#: ``--set eval.samples=N``: evaluate on a fixed subset of N test images (RobustBench's ``n_examples``)
SAMPLES = "samples"
#: ``--set eval.threshold=margin|eer``: the decision rule (``core.decision``)
THRESHOLD = "threshold"


@dataclass(frozen=True)
class EvalSettings:
    """How a cell is evaluated, apart from the data set's own parameters: the decision rule and, optionally, a
    fixed subset of ``samples`` test images.

    Written into the evaluation data's params of the spec's JSON (``threshold``, ``samples``), where the
    records written before this type existed keep them, so cell ids are unchanged."""

    threshold: DecisionRule = DEFAULT_RULE
    samples: int | None = None

    def to_params(self) -> dict[str, Any]:
        return {THRESHOLD: self.threshold.value} | (
            {SAMPLES: self.samples} if self.samples is not None else {}
        )

    @classmethod
    def split(cls, params: dict[str, Any]) -> tuple[EvalSettings, dict[str, Any]]:
        """A stored evaluation component's params -> (the settings, the data set's own params); a spec
        without a rule is from before the rule entered every spec (``LEGACY_RULE``)."""
        rule = DecisionRule(params.get(THRESHOLD, LEGACY_RULE))
        data = {k: v for k, v in params.items() if k not in (THRESHOLD, SAMPLES)}
        return cls(rule, params.get(SAMPLES)), data


@dataclass(frozen=True)
class CellSpec:
    """One cell of the benchmark grid: a trained model (TrainSpec) under one attack on one evaluation data set,
    evaluated with ``evaluation``'s rule and sample count."""

    training: TrainSpec
    attack: Component
    eval_data: Component
    evaluation: EvalSettings = EvalSettings()

    def __post_init__(self) -> None:
        if THRESHOLD in self.eval_data.params or SAMPLES in self.eval_data.params:
            raise ValueError(
                "eval_data holds the data set's own parameters: pass threshold / samples as evaluation"
            )

    def to_json(self) -> dict[str, Any]:
        eval_json = self.eval_data.to_json()
        eval_json["params"] = to_jsonable(self.eval_data.params | self.evaluation.to_params())
        return {**self.training.to_json(), "attack": self.attack.to_json(), "eval_data": eval_json}

    def eval_identity(self) -> dict[str, Any]:
        """The evaluation data and settings as ids see them: without the data's location."""
        identity = self.eval_data.identity()
        identity["params"] = to_jsonable({k: v for k, v in self.eval_data.params.items()
                                          if k not in self.eval_data.location} | self.evaluation.to_params())  # fmt: skip
        return identity

    def identity(self) -> dict[str, Any]:
        """``to_json`` without the data's locations: what ``cell_id`` hashes (for data without a location
        parameter it is ``to_json`` itself, so those ids never changed)."""
        return {
            **self.training.identity(),
            "attack": self.attack.to_json(),
            "eval_data": self.eval_identity(),
        }

    @property
    def cell_id(self) -> str:
        return content_hash(self.identity())
