"""What ``afsl-bench list`` prints, without importing torch: a manifest of the built-in components.

Listing the registries imports every component module, hence torch and torchvision (several seconds before
anything prints). ``listing.json`` holds what ``list`` shows of the built-in components: names,
descriptions and parameter defaults as the CLI writes them. ``list`` reads it when no plugin is installed
for the kind (``afsl_bench.<kind>s`` entry points; with plugins it imports the registries as before).
``tests/test_cli_display.py`` fails when the file differs from the live registries; regenerate it with
``python -m afsl_bench.cli.listing``.
"""

from __future__ import annotations

import json
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

MANIFEST = Path(__file__).with_name("listing.json")
KINDS = ("attacks", "defenses", "detectors", "datasets", "train")


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
    return {"kind": registry.kind, "components": components}


def entry(kind: str) -> dict[str, Any]:
    """``list kind``'s content: from the manifest when it is there and no plugin adds to the kind (no torch
    import), else from the registries."""
    plugins = kind != "train" and entry_points(group=f"afsl_bench.{kind}")
    if not plugins and MANIFEST.is_file():
        return json.loads(MANIFEST.read_text())[kind]
    return live(kind)


def write() -> Path:
    manifest = {kind: live(kind) for kind in KINDS}
    MANIFEST.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return MANIFEST


if __name__ == "__main__":
    print(write())
