"""ATTACKS registry: one file per attack family; every attack is a frozen dataclass (see ``attacks.base``)."""

from afsl_bench.attacks import (  # noqa: F401  (registration)
    apgd,
    autoattack_binary,
    cw,
    distortions,
    eot_pgd,
    fab,
    fgsm,
    nes,
    pgd,
    square,
    transfer,
    video_codec,
)
from afsl_bench.attacks.base import ATTACKS, Attack
from afsl_bench.attacks.vocabulary import Direction, Loss, Norm

__all__ = ["ATTACKS", "Attack", "Direction", "Loss", "Norm"]
