"""Contract tests over every registered detector: shapes, gradients, heads, normalisation, threshold."""

from __future__ import annotations

import typing

import pytest
import torch
import torch.nn.functional as F

from afsl_bench.core.errors import ConfigError
from afsl_bench.detectors import DETECTORS, Head


def takes_clips(name: str) -> bool:
    """From the factory's return annotation, without building; video detectors: test_real_detectors.py."""
    return getattr(typing.get_type_hints(DETECTORS.get(name)).get("return"), "takes_clips", False)


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


@pytest.mark.parametrize("name", NAMES)
def test_cosine_head_is_scaled_cosine_and_bounded_by_scale(name):
    model = build(name, head=Head.COSINE, scale=5.0)
    x = torch.rand(4, 3, 64, 64) * 3 - 1  # out-of-range inputs give large features; cosines stay bounded
    z, logits = model.embed(x), model(x)
    expected = 5.0 * torch.stack([F.cosine_similarity(z, w[None], dim=1) for w in model.head.weight], dim=1)
    torch.testing.assert_close(logits, expected, atol=1e-5, rtol=1e-5)
    assert logits.abs().max() <= 5.0 + 1e-5


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
