"""Detector weights: a local state_dict file, a published checkpoint of a named source, or timm /
torchvision pretrained weights when online.

A local file (``--set detector.weights=path``) is read with ``torch.load(..., weights_only=True)``, so it
is never unpickled as code. It may hold a whole detector's ``state_dict`` (for example a model trained by
afsl-bench, whose files wrap it as ``{"state_dict": ..., "meta": ...}``) or only its backbone's (timm's or
torchvision's ImageNet / Kinetics weights downloaded elsewhere; a ``module.`` prefix from DataParallel is
dropped). Tensors are matched by name; every key that did not match is reported in one warning, a shape
mismatch or a file with no matching key is a ConfigError. ``SOURCE:path`` (``deepfakebench:xception.pth``,
``faceforensics:full_c23.pt``) maps another code base's checkpoint through that source's layout table
(detectors/sources/), strictly: every unmatched key is a ConfigError. Pretrained downloads go through timm
(Hugging Face Hub) or torchvision (``torch.hub``); offline, the network error becomes a ConfigError saying
what to do. A ``weights`` parameter stays out of cell ids while unset and enters them with the file's
SHA-256 when set (``Weights``).
"""

from __future__ import annotations

import hashlib
import logging
import pickle
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar

import torch
from torch import nn

from afsl_bench.core.errors import ConfigError
from afsl_bench.core.registry import OmitAtDefault
from afsl_bench.detectors.sources import SOURCES, Source

log = logging.getLogger(__name__)

M = TypeVar("M", bound=nn.Module)

WEIGHTS_HINT = "--set detector.weights=/path/to/file.pt"
#: checkpoint layouts that wrap the state_dict (afsl-bench and timm's train script use "state_dict")
WRAPPER_KEYS = ("state_dict", "model")
#: keys whose absence from a file is no news: constants of the architecture and BN's step counters
UNREPORTED = ("mean", "std")


#: a source prefix as users write it: lower-case letters, digits and dashes before the colon
SOURCE_PREFIX = re.compile(r"([a-z][a-z0-9-]+):(.+)")


def split_source(weights: str) -> tuple[Source | None, Path]:
    """``SOURCE:path`` -> (the source, the path); a plain path -> (None, path). An unknown prefix whose
    whole text is no existing file is a ConfigError listing the sources."""
    prefixed = SOURCE_PREFIX.fullmatch(weights)
    if prefixed and prefixed.group(1) in SOURCES:
        source = SOURCES[prefixed.group(1)]
        return source, source.resolve(Path(prefixed.group(2)).expanduser())
    if prefixed and not Path(weights).expanduser().exists():
        raise ConfigError(
            f"detector weights '{weights}': unknown source '{prefixed.group(1)}'; sources: "
            f"{', '.join(sorted(SOURCES))} (a plain state dict needs no prefix: {WEIGHTS_HINT})"
        )
    return None, Path(weights).expanduser()


def weights_file_digest(weights: str) -> str:
    """The SHA-256 (16 hex digits) of the file a ``weights`` value names: its content enters cell ids."""
    _, path = split_source(weights)
    if not path.is_file():
        raise ConfigError(f"detector weights file not found: {path} (give an existing file: {WEIGHTS_HINT})")
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


#: the type of every detector config's ``weights`` parameter (out of cell ids while None)
Weights = Annotated[str | None, OmitAtDefault(digest=weights_file_digest)]


@dataclass(frozen=True)
class WeightsMatch:
    """Which model tensors a file set (``loaded``), which it left as built, which file tensors were unused."""

    loaded: tuple[str, ...]
    missing: tuple[str, ...]
    unexpected: tuple[str, ...]


def read_state_dict(path: str | Path, source: Source | None = None) -> dict[str, torch.Tensor]:
    """The tensors of a local weights file, read with ``weights_only=True``; bad files are ConfigErrors."""
    file = Path(path).expanduser()
    if not file.is_file():
        builtin = f"; built in: {', '.join(f'{source.name}:{n}' for n in source.builtin)}" if source and source.builtin else ""
        raise ConfigError(f"detector weights file not found: {file} (give an existing file: {WEIGHTS_HINT}{builtin})")
    if source is not None and source.reader is not None:
        return source.reader(file)
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as err:
        fix = "save a state_dict: torch.save(model.state_dict(), path)"
        if source is not None and source.pickled_namespaces:
            fix = (
                f"{source.name} ships pickled whole models; convert it once: afsl-bench convert-weights "
                f"{source.name} {file} OUT.pt --allow-pickle, then use {source.name}:OUT.pt"
            )
        raise ConfigError(
            f"cannot read detector weights {file} with torch.load(weights_only=True) ({first_line(err)}); {fix}"
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


def build_with_weights(
    build: Callable[[], M], weights: str | None, detector: str = "", params: Mapping[str, Any] | None = None
) -> M:
    """Build the registered ``detector`` (with its config's ``params``) and load a weights file into it: a plain
    state dict by name, or ``SOURCE:path`` through that source's layout. The file and the source's needs
    are checked first, so a wrong path fails at once, before a model is built or a download starts."""
    if weights is None:
        return build()
    source, path = split_source(weights)
    layout = source.layout(detector) if source is not None else None
    if layout is not None:
        layout.check(source.name, params or {})
    state = read_state_dict(path, source)
    model = build()
    if layout is None:
        load_state(model, state, str(path))
    else:
        mapped = layout.convert(state, model.state_dict(), str(path))
        model.load_state_dict(mapped, strict=False)  # the layout checked every key; BN counters may lack
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
