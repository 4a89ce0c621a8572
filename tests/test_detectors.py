"""Contract tests over every registered detector: shapes, gradients, heads, normalisation, threshold."""

from __future__ import annotations

import typing

import pytest
import torch
import torch.nn.functional as F

from afsl_bench.core.errors import ConfigError
from afsl_bench.detectors import DETECTORS, Head
from afsl_bench.detectors.base import CosineHead, CosinePairHead, make_head


def takes_clips(name: str) -> bool:
    """From the factory's return annotation, without building; video detectors: test_real_detectors.py."""
    return getattr(typing.get_type_hints(DETECTORS.get(name).build).get("return"), "takes_clips", False)


NAMES = [name for name in DETECTORS.names() if not takes_clips(name)]  # image detectors: [N, 3, H, W]


pytestmark = pytest.mark.usefixtures("one_thread")


def build(name: str, **params) -> torch.nn.Module:
    torch.manual_seed(0)
    return DETECTORS.build(name, **params).eval()


def test_the_three_detectors_are_registered():
    assert {"tiny-cnn", "meso4", "resnet"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("head", list(Head))
def test_two_finite_logits_at_64_px(name, head):
    logits = build(name, head=head)(torch.rand(3, 3, 64, 64))
    assert logits.shape == (3, 2)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("name", NAMES)
def test_native_and_other_resolutions(name):
    model = build(name)
    for size in {model.input_size, 48, 96}:
        assert model(torch.rand(2, 3, size, size)).shape == (2, 2), size


@pytest.mark.parametrize("name", NAMES)
def test_gradients_reach_the_input(name):
    model = build(name)
    x = torch.rand(2, 3, 64, 64, requires_grad=True)
    grad, = torch.autograd.grad(model(x)[:, 1].sum(), x)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("head", list(Head))
def test_embed_gives_the_feature_the_head_reads(name, head):
    model = build(name, head=head)
    x = torch.rand(3, 3, 64, 64)
    z = model.embed(x)
    assert z.shape == (3, model.feature_dim)
    torch.testing.assert_close(model.logits_from_embedding(z), model(x))


def test_the_three_heads():
    assert [str(h) for h in Head] == ["linear", "cosine", "cosine-pair"]


@pytest.mark.parametrize("name", NAMES)
def test_cosine_head_is_the_papers_one_vector_head_bounded_by_scale(name):
    """logits (0, s * cos(z, w)) with ONE weight vector w: the margin lies in [-s, s]."""
    model = build(name, head=Head.COSINE, scale=5.0)
    assert model.head.weight.shape == (1, model.feature_dim)
    x = torch.rand(4, 3, 64, 64) * 3 - 1  # out-of-range inputs give large features; cosines stay bounded
    z, logits = model.embed(x), model(x)
    expected = torch.stack([torch.zeros(4), 5.0 * F.cosine_similarity(z, model.head.weight, dim=1)], dim=1)
    torch.testing.assert_close(logits, expected, atol=1e-5, rtol=1e-5)
    assert (logits[:, 1] - logits[:, 0]).abs().max() <= 5.0 + 1e-5


@pytest.mark.parametrize("name", NAMES)
def test_cosine_pair_head_is_scaled_cosine_per_class_bounded_by_twice_the_scale(name):
    model = build(name, head=Head.COSINE_PAIR, scale=5.0)
    assert model.head.weight.shape == (2, model.feature_dim)
    x = torch.rand(4, 3, 64, 64) * 3 - 1
    z, logits = model.embed(x), model(x)
    expected = 5.0 * torch.stack([F.cosine_similarity(z, w[None], dim=1) for w in model.head.weight], dim=1)
    torch.testing.assert_close(logits, expected, atol=1e-5, rtol=1e-5)
    assert logits.abs().max() <= 5.0 + 1e-5 and (logits[:, 1] - logits[:, 0]).abs().max() <= 10.0 + 1e-5


def test_cosine_head_margin_spans_minus_s_to_s_with_a_zero_real_logit():
    torch.manual_seed(0)
    head = CosineHead(8, scale=64.0)
    z = torch.randn(500, 8) * 10
    logits = head(z)
    assert logits.shape == (500, 2) and torch.equal(logits[:, 0], torch.zeros(500))
    assert logits[:, 1].abs().max() <= 64.0 + 1e-4
    w = head.weight.detach()
    parallel = head(torch.cat([3 * w, -0.5 * w]))
    torch.testing.assert_close(parallel[:, 1], torch.tensor([64.0, -64.0]), atol=1e-3, rtol=0)


def test_cosine_pair_head_margin_reaches_twice_the_scale():
    torch.manual_seed(0)
    head = CosinePairHead(8, scale=64.0)
    logits = head(torch.randn(500, 8) * 10)
    assert (logits[:, 1] - logits[:, 0]).abs().max() <= 128.0 + 1e-4
    with torch.no_grad():
        head.weight.copy_(torch.zeros(2, 8))
        head.weight[0, 0], head.weight[1, 0] = -1.0, 2.0  # opposite class vectors
    logits = head(torch.tensor([[4.0] + [0.0] * 7]))
    assert (logits[:, 1] - logits[:, 0]).item() == pytest.approx(128.0, abs=1e-3)


@pytest.mark.parametrize("name", ["tiny-cnn", "meso4"])
@pytest.mark.parametrize("head", list(Head))
def test_head_input_is_what_the_head_reads_in_its_scale(name, head):
    model = build(name, head=head, scale=7.0)
    z = model.embed(torch.rand(3, 3, 32, 32)) * 5
    u = model.head_input(z)
    if head is Head.LINEAR:
        assert torch.equal(u, z)
    else:
        torch.testing.assert_close(u.norm(dim=1), torch.full((3,), 7.0))
        torch.testing.assert_close(F.cosine_similarity(u, z, dim=1), torch.ones(3))
        torch.testing.assert_close(model.head(u), model.head(z), atol=1e-4, rtol=1e-5)  # direction only


@pytest.mark.parametrize("head", [Head.COSINE, Head.COSINE_PAIR, "cosine", "cosine-pair"])
@pytest.mark.parametrize("scale", [0.0, -1.0])
def test_cosine_heads_reject_a_non_positive_scale(head, scale):
    with pytest.raises(ValueError, match="scale"):
        make_head(head, 8, scale)
    with pytest.raises(ConfigError, match="scale"):
        DETECTORS.build("tiny-cnn", width=2, head=head, scale=scale)


def test_a_linear_head_ignores_the_scale():
    assert isinstance(make_head("linear", 8, 0.0), torch.nn.Linear)


def test_tiny_cnn_takes_the_head_as_a_string():
    model = build("tiny-cnn", width=4, head="cosine-pair")
    assert model.head_kind is Head.COSINE_PAIR and isinstance(model.head, CosinePairHead)
    assert model(torch.rand(2, 3, 16, 16)).shape == (2, 2)
    assert isinstance(build("tiny-cnn", width=4, head="cosine").head, CosineHead)


@pytest.mark.parametrize("name", NAMES)
def test_normalisation_lives_in_saved_buffers(name):
    state = build(name).state_dict()
    assert state["mean"].shape == state["std"].shape == (1, 3, 1, 1)
    assert "threshold" in state


@pytest.mark.parametrize("name", NAMES)
def test_threshold_shifts_the_margin_exactly(name):
    model = build(name)
    x = torch.rand(6, 3, 64, 64)
    before = model(x)
    model.threshold.fill_(0.3)
    after = model(x)
    torch.testing.assert_close(after[:, 1] - after[:, 0], before[:, 1] - before[:, 0] - 0.3)
    assert torch.equal(after.argmax(1), (before[:, 1] - before[:, 0] > 0.3).long())


def test_meso4_has_the_papers_parameter_count():
    model = build("meso4")
    body = sum(p.numel() for name, p in model.named_parameters() if not name.startswith("head."))
    assert body + 16 + 1 == 27_977  # Afchar et al. 2018, Table 1, with their single-unit sigmoid classifier


def test_tiny_cnn_is_tiny():
    assert 50_000 <= sum(p.numel() for p in build("tiny-cnn").parameters()) <= 100_000


@pytest.mark.parametrize(("name", "params"), [("resnet", {"depth": 9}), ("tiny-cnn", {"width": 0}),
                                               ("meso4", {"dropout": 1.0})])
def test_bad_parameters_are_config_errors(name, params):
    with pytest.raises(ConfigError):
        DETECTORS.build(name, **params)
