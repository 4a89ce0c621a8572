"""DEFENSES registry: none, at, trades, afsl; one shared training loop in ``defenses.training``."""

from defenses.base import DEFENSES, Defense, TrainContext

from defenses import afsl, at, none, trades  # noqa: F401  (registration)

__all__ = ["DEFENSES", "Defense", "TrainContext"]
