"""The one parameter vocabulary of the attacks: the norms of a budget, the losses an attack maximises, the
samples it perturbs, and the error a gradient attack raises on a model without input gradients.

The bottom of ``afsl_bench.attacks``: it imports nothing else of the package, so the protocol
(``attacks.base``) and the shared helpers (``attacks.ops``) both build on it without importing each other.
"""

from __future__ import annotations

from enum import StrEnum

from afsl_bench.core.errors import ConfigError


class Direction(StrEnum):
    """Which samples are attacked: ``both`` pushes every sample to the wrong class (the AFSL paper's
    setting); ``fake-to-real`` attacks only fakes (evasion, Hussain et al., WACV 2021)."""

    BOTH = "both"
    FAKE_TO_REAL = "fake-to-real"


class Norm(StrEnum):
    LINF = "linf"
    L2 = "l2"


class Loss(StrEnum):
    """``ce``: cross-entropy. ``margin``: the binary logit margin z_wrong - z_true, the two-class form of
    Carlini-Wagner / DLR losses that does not index a third logit."""

    CE = "ce"
    MARGIN = "margin"


class GradientsUnavailableError(ConfigError):
    """A gradient attack was pointed at a model whose output has no gradient w.r.t. its input."""
