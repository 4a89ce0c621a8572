"""The AFSL paper's published results, as data: Khan et al., "Adversarially Robust Deepfake Detection via
Adversarial Feature Similarity Learning", MMM 2024, https://arxiv.org/abs/2403.08806.

The leaderboard's "Paper reproduction" section (``afsl_bench.report.leaderboard.paper_reproduction``) shows these
beside the numbers of ``suites/paper.toml`` (synthetic) or ``suites/paper-ffpp.toml`` (FF++ c23). Nothing
here is a number we measured, and nothing is invented: where the paper's claim is only qualitative (the
ablation), it is kept as text.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

CITATION = "Khan et al., MMM 2024, arXiv 2403.08806"


@dataclass(frozen=True)
class Reported:
    """One row of the paper's Table 2: AUC in % on clean inputs and under PGD-10."""

    clean_auc: float
    pgd10_auc: float


#: Table 2: a video detector trained and tested on FF++ c23, AUC %. Copied from a secondary source, not
#: checked against the paper's PDF: indicative only, and said so wherever it is shown.
TABLE2 = {
    "none": Reported(clean_auc=91.5, pgd10_auc=1.0),
    "at": Reported(clean_auc=78.4, pgd10_auc=73.5),
    "trades": Reported(clean_auc=84.0, pgd10_auc=76.7),
    "afsl": Reported(clean_auc=89.8, pgd10_auc=80.8),
}
TABLE2_SOURCE = (
    f"{CITATION}, Table 2 (video detector, FF++ c23, AUC %; from a secondary source, indicative only)"
)


@dataclass(frozen=True)
class Variant:
    """One row of the paper's ablation: which of AFSL's switchable terms are on (L_dcl always is)."""

    label: str
    use_asl: bool
    use_srl: bool


#: the paper's ablation, in its order; a variant is recognised by its flags, whatever its loss weights
ABLATION = (
    Variant("L_dcl", use_asl=False, use_srl=False),
    Variant("L_dcl + L_asl", use_asl=True, use_srl=False),
    Variant("L_dcl + L_asl + L_srl", use_asl=True, use_srl=True),
)
#: the paper's ablation claim: qualitative only here (its numbers are not taken from any source)
ABLATION_CLAIM = (
    "L_dcl alone gives no robustness; adding L_asl gives the robustness; L_srl adds a little on top"
)
#: AFSL's switchable terms (``defenses/afsl.py``), all on by default
TERMS = ("use_asl", "use_srl")


def terms_on(params: Mapping[str, Any]) -> tuple[bool, ...]:
    return tuple(bool(params.get(term, True)) for term in TERMS)


def is_ablated(defense: str, params: Mapping[str, Any]) -> bool:
    """An AFSL run with one of its terms switched off: an ablation variant, not a main result."""
    return defense == "afsl" and not all(terms_on(params))


def ablation_variant(defense: str, params: Mapping[str, Any]) -> Variant | None:
    """The paper's ablation row this defense is (the full AFSL included), else None."""
    if defense != "afsl":
        return None
    return next((v for v in ABLATION if (v.use_asl, v.use_srl) == terms_on(params)), None)
