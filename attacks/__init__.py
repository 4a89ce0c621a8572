"""ATTACKS registry: one file per attack family; every attack is a frozen dataclass (see ``attacks.base``)."""

from attacks.base import ATTACKS, Attack, Direction, Loss, Norm

from attacks import apgd, fgsm, pgd  # noqa: F401  (registration)

__all__ = ["ATTACKS", "Attack", "Direction", "Loss", "Norm"]
