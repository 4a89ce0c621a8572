"""The decision rule: where a detector's "fake" starts, for the metrics and the attack alike.

Every score in the suite is a logit margin with the threshold folded in, ``z_fake - z_real - threshold``;
``says_fake`` is the one place that reads a score as a decision (fake when the score is > 0). The rule
decides the threshold: ``margin`` (the default) is the model's own rule, threshold 0, as RobustBench and the
attack libraries evaluate (AFSL's logit adjustment is a training-time term and is not applied at
evaluation); ``eer`` fixes the threshold at the equal-error-rate point of the clean VALIDATION scores after
training. Robust AUC is threshold-free under both.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TypeVar

from afsl_bench.core.errors import ConfigError

Scores = TypeVar("Scores")  # a tensor, an array, a pandas Series or a float: anything with ``> 0``


class DecisionRule(StrEnum):
    """``margin``: fake when z_fake > z_real. ``eer``: fake when z_fake - z_real exceeds the clean-validation
    EER threshold (a threshold set below the attack's reach makes every real one perturbation from "fake")."""

    EER = "eer"
    MARGIN = "margin"


#: the rule of a cell that does not set ``eval.threshold``
DEFAULT_RULE = DecisionRule.MARGIN
#: the rule of a stored spec that names none: such records were written when ``eer`` was the default
LEGACY_RULE = DecisionRule.EER


def says_fake(scores: Scores) -> Scores:
    """The decision of threshold-folded scores: True (fake) where the score is positive."""
    return scores > 0


def parse_decision_rule(text: str | None) -> DecisionRule:
    """``eval.threshold`` as typed (any case; None: the default) -> the rule, or an error naming the choices."""
    if text is None:
        return DEFAULT_RULE
    try:
        return DecisionRule(str(text).strip().lower())
    except ValueError:
        choices = ", ".join(r.value for r in DecisionRule)
        raise ConfigError(f"eval.threshold={text}: choose one of {choices}") from None
