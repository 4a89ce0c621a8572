"""Detector weights: a local state_dict file, or timm / torchvision pretrained weights when online.

A local file (``--set detector.weights=path``) is read with ``torch.load(..., weights_only=True)``, so it
is never unpickled as code. It may hold a whole detector's ``state_dict`` (for example a model trained by
afsl-bench, whose files wrap it as ``{"state_dict": ..., "meta": ...}``) or only its backbone's (timm's or
torchvision's ImageNet / Kinetics weights downloaded elsewhere; a ``module.`` prefix from DataParallel is
dropped). Tensors are matched by name; every key that did not match is reported in one warning, a shape
mismatch or a file with no matching key is a ConfigError. Pretrained downloads go through timm (Hugging
Face Hub) or torchvision (``torch.hub``); offline, the network error becomes a ConfigError saying what to do.
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import torch
from torch import nn

from afsl_bench.core.errors import ConfigError

log = logging.getLogger(__name__)

M = TypeVar("M", bound=nn.Module)

WEIGHTS_HINT = "--set detector.weights=/path/to/file.pt"
#: checkpoint layouts that wrap the state_dict (afsl-bench and timm's train script use "state_dict")
WRAPPER_KEYS = ("state_dict", "model")
#: keys whose absence from a file is no news: constants of the architecture and BN's step counters
UNREPORTED = ("mean", "std")


@dataclass(frozen=True)
class WeightsMatch:
    """Which model tensors a file set (``loaded``), which it left as built, which file tensors were unused."""

    loaded: tuple[str, ...]
    missing: tuple[str, ...]
    unexpected: tuple[str, ...]


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a local weights file, read with ``weights_only=True``; bad files are ConfigErrors."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise ConfigError(f"detector weights file not found: {file} (give an existing file: {WEIGHTS_HINT})")
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as err:
        raise ConfigError(
            f"cannot read detector weights {file} with torch.load(weights_only=True) "
            f"({first_line(err)}); save a state_dict: torch.save(model.state_dict(), path)"
        ) from None
    return unwrap(state, file)


def unwrap(state: object, file: Path) -> dict[str, torch.Tensor]:
    for key in WRAPPER_KEYS:
        if isinstance(state, Mapping) and isinstance(state.get(key), Mapping):
            state = state[key]
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConfigError(f"detector weights {file} hold no state_dict (a mapping from names to tensors)")
    return {str(k).removeprefix("module."): v for k, v in state.items()}


def model_key(key: str, own: Mapping[str, torch.Tensor]) -> str | None:
    """The model's name for a file key: the same name, or the backbone's (a bare backbone checkpoint)."""
    return next((name for name in (key, f"backbone.{key}") if name in own), None)


def load_state(model: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> WeightsMatch:
    """Copy the matching tensors of ``state`` into ``model``; warn about every key that did not match."""
    own = model.state_dict()
    mapped = {name: value for key, value in state.items() if (name := model_key(key, own))}
    wrong = [
        f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in mapped.items() if v.shape != own[k].shape
    ]
    if wrong:
        raise ConfigError(f"detector weights {source}: shapes differ from the model's: {shorten(wrong)}")
    if not mapped:
        raise ConfigError(
            f"detector weights {source}: none of its {len(state)} tensors match the model "
            f"(file: {shorten(list(state))}; model: {shorten(list(own))})"
        )
    model.load_state_dict(mapped, strict=False)
    match = WeightsMatch(
        loaded=tuple(mapped),
        missing=tuple(k for k in own if k not in mapped and not unreported(k)),
        unexpected=tuple(k for k in state if model_key(k, own) is None),
    )
    if match.missing or match.unexpected:
        log.warning(
            "detector weights %s: loaded %d tensors; not in the file (kept as built): %s; "
            "in the file but not in the model (ignored): %s",
            source, len(match.loaded), shorten(match.missing) or "none", shorten(match.unexpected) or "none",
        )  # fmt: skip
    return match


def build_with_weights(build: Callable[[], M], weights: str | None) -> M:
    """Build a detector and load a local weights file into it; the file is checked first, so a wrong path
    fails at once, before a model is built or a pretrained download starts."""
    state = read_state_dict(weights) if weights is not None else None
    model = build()
    if state is not None:
        load_state(model, state, str(weights))
    return model


@contextmanager
def pretrained_download(what: str, source: str) -> Iterator[None]:
    """Turn the network error of a pretrained download (offline machine) into a ConfigError with the fix."""
    try:
        yield
    except OSError as err:  # urllib's URLError, huggingface_hub's LocalEntryNotFoundError, ...
        raise ConfigError(
            f"pretrained weights for {what} need internet ({source}); download them elsewhere and pass "
            f"{WEIGHTS_HINT} ({type(err).__name__}: {first_line(err)})"
        ) from None


def unreported(key: str) -> bool:
    return key in UNREPORTED or key.endswith("num_batches_tracked")


def shorten(names: list[str] | tuple[str, ...], limit: int = 6) -> str:
    more = f" ... and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [""])[0]
