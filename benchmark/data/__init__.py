"""DATASETS registry: each entry is a frozen config dataclass; ``DATASETS.build(name, **params)`` -> ``DataBundle``."""

from afsl_bench.data import celebdf, dfdc, ffpp, folder, synthetic  # noqa: F401  (registration)
from afsl_bench.data.base import DATASETS

__all__ = ["DATASETS"]
