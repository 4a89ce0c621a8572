"""The data-set registry. A factory returns a ``DataBundle`` of uint8 splits (see ``benchmark.types``)."""

from benchmark.registry import Registry

DATASETS: Registry = Registry("dataset")
