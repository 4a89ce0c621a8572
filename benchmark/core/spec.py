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


def canonical_json(obj: Any) -> str:
    return json.dumps(to_jsonable(obj), sort_keys=True, separators=(",", ":"))


def content_hash(obj: Any, length: int = 16) -> str:
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()[:length]


@dataclass(frozen=True)
class Component:
    """A registered component by name with its complete parameters (defaults filled in)."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)
    version: int = 1

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "params": to_jsonable(self.params), "version": self.version}

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

    @property
    def train_id(self) -> str:
        return content_hash(self.to_json())


@dataclass(frozen=True)
class CellSpec:
    """One cell of the benchmark grid: a trained model (TrainSpec) under one attack on one eval set."""

    training: TrainSpec
    attack: Component
    eval_data: Component

    def to_json(self) -> dict[str, Any]:
        return {
            **self.training.to_json(),
            "attack": self.attack.to_json(),
            "eval_data": self.eval_data.to_json(),
        }

    @property
    def cell_id(self) -> str:
        return content_hash(self.to_json())
