"""DEFENSES registry: none, at, trades, afsl; one shared training loop in ``defenses.training``."""

from afsl_bench.defenses import afsl, at, none, smoothing, trades  # noqa: F401  (registration)
from afsl_bench.defenses.base import DEFENSES, Defense, TrainContext

__all__ = ["DEFENSES", "Defense", "TrainContext"]
