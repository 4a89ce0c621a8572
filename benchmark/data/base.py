"""The data-set registry: each entry is a frozen config dataclass whose ``build()`` returns a ``DataBundle`` of
uint8 splits (see ``afsl_bench.core.types``)."""

from afsl_bench.core.registry import Registry

DATASETS: Registry = Registry("dataset")
