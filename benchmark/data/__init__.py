"""DATASETS registry: each entry is a factory ``(**params) -> DataBundle``."""

from benchmark.data.base import DATASETS

from benchmark.data import celebdf, dfdc, ffpp, folder, synthetic  # noqa: F401  (registration)

__all__ = ["DATASETS"]
