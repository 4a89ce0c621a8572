"""What ``afsl-bench list`` prints: the registries themselves, remembered per version of the code.

Listing the registries imports every component module, hence torch, torchvision and timm (seconds before
anything prints). So the first ``list`` reads the live registries and writes what it shows to a cache file
named by a digest of the component sources (every ``.py`` file of the package) and of the installed
plugins; any later ``list`` of the same code reads that file without importing torch. A changed component,
an upgrade or a new plugin changes the digest, so the cache is never stale; nothing is committed. The
cache lives in ``$AFSL_BENCH_CACHE`` (default: the user's cache folder, ``~/.cache/afsl-bench``); a cache
that cannot be written or read only costs the speed-up.
"""

from __future__ import annotations

import hashlib
import json
import os
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

KINDS = ("attacks", "defenses", "detectors", "datasets", "train")
#: the package's root folder (``afsl_bench``) and the component folders it is built from
PACKAGE = Path(__file__).resolve().parents[1]


def registry_of(kind: str) -> Any:
    from afsl_bench.attacks import ATTACKS
    from afsl_bench.data import DATASETS
    from afsl_bench.defenses import DEFENSES
    from afsl_bench.detectors import DETECTORS

    return {"attacks": ATTACKS, "defenses": DEFENSES, "detectors": DETECTORS, "datasets": DATASETS}[kind]


def live(kind: str) -> dict[str, Any]:
    """What ``list kind`` shows, from the code itself (imports every component of the kind)."""
    from afsl_bench.cli.render import show

    if kind == "train":
        import dataclasses

        from afsl_bench.defenses.training import TrainSettings

        fields = dataclasses.fields(TrainSettings)
        rows = [[f.name, getattr(f.type, "__name__", str(f.type)), show(f.default, f.name)] for f in fields]
        return {"kind": "training setting", "settings": rows}
    registry = registry_of(kind)
    components = [
        {
            "name": name,
            "description": registry.describe(name),
            "params": [f"{p.name}={show(p.default, p.name)}" for p in registry.params_of(name).values()],
        }
        for name in registry.names()
    ]
    listed = {"kind": registry.kind, "components": components}
    if kind == "detectors":
        from afsl_bench.detectors.sources import SOURCES

        listed["weights"] = [
            {"source": name, "detectors": [layout.detector for layout in source.layouts],
             "builtin": list(source.builtin), "citation": source.citation}
            for name, source in sorted(SOURCES.items())
        ]  # fmt: skip
    return listed


def code_digest() -> str:
    """A digest of every source file of the package (the component folders included, wherever pyproject's
    package-dir put them) and of the installed plugins' entry points."""
    digest = hashlib.sha256()
    folders = {PACKAGE, *(Path(p).resolve() for name in ("attacks", "defenses", "detectors")
                          for p in _package_path(f"afsl_bench.{name}"))}  # fmt: skip
    for folder in sorted(folders):
        for path in sorted(folder.rglob("*.py")):
            digest.update(f"{path.relative_to(folder)}\n".encode())
            digest.update(path.read_bytes())
    for kind in KINDS[:-1]:
        digest.update(repr(sorted((e.name, e.value) for e in entry_points(group=f"afsl_bench.{kind}"))).encode())
    return digest.hexdigest()[:16]


def _package_path(name: str) -> list[str]:
    import importlib.util

    spec = importlib.util.find_spec(name)
    return list(spec.submodule_search_locations or []) if spec else []


def cache_path() -> Path:
    root = os.environ.get("AFSL_BENCH_CACHE") or Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")) / "afsl-bench"
    return Path(root).expanduser() / f"listing-{code_digest()}.json"


def entry(kind: str) -> dict[str, Any]:
    """``list kind``'s content: from the cache of this code when there is one (no torch import), else from
    the registries, then remembered."""
    path = cache_path()
    try:
        return json.loads(path.read_text())[kind]
    except (OSError, ValueError, KeyError):
        pass
    manifest = {k: live(k) for k in KINDS}
    try:
        from afsl_bench.core.io import atomic_write_text

        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    except OSError:
        pass  # a read-only home: list stays correct, only slower
    return manifest[kind]
