"""Defenses: each loss term against an independent hand computation (numpy, explicit loops)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from afsl_bench.attacks.pgd import PGD
from afsl_bench.core.errors import ConfigError
from afsl_bench.core.types import Batch
from afsl_bench.defenses import DEFENSES, TrainContext
from afsl_bench.defenses.afsl import (
    AFSL,
    AttackLoss,
    Similarity,
    head_margin,
    head_similarity_loss,
    margin_similarity_loss,
    similarity_loss,
)
from afsl_bench.defenses.trades import Trades, kl_clean_adv
from afsl_bench.detectors import DETECTORS, Head

EPS = 8 / 255


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_model(head: Head = Head.COSINE) -> torch.nn.Module:
    torch.manual_seed(0)
    return DETECTORS.build("tiny-cnn", width=4, head=head).eval()  # eval: BN fixed, calls repeatable


def tiny_batch(labels: tuple[int, ...] = (0, 1, 1, 0, 1)) -> Batch:
    torch.manual_seed(1)
    n = len(labels)
    ids = [str(i) for i in range(n)]
    return Batch(torch.rand(n, 3, 16, 16), torch.tensor(labels), ids, ids)


def cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def hand_afsl_terms(logits, z, z_adv, y, tau, srl_with_adv=False):
    """L_dcl, L_asl, L_srl with loops over samples and pairs (no shared helper)."""
    logits, z, z_adv, y = (t.detach().double().numpy() for t in (logits, z, z_adv, y))
    dcl = 0.0
    for row, label in zip(logits, y):
        adjusted = row + np.array([0.0, tau])
        dcl -= adjusted[int(label)] - np.log(np.exp(adjusted).sum())
    asl = sum(1 - cos(a, b) for a, b in zip(z, z_adv)) / len(y)
    feats, labels = (np.concatenate([z, z_adv]), np.concatenate([y, y])) if srl_with_adv else (z, y)
    pairs = [cos(r, f) for r, lr in zip(feats, labels) if lr == 0 for f, lf in zip(feats, labels) if lf == 1]
    return dcl / len(y), asl, sum(pairs) / len(pairs)


def afsl_run(defense: AFSL, prior_fake: float = 0.5, labels=(0, 1, 1, 0, 1)):
    """The defense's loss, then the same x_adv regenerated from the same seed for the hand computation."""
    model, batch = tiny_model(), tiny_batch(labels)
    torch.manual_seed(7)
    loss, logs = defense.loss(model, batch, TrainContext(prior_fake=prior_fake))
    torch.manual_seed(7)
    x_adv = defense.adversarial_examples(model, batch.x, batch.y)
    z, z_adv = model.embed(batch.x), model.embed(x_adv)
    return loss, logs, (model(batch.x), z, z_adv, batch.y)


def test_registered_defenses_and_their_heads():
    assert {"none", "at", "trades", "afsl"} <= set(DEFENSES.names())
    assert DEFENSES.get("afsl").head is Head.COSINE
    assert all(DEFENSES.get(name).adversarial for name in ("at", "trades", "afsl"))
    assert not DEFENSES.get("none").adversarial


@pytest.mark.parametrize("name", DEFENSES.names())
def test_every_defense_gives_a_finite_loss_with_gradients(name):
    defense = DEFENSES.build(name, **({"steps": 1} if DEFENSES.get(name).adversarial else {}))
    model = tiny_model(defense.head or Head.LINEAR).train()
    loss, logs = defense.loss(model, tiny_batch(), TrainContext(prior_fake=0.6))
    loss.backward()
    assert loss.dim() == 0 and torch.isfinite(loss) and logs
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert model.training  # the training attacks restore train mode


def test_afsl_terms_match_hand_computation():
    loss, logs, (logits, z, z_adv, y) = afsl_run(AFSL(), prior_fake=0.8)
    dcl, asl, srl = hand_afsl_terms(logits, z, z_adv, y, tau=math.log(0.8 / 0.2))
    assert logs["dcl"] == pytest.approx(dcl, rel=1e-5)
    assert logs["asl"] == pytest.approx(asl, rel=1e-4, abs=1e-6)
    assert logs["srl"] == pytest.approx(srl, rel=1e-4, abs=1e-6)
    assert loss.item() == pytest.approx(dcl + 1.0 * asl + 0.1 * srl, rel=1e-5)
    assert asl > 0  # the attack did move the features


def test_afsl_srl_with_adversarial_features():
    _, logs, (logits, z, z_adv, y) = afsl_run(AFSL(srl_with_adv=True))
    expected = hand_afsl_terms(logits, z, z_adv, y, 0.0, srl_with_adv=True)[2]
    assert logs["srl"] == pytest.approx(expected, rel=1e-4)


def test_afsl_switches_turn_terms_off():
    _, full, _ = afsl_run(AFSL())
    no_asl, logs, _ = afsl_run(AFSL(use_asl=False))
    assert "asl" not in logs and no_asl.item() == pytest.approx(full["dcl"] + 0.1 * full["srl"], rel=1e-5)
    zero_beta, logs, _ = afsl_run(AFSL(beta1=0.0))
    assert "asl" not in logs and zero_beta.item() == pytest.approx(no_asl.item(), rel=1e-6)
    no_srl, logs, _ = afsl_run(AFSL(use_srl=False))
    assert "srl" not in logs and no_srl.item() == pytest.approx(full["dcl"] + full["asl"], rel=1e-5)
    dcl_only, logs, _ = afsl_run(AFSL(use_asl=False, use_srl=False))
    assert set(logs) == {"dcl"} and dcl_only.item() == pytest.approx(full["dcl"], rel=1e-6)


def test_afsl_without_similarity_terms_crafts_no_attack(monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("no adversarial example is needed for L_dcl (+ clean L_srl)")

    monkeypatch.setattr(AFSL, "adversarial_examples", forbidden)
    AFSL(use_asl=False).loss(tiny_model(), tiny_batch(), TrainContext(prior_fake=0.5))


@pytest.mark.parametrize("prior_fake", [0.8, 0.5, 0.25])
def test_logit_adjustment_is_log_prior_ratio_on_the_fake_logit(prior_fake):
    """L_dcl = logit-adjusted BCE on the margin: -log sigmoid(+-(z_fake - z_real + log(p_f / p_r)))."""
    _, logs, (logits, *_rest, y) = afsl_run(AFSL(use_asl=False, use_srl=False), prior_fake=prior_fake)
    margin = (logits[:, 1] - logits[:, 0]).detach().double().numpy() + math.log(prior_fake / (1 - prior_fake))
    sign = np.where(y.numpy() == 1, 1.0, -1.0)
    assert logs["dcl"] == pytest.approx(np.mean(np.log1p(np.exp(-sign * margin))), rel=1e-5)


def test_logit_adjustment_sign_favours_the_majority_in_training():
    """With more fakes, tau > 0 lowers the loss on fakes and raises it on reals (Menon et al. 2021)."""
    def dcl(labels, prior):
        return afsl_run(AFSL(use_asl=False, use_srl=False), prior, labels)[1]["dcl"]

    assert dcl((1, 1), 0.8) < dcl((1, 1), 0.5) and dcl((0, 0), 0.8) > dcl((0, 0), 0.5)
    assert AFSL(logit_adjust=False).classification_loss(torch.zeros(1, 2), torch.tensor([1]), 0.8).item() \
        == pytest.approx(math.log(2))


def test_afsl_srl_is_zero_without_pairs_and_gradients_flow_through_both_branches():
    _, logs, _ = afsl_run(AFSL(), labels=(1, 1, 1))
    assert logs["srl"] == 0.0
    model, batch = tiny_model(), tiny_batch()
    z = model.embed(batch.x)
    z_adv = model.embed(AFSL().adversarial_examples(model, batch.x, batch.y))
    g_clean, g_adv = torch.autograd.grad(similarity_loss(z, z_adv), (z, z_adv))
    assert g_clean.abs().sum() > 0 and g_adv.abs().sum() > 0


@pytest.mark.parametrize("attack_loss", list(AttackLoss))
def test_afsl_training_attack_stays_in_budget_and_moves_features(attack_loss):
    model, batch = tiny_model(), tiny_batch()
    torch.manual_seed(3)
    x_adv = AFSL(attack_loss=attack_loss).adversarial_examples(model, batch.x, batch.y)
    assert (x_adv - batch.x).abs().max() <= EPS + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1
    noise = (batch.x + torch.empty_like(batch.x).uniform_(-EPS, EPS)).clamp(0, 1)
    with torch.no_grad():
        z = model.embed(batch.x)
        moved = 1 - F.cosine_similarity(model.embed(x_adv), z)
        random = 1 - F.cosine_similarity(model.embed(noise), z)
    if attack_loss is AttackLoss.FEATURE:  # the feature attack maximises exactly this
        assert moved.mean() > random.mean()
    assert moved.mean() > 0


def test_trades_kl_term_matches_closed_form():
    clean = torch.tensor([[1.0, 0.0], [0.0, 2.0], [0.3, 0.3]])
    adv = torch.tensor([[0.0, 1.0], [0.5, 0.5], [-1.0, 2.0]])
    expected = 0.0
    for c_row, a_row in zip(clean.numpy(), adv.numpy()):
        p, q = np.exp(c_row) / np.exp(c_row).sum(), np.exp(a_row) / np.exp(a_row).sum()
        expected += sum(p[k] * math.log(p[k] / q[k]) for k in range(2))
    assert kl_clean_adv(clean, adv).item() == pytest.approx(expected / 3, rel=1e-6)
    assert kl_clean_adv(clean, clean).item() == pytest.approx(0.0, abs=1e-7)


def test_trades_loss_is_ce_plus_beta_kl_on_its_inner_maximiser():
    model, batch, defense = tiny_model(Head.LINEAR), tiny_batch(), Trades()
    torch.manual_seed(5)
    loss, logs = defense.loss(model, batch, TrainContext(prior_fake=0.5))
    torch.manual_seed(5)
    x_adv = defense.adversarial_examples(model, batch.x)
    logits, logits_adv = model(batch.x), model(x_adv)
    ce = F.cross_entropy(logits, batch.y).item()
    p, q = F.softmax(logits, 1).detach().double().numpy(), F.softmax(logits_adv, 1).detach().double().numpy()
    kl = float(np.mean(np.sum(p * np.log(p / q), axis=1)))
    assert loss.item() == pytest.approx(ce + 6.0 * kl, rel=1e-5)
    assert logs["kl"] == pytest.approx(kl, rel=1e-4, abs=1e-6)  # float32 KL of nearby distributions
    start_kl = kl_clean_adv(logits, model(batch.x + 0.001 * torch.randn_like(batch.x))).item()
    assert kl > start_kl and (x_adv - batch.x).abs().max() <= EPS + 1e-6


def test_at_loss_is_ce_on_the_pgd_examples():
    model, batch, defense = tiny_model(Head.LINEAR), tiny_batch(), DEFENSES.build("at")
    torch.manual_seed(9)
    loss, _ = defense.loss(model, batch, TrainContext(prior_fake=0.5))
    torch.manual_seed(9)
    x_adv = PGD(eps=EPS, step_size=2 / 255, steps=defense.steps, early_stop=False)(model, batch.x, batch.y)
    assert loss.item() == pytest.approx(F.cross_entropy(model(x_adv), batch.y).item(), rel=1e-6)
    assert loss.item() > F.cross_entropy(model(batch.x), batch.y).item()


@pytest.mark.parametrize(("name", "params"), [("at", {"steps": 0}), ("trades", {"eps": 8.0}),
                                               ("afsl", {"beta2": -1.0}), ("afsl", {"attack_loss": "dlr"}),
                                               ("afsl", {"similarity": "cosine"})])
def test_bad_defense_parameters_are_config_errors(name, params):
    with pytest.raises(ConfigError):
        DEFENSES.build(name, **params)


@pytest.mark.parametrize("name", ["at", "trades", "afsl"])
def test_adversarial_defenses_train_against_pgd_10_of_2_255(name):
    defense = DEFENSES.build(name)
    assert (defense.steps, defense.step_size, defense.eps) == (10, pytest.approx(2 / 255), pytest.approx(EPS))


# ------------------------------------------------------------------ AFSL's similarity variants (L_asl)


def test_similarity_closed_forms_on_hand_made_features():
    z, z_adv = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    assert similarity_loss(z, z_adv).item() == pytest.approx(1.0)  # 1 - cos(90 deg)
    u, u_adv = 64 * F.normalize(z, dim=1), 64 * F.normalize(z_adv, dim=1)
    assert head_similarity_loss(u, u_adv).item() == pytest.approx(64**2 * 1.0)  # s^2 (1 - cos)
    assert head_similarity_loss(torch.tensor([[3.0, 0.0]]), torch.tensor([[0.0, 4.0]])).item() == \
        pytest.approx(12.5)  # 0.5 |(3, -4)|^2
    # two samples: 1 - cos = (1, 0), margins move by (3, -1): 0.5 + 0.5 * (9 + 1) / 2
    z2, z2_adv = torch.tensor([[1.0, 0.0], [1.0, 1.0]]), torch.tensor([[0.0, 1.0], [2.0, 2.0]])
    m, m_adv = torch.tensor([2.0, 0.0]), torch.tensor([-1.0, 1.0])
    assert margin_similarity_loss(z2, z2_adv, m, m_adv).item() == pytest.approx(0.5 + 2.5)
    assert margin_similarity_loss(z, z_adv, torch.tensor([2.0]), torch.tensor([2.0])).item() == \
        pytest.approx(1.0)  # no margin change: the feature term alone


def test_head_similarity_on_a_cosine_head_is_s_squared_times_the_feature_term():
    model = tiny_model(Head.COSINE)
    torch.manual_seed(2)
    z, z_adv = torch.randn(6, model.feature_dim) * 3, torch.randn(6, model.feature_dim)
    head_term = AFSL(similarity=Similarity.HEAD).similarity_term(model, z, z_adv)
    assert head_term.item() == pytest.approx(64**2 * similarity_loss(z, z_adv).item(), rel=1e-4)
    assert AFSL().similarity_term(model, z, z_adv).item() == pytest.approx(similarity_loss(z, z_adv).item())


@pytest.mark.parametrize("head", list(Head))
def test_margin_similarity_uses_the_raw_head_margin(head):
    model = tiny_model(head)
    model.threshold.fill_(0.7)  # the calibrated threshold plays no part in training terms
    torch.manual_seed(2)
    z, z_adv = torch.randn(6, model.feature_dim), torch.randn(6, model.feature_dim)
    logits, logits_adv = model.head(z), model.head(z_adv)
    m, m_adv = logits[:, 1] - logits[:, 0], logits_adv[:, 1] - logits_adv[:, 0]
    if head is Head.COSINE:  # the paper's head: margin = s * cos(z, w)
        torch.testing.assert_close(m, 64 * F.cosine_similarity(z, model.head.weight, dim=1))
    torch.testing.assert_close(head_margin(model, z), m)
    expected = similarity_loss(z, z_adv) + 0.5 * ((m - m_adv) ** 2).mean()
    got = AFSL(similarity="margin").similarity_term(model, z, z_adv)
    assert got.item() == pytest.approx(expected.item(), rel=1e-5)


def test_a_bad_similarity_is_rejected_at_build_time():
    with pytest.raises(ValueError, match="nope"):
        AFSL(similarity="nope")
    with pytest.raises(ConfigError, match="similarity|nope"):
        DEFENSES.build("afsl", similarity="nope")


def hand_asl(similarity: Similarity, model, z: torch.Tensor, z_adv: torch.Tensor) -> float:
    """L_asl of each similarity, written out per sample (no shared helper)."""
    total = 0.0
    for a, b in zip(z.detach().double(), z_adv.detach().double()):
        one_minus_cos = 1 - float(a @ b / (a.norm() * b.norm()))
        if similarity is Similarity.FEATURE:
            total += one_minus_cos
        elif similarity is Similarity.HEAD:
            if model.head_kind is Head.LINEAR:
                total += 0.5 * float(((a - b) ** 2).sum())
            else:
                total += 64**2 * one_minus_cos  # 0.5 |s a/|a| - s b/|b||^2 = s^2 (1 - cos)
        else:
            la, lb = model.head(a[None].float()).detach()[0], model.head(b[None].float()).detach()[0]
            total += one_minus_cos + 0.5 * float((la[1] - la[0]) - (lb[1] - lb[0])) ** 2
    return total / len(z)


@pytest.mark.parametrize("head", list(Head))
@pytest.mark.parametrize("similarity", list(Similarity))
def test_afsl_trains_with_every_similarity_on_every_head(similarity, head):
    defense, batch = AFSL(similarity=similarity, steps=1), tiny_batch()
    model = tiny_model(head)  # eval: BN fixed, so the hand computation sees the same features
    torch.manual_seed(7)
    loss, logs = defense.loss(model, batch, TrainContext(prior_fake=0.6))
    loss.backward()
    assert torch.isfinite(loss) and {"dcl", "asl", "srl"} <= set(logs)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    assert sum(p.grad.abs().sum() for p in model.body.parameters()) > 0
    torch.manual_seed(7)
    x_adv = defense.adversarial_examples(model, batch.x, batch.y)
    expected = hand_asl(similarity, model, model.embed(batch.x), model.embed(x_adv))
    assert logs["asl"] == pytest.approx(expected, rel=1e-3, abs=1e-6) and expected > 0


def test_trades_kl_has_finite_gradients_where_the_clean_softmax_underflows():
    """A logit gap of 200 makes float32's softmax exactly 0; d/dp [p log p] is then -inf and, through the
    softmax, NaN (meso4 + TRADES, seed 1, epoch 6 on the embedded set). The KL in log space stays finite."""
    from afsl_bench.defenses.trades import kl_clean_adv

    clean = torch.tensor([[0.0, 200.0], [3.0, -1.0]], requires_grad=True)
    adv = torch.tensor([[0.0, 1.0], [0.5, 0.5]], requires_grad=True)
    loss = kl_clean_adv(clean, adv)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(clean.grad).all() and torch.isfinite(adv.grad).all()
    p, q = torch.softmax(clean.detach(), 1), torch.softmax(adv.detach(), 1)
    expected = (p * (torch.log(p.clamp_min(1e-45)) - torch.log(q))).where(p > 0, torch.zeros(())).sum(1).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
