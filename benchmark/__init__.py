"""afsl-bench: the benchmark suite for adversarial robustness of deepfake detectors.

One import package. ``afsl_bench.core`` is the kernel every part may import (registry, errors, types,
specs, metrics, parameter parsing); the components live in ``afsl_bench.detectors``, ``.defenses``,
``.attacks`` and ``.data``; the engine (planning, running, records, the store, reports, CLI) in the rest.
Importing this package imports nothing else: the public API below loads on first use.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

#: the public Python API (``afsl_bench/api.py``), loaded lazily so that ``import afsl_bench.core`` stays cheap
__all__ = ["CellOutcome", "evaluate", "load_detector", "run", "train"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from afsl_bench import api

        return getattr(api, name)
    raise AttributeError(f"module 'afsl_bench' has no attribute {name!r}")
