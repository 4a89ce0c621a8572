"""AFSL: Adversarial Feature Similarity Learning (Khan et al., "Adversarially Robust Deepfake Detection via
Adversarial Feature Similarity Learning", MMM 2024, https://arxiv.org/abs/2403.08806).

    L = L_dcl + beta1 * L_asl + beta2 * L_srl        (paper: beta1 = 1, beta2 = 0.1)

- L_dcl: classification loss of the head on CLEAN inputs (the paper's head, ``detector.head=cosine``: one
  weight vector w, margin s * cos(z, w), s = 64, as in RealForensics; any head works), with
  logit adjustment against class imbalance (Menon et al., ICLR 2021, https://arxiv.org/abs/2007.07314):
  tau = log(prior_fake / prior_real) is added to the fake logit in training only. We use softmax
  cross-entropy on the two adjusted logits; for two classes it equals, term for term, the logit-adjusted BCE
  of the paper's code base (RealForensics) on the margin: CE([z_r, z_f + tau], y) = BCE(sigmoid(z_f - z_r
  + tau), y). With tau > 0 (more fakes) the model must push fakes further to get the same loss, which
  un-biases the decision at test time, where no tau is added.
- L_asl: mean over all samples (real and fake) of a dissimilarity between f(x) and f(x_adv): pulls each
  adversarial feature onto its clean one; the source of robustness (L_dcl alone gives none, per the paper's
  ablation). ``similarity`` (``Similarity``) says which: ``feature`` (the default, the paper's text:
  1 - cos(f(x), f(x_adv)) on the embedding), ``head`` (what the head reads, in its own scale: half the squared
  distance of s * f / |f|, i.e. s^2 (1 - cos) for the cosine heads), or ``margin`` (1 - cos plus half the
  squared change of the logit margin, the one direction the classifier reads). docs/afsl.md gives the
  text each rests on and what each measured.
- L_srl: mean cosine over all (real, fake) pairs of the batch: pushes the classes apart; 0 when a batch
  holds one class only. ``srl_with_adv`` adds the adversarial features to both sides.

Where the paper is silent we chose, and expose the choice as a parameter:
- the training attack: L-inf PGD-10, eps 8/255, step 2/255, uniform random start (the attack the paper
  evaluates with, and the same as ``at`` and ``trades``), run every step on every sample;
- what that PGD maximises (``attack_loss``): ``ce`` (cross-entropy on the unadjusted cosine logits, the
  default: the paper calls its training examples PGD adversarial examples), ``margin`` (logit margin), or
  ``feature`` (1 - cos(f(x), f(x_adv)), i.e. L_asl itself, as TRADES maximises its own KL term);
- gradients flow through both f(x) and f(x_adv) in L_asl and L_srl (no stop-gradient);
- clean and adversarial inputs go through the network in separate passes, so batch-norm statistics are never
  mixed (as in the TRADES reference code).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum
from typing import ClassVar

import torch
import torch.nn.functional as F

from afsl_bench.attacks.ops import check_budget, frozen, random_start
from afsl_bench.attacks.pgd import PGD
from afsl_bench.attacks.vocabulary import Loss, Norm
from afsl_bench.core.types import FAKE, REAL, Batch
from afsl_bench.defenses.base import DEFENSES, Defense, TrainContext
from afsl_bench.defenses.trades import ascend_linf
from afsl_bench.detectors.base import Detector, Head


class Similarity(StrEnum):
    """What L_asl compares between a clean input and its adversarial example."""

    FEATURE = "feature"  # 1 - cos(z, z_adv) on the embedding (the paper's "feature similarity")
    HEAD = "head"  # 0.5 |u - u_adv|^2 with u = what the head reads (Detector.head_input)
    MARGIN = "margin"  # 1 - cos(z, z_adv) + 0.5 (m - m_adv)^2 with m the head's logit margin


class AttackLoss(StrEnum):
    """What AFSL's training PGD maximises."""

    CE = "ce"
    MARGIN = "margin"
    FEATURE = "feature"


def logit_adjustment(prior_fake: float) -> float:
    """tau = log(prior_fake / prior_real), added to the fake logit in training (Menon et al. 2021)."""
    if not 0 < prior_fake < 1:
        raise ValueError(f"logit adjustment needs both classes in the training data; prior_fake={prior_fake}")
    return math.log(prior_fake / (1 - prior_fake))


def similarity_loss(z: torch.Tensor, z_adv: torch.Tensor) -> torch.Tensor:
    """L_asl: mean over samples of 1 - cos(z_i, z_adv_i)."""
    return (1 - F.cosine_similarity(z, z_adv, dim=1)).mean()


def head_similarity_loss(u: torch.Tensor, u_adv: torch.Tensor) -> torch.Tensor:
    """Mean over samples of 0.5 |u - u_adv|^2: with u = s * z / |z| (a cosine head's input) this is
    s^2 (1 - cos(z, z_adv)), the feature term in the head's own scale."""
    return 0.5 * (u - u_adv).pow(2).sum(dim=1).mean()


def margin_similarity_loss(z: torch.Tensor, z_adv: torch.Tensor, margin: torch.Tensor,
                           margin_adv: torch.Tensor) -> torch.Tensor:
    """Mean over samples of 1 - cos(z, z_adv) + 0.5 (margin - margin_adv)^2: the feature term plus the change
    along the one direction the classifier reads (the logit margin z_fake - z_real)."""
    return similarity_loss(z, z_adv) + 0.5 * (margin - margin_adv).pow(2).mean()


def separation_loss(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """L_srl: mean cosine over every (real, fake) pair of rows of z; zero when one class is absent."""
    unit = F.normalize(z, dim=1)
    real, fake = unit[y == REAL], unit[y == FAKE]
    if len(real) == 0 or len(fake) == 0:
        return z.sum() * 0.0  # keeps the graph and device; such a batch has no pair to separate
    return (real @ fake.T).mean()


def head_margin(model: Detector, z: torch.Tensor) -> torch.Tensor:
    """The head's raw logit margin z_fake - z_real on features z (no threshold: training sets none)."""
    logits = model.head(z)
    return logits[:, FAKE] - logits[:, REAL]


@DEFENSES.register("afsl")
@dataclass(frozen=True)
class AFSL(Defense):
    """AFSL (Khan et al., MMM 2024, https://arxiv.org/abs/2403.08806): L_dcl + b1 L_asl + b2 L_srl."""

    #: the paper's head, used when ``detector.head`` is not set
    head: ClassVar[Head] = Head.COSINE
    adversarial: ClassVar[bool] = True

    beta1: float = 1.0
    beta2: float = 0.1
    use_asl: bool = True
    use_srl: bool = True
    srl_with_adv: bool = False
    logit_adjust: bool = True
    eps: float = 8 / 255
    step_size: float = 2 / 255
    steps: int = 10
    attack_loss: AttackLoss = AttackLoss.CE
    similarity: Similarity = Similarity.FEATURE

    def __post_init__(self) -> None:
        check_budget(self.eps, Norm.LINF)
        if self.steps < 1 or self.step_size <= 0:
            raise ValueError(f"steps ({self.steps}) must be >= 1 and step_size ({self.step_size}) > 0")
        if self.beta1 < 0 or self.beta2 < 0:
            raise ValueError(f"beta1 ({self.beta1}) and beta2 ({self.beta2}) must be >= 0")
        AttackLoss(self.attack_loss), Similarity(self.similarity)  # bad names fail here, not mid-training

    @property
    def asl_on(self) -> bool:
        return self.use_asl and self.beta1 > 0

    @property
    def srl_on(self) -> bool:
        return self.use_srl and self.beta2 > 0

    @property
    def needs_adv(self) -> bool:
        return self.asl_on or (self.srl_on and self.srl_with_adv)

    @property
    def attack(self) -> PGD:
        """The training PGD (for ``feature``, PGD-CE with the same budget); validation's robust accuracy."""
        loss = Loss.MARGIN if AttackLoss(self.attack_loss) is AttackLoss.MARGIN else Loss.CE
        return PGD(eps=self.eps, step_size=self.step_size, steps=self.steps, loss=loss, early_stop=False)

    def adversarial_examples(self, model: Detector, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if AttackLoss(self.attack_loss) is not AttackLoss.FEATURE:
            return self.attack(model, x, y)
        with frozen(model):
            z = model.embed(x).detach()

            def dissimilarity(x_adv: torch.Tensor) -> torch.Tensor:
                return (1 - F.cosine_similarity(model.embed(x_adv), z, dim=1)).sum()

            # a random start: at x_adv = x the gradient of 1 - cos is exactly zero
            start = x + random_start(x, Norm.LINF, self.eps)
            return ascend_linf(x, start, dissimilarity, eps=self.eps, step_size=self.step_size,
                               steps=self.steps)

    def classification_loss(self, logits: torch.Tensor, y: torch.Tensor, prior_fake: float) -> torch.Tensor:
        """L_dcl: cross-entropy on the logits with tau added to the fake logit (when ``logit_adjust``)."""
        if self.logit_adjust:
            shift = torch.zeros(2, dtype=logits.dtype, device=logits.device)
            shift[FAKE] = logit_adjustment(prior_fake)
            logits = logits + shift
        return F.cross_entropy(logits, y)

    def similarity_term(self, model: Detector, z: torch.Tensor, z_adv: torch.Tensor) -> torch.Tensor:
        """L_asl under the chosen ``similarity``."""
        kind = Similarity(self.similarity)
        if kind is Similarity.HEAD:
            return head_similarity_loss(model.head_input(z), model.head_input(z_adv))
        if kind is Similarity.MARGIN:
            return margin_similarity_loss(z, z_adv, head_margin(model, z), head_margin(model, z_adv))
        return similarity_loss(z, z_adv)

    def loss(self, model: Detector, batch: Batch, ctx: TrainContext) -> tuple[torch.Tensor, dict[str, float]]:
        x, y = batch.x, batch.y
        x_adv = self.adversarial_examples(model, x, y) if self.needs_adv else None
        z = model.embed(x)  # each input goes through the network once; the head reuses z
        z_adv = model.embed(x_adv) if x_adv is not None else None
        dcl = self.classification_loss(model.logits_from_embedding(z), y, ctx.prior_fake)
        loss, logs = dcl, {"dcl": dcl.item()}
        if self.asl_on:
            asl = self.similarity_term(model, z, z_adv)
            loss, logs["asl"] = loss + self.beta1 * asl, asl.item()
        if self.srl_on:
            feats, labels = (torch.cat([z, z_adv]), torch.cat([y, y])) if self.srl_with_adv else (z, y)
            srl = separation_loss(feats, labels)
            loss, logs["srl"] = loss + self.beta2 * srl, srl.item()
        return loss, logs
