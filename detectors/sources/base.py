"""What a source of published checkpoints is: one ``Layout`` per registered detector it has weights for.

A layout maps the source's tensor names onto the detector's (``Rename`` rules, the first full match wins;
one file tensor may fill several model tensors, as when the source shares one batch norm between two
layers), sets the input normalisation the source trained with (the detector's ``mean`` / ``std``
buffers), zeroes the model tensors the source's network lacks (a convolution without bias is one with a
zero bias) and names the detector parameters the source's network needs (``requires``). Loading is
strict: a file tensor that no rule maps, a model tensor the file leaves unset, or a shape that differs is a
ConfigError listing every such key, so a checkpoint never half-loads.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from afsl_bench.core.errors import ConfigError

#: model tensors no source sets: the decision threshold (calibrated by afsl-bench, 0 = the argmax rule)
#: and batch norm's step counters (absent from older checkpoints; they never change a forward pass)
OWN = re.compile(r"threshold|.*num_batches_tracked")


@dataclass(frozen=True)
class Rename:
    """File keys that fully match ``pattern`` go to each of ``targets`` (``re.sub`` templates: ``\\1``)."""

    pattern: str
    targets: tuple[str, ...]

    def __call__(self, key: str) -> tuple[str, ...] | None:
        match = re.fullmatch(self.pattern, key)
        return tuple(match.expand(t) for t in self.targets) if match else None


def rename(pattern: str, *targets: str) -> Rename:
    return Rename(pattern, targets)


@dataclass(frozen=True)
class Layout:
    """How one source's checkpoint of one network loads into one registered detector."""

    #: the registered detector (``--detector``) and the source's name for the network (errors, docs)
    detector: str
    network: str
    renames: tuple[Rename, ...]
    #: the input normalisation and resolution the source trained with
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    input_size: int
    #: full-match patterns: file keys the source's forward never reads (e.g. unused side branches)
    ignored: tuple[str, ...] = ()
    #: full-match patterns: model tensors the source's network does not have and that are zero there
    zeroed: tuple[str, ...] = ()
    #: detector parameters the source's network needs, with the value it needs and why
    requires: Mapping[str, tuple[Any, str]] = field(default_factory=dict)

    def targets(self, key: str) -> tuple[str, ...] | None:
        """The model tensors a file key fills: () for an ignored key, None when no rule knows it."""
        if any(re.fullmatch(p, key) for p in self.ignored):
            return ()
        return next((t for rule in self.renames if (t := rule(key)) is not None), None)

    def check(self, source: str, params: Mapping[str, Any]) -> None:
        """A ConfigError naming the fix when a detector parameter differs from what the source needs."""
        for name, (value, why) in self.requires.items():
            if name in params and params[name] != value:
                shown = getattr(value, "value", value)
                raise ConfigError(
                    f"{source}'s {self.network} needs detector.{name}={str(shown).lower()} ({why}); "
                    f"got {getattr(params[name], 'value', params[name])}: --set detector.{name}={str(shown).lower()}"
                )

    def convert(self, state: Mapping[str, torch.Tensor], own: Mapping[str, torch.Tensor], where: str):
        """The file's tensors under the model's names, plus the normalisation and the zeroed tensors;
        a ConfigError lists every unmapped file key, unset model tensor and differing shape."""
        mapped: dict[str, torch.Tensor] = {}
        unmapped = []
        for key, value in state.items():
            targets = self.targets(key)
            if targets is None:
                unmapped.append(key)
            for target in targets or ():
                mapped[target] = value
        mapped["mean"] = torch.tensor(self.mean).view(1, 3, 1, 1)
        mapped["std"] = torch.tensor(self.std).view(1, 3, 1, 1)
        for key in own:
            if any(re.fullmatch(p, key) for p in self.zeroed):
                mapped[key] = torch.zeros_like(own[key])
        unknown = [k for k in mapped if k not in own]
        unset = [k for k in own if k not in mapped and not OWN.fullmatch(k)]
        shapes = [
            f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}"
            for k, v in mapped.items()
            if k in own and v.shape != own[k].shape
        ]
        problems = [
            (f"file tensors no rule of the {self.network} layout maps", unmapped),
            ("mapped to names the model lacks", unknown),
            ("model tensors the file does not set", unset),
            ("shapes that differ (file vs model)", shapes),
        ]
        if any(keys for _, keys in problems):
            listed = "; ".join(f"{what}: {', '.join(keys)}" for what, keys in problems if keys)
            raise ConfigError(
                f"detector weights {where} do not fit {self.detector} as a {self.network} checkpoint: {listed}"
            )
        return mapped


@dataclass(frozen=True)
class Source:
    """A code base whose released checkpoints load by name: ``--set detector.weights=NAME:PATH``."""

    name: str
    #: the project, its paper and where its model code is (docs, ``afsl-bench list``)
    citation: str
    layouts: tuple[Layout, ...]
    #: package names of the source's own classes when it ships pickled whole models (FaceForensics++'s
    #: ``network.``): ``afsl-bench convert-weights`` turns those into state dicts (sources/pickled.py)
    pickled_namespaces: tuple[str, ...] = ()
    #: how the source's files are read, when they are not torch files (MesoNet's Keras HDF5): path -> tensors
    reader: Callable[[Path], dict[str, Any]] | None = None
    #: the source's files that ship with afsl-bench, by the short name ``SOURCE:NAME`` takes
    builtin: Mapping[str, Path] = field(default_factory=dict)

    def resolve(self, path: Path) -> Path:
        """``SOURCE:NAME`` of a built-in file -> that file; any other text is a path."""
        return self.builtin.get(str(path), path)

    def layout(self, detector: str) -> Layout:
        for layout in self.layouts:
            if layout.detector == detector:
                return layout
        have = ", ".join(layout.detector for layout in self.layouts)
        raise ConfigError(
            f"weights source '{self.name}' has no layout for detector '{detector}'; it has: {have} "
            f"(a plain state dict of {detector} loads without a source prefix: --set detector.weights=PATH)"
        )


SOURCES: dict[str, Source] = {}


def register_source(source: Source) -> Source:
    if source.name in SOURCES:
        raise ValueError(f"weights source '{source.name}' is already registered")
    SOURCES[source.name] = source
    return source
