"""The detectors of the literature: native resolution, input gradients, ``embed()`` shapes, both
heads, weights files and offline pretrained weights. The image contract over the whole registry is in
tests/test_detectors.py; the heavy networks get one forward + backward each at their native resolution."""

from __future__ import annotations

import logging
import socket

import huggingface_hub.constants
import pytest
import timm
import torch
import torch.nn.functional as F

from afsl_bench.core.errors import ConfigError
from afsl_bench.detectors import DETECTORS, Head
from afsl_bench.detectors.cnn_gru import cudnn_enabled
from afsl_bench.detectors.weights import load_state

pytestmark = pytest.mark.usefixtures("one_thread")

#: name -> (documented embed() dimension, native input size)
IMAGE = {
    "xception": (2048, 299),
    "efficientnet-b4": (1792, 380),
    "resnet50": (2048, 224),
    "mesoinception4": (16, 256),
}
#: cnn-gru at its defaults: a bidirectional GRU of 128 units over tiny-cnn frames (64 px native)
VIDEO = {"cnn-gru": (256, 64), "r3d-18": (512, 112), "r2plus1d-18": (512, 112)}
ALL = {**IMAGE, **VIDEO}
PRETRAINED = ["xception", "efficientnet-b4", "resnet50", "r3d-18", "r2plus1d-18"]
FRAMES = 4


def build(name: str, seed: int = 0, **params) -> torch.nn.Module:
    torch.manual_seed(seed)
    return DETECTORS.build(name, **params).eval()


def batch(model, size: int, n: int = 2, frames: int = FRAMES) -> torch.Tensor:
    torch.manual_seed(1)
    shape = (n, frames, 3, size, size) if model.takes_clips else (n, 3, size, size)
    return torch.rand(shape)


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No network and empty weight caches: a pretrained download fails as on an offline machine."""

    def refuse(*args, **kwargs):
        raise OSError("network disabled in tests")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


@pytest.mark.parametrize("name", ALL)
def test_registered_with_native_size_and_input_kind(name):
    model = build(name)
    assert model.input_size == ALL[name][1]
    assert model.takes_clips == (name in VIDEO)


@pytest.mark.parametrize("name", ALL)
def test_native_batch_gives_finite_logits_and_input_gradients(name):
    model = build(name)
    x = batch(model, model.input_size).requires_grad_()
    logits = model(x)
    assert logits.shape == (2, 2) and torch.isfinite(logits).all()
    logits[:, 1].sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("head", list(Head))
def test_embed_has_the_documented_shape_and_feeds_the_head(name, head):
    model = build(name, head=head, scale=5.0)
    x = batch(model, 64, n=3, frames=2)
    z, logits = model.embed(x), model(x)
    assert z.shape == (3, ALL[name][0]) == (3, model.feature_dim)
    torch.testing.assert_close(model.logits_from_embedding(z), logits)
    if head is not Head.LINEAR:  # s * cos(z, w_c), bounded by the scale
        cosines = 5.0 * F.normalize(z, dim=1) @ F.normalize(model.head.weight, dim=1).T
        # the paper's cosine head: one vector, logits (0, s cos); cosine-pair: one vector per class
        expected = torch.cat([torch.zeros_like(cosines), cosines], 1) if head is Head.COSINE else cosines
        torch.testing.assert_close(logits, expected, atol=1e-5, rtol=1e-5)
        assert logits.abs().max() <= 5.0 + 1e-5


@pytest.mark.parametrize("name", ALL)
def test_a_saved_state_dict_loads_back_through_the_weights_parameter(name, tmp_path, caplog):
    model = build(name, head=Head.COSINE)
    model.threshold.fill_(0.25)
    torch.save(model.state_dict(), tmp_path / "w.pt")
    with caplog.at_level(logging.WARNING):
        loaded = build(name, seed=1, head=Head.COSINE, weights=str(tmp_path / "w.pt"))
    x = batch(model, 64, frames=2)
    torch.testing.assert_close(loaded(x), model(x), atol=0, rtol=0)
    assert not caplog.records  # every key matched: nothing to report


@pytest.mark.parametrize("name", ALL)
def test_a_missing_weights_file_is_a_config_error_naming_it(name, tmp_path):
    with pytest.raises(ConfigError, match=r"not found: .*nowhere\.pt"):
        DETECTORS.build(name, weights=str(tmp_path / "nowhere.pt"))


@pytest.mark.parametrize("name", PRETRAINED)
def test_pretrained_weights_offline_are_a_config_error_with_the_fix(name, offline):
    with pytest.raises(
        ConfigError, match=r"pretrained weights for .* need internet.*--set detector\.weights="
    ):
        DETECTORS.build(name, pretrained=True)


def test_cnn_gru_pretrained_backbone_offline_is_the_same_config_error(offline):
    with pytest.raises(ConfigError, match=r"pretrained weights for timm 'resnet50' need internet"):
        DETECTORS.build("cnn-gru", backbone="resnet50", pretrained=True)


def test_a_bare_timm_backbone_checkpoint_loads_into_the_backbone_and_reports_the_rest(caplog):
    torch.manual_seed(3)
    imagenet = timm.create_model("resnet50").eval()  # as downloaded elsewhere: with its 1000-class fc
    model = build("resnet50")
    with caplog.at_level(logging.WARNING):
        match = load_state(model, imagenet.state_dict(), "resnet50.pth")
    assert set(match.missing) == {"threshold", "head.weight", "head.bias"}
    assert set(match.unexpected) == {"fc.weight", "fc.bias"}
    assert "head.weight" in caplog.text and "fc.weight" in caplog.text
    x = torch.rand(1, 3, 64, 64)
    expected = imagenet.forward_head(imagenet.forward_features((x - model.mean) / model.std), pre_logits=True)
    torch.testing.assert_close(model.embed(x), expected)


def test_weights_of_another_shape_are_a_config_error(tmp_path):
    torch.save(build("tiny-cnn").state_dict(), tmp_path / "tiny.pt")
    with pytest.raises(ConfigError, match="shapes differ"):
        DETECTORS.build("mesoinception4", weights=str(tmp_path / "tiny.pt"))


@pytest.mark.parametrize(
    ("content", "message"),
    [({"foo": torch.zeros(1)}, "none of its 1 tensors match"), ([1, 2], "hold no state_dict"),
     (torch.nn.Linear(2, 2), r"weights_only=True")],
)  # fmt: skip
def test_unusable_weights_files_are_config_errors(content, message, tmp_path):
    torch.save(content, tmp_path / "w.pt")
    with pytest.raises(ConfigError, match=message):
        DETECTORS.build("mesoinception4", weights=str(tmp_path / "w.pt"))


def test_an_afsl_bench_checkpoint_wrapping_the_state_dict_loads(tmp_path):
    model = build("mesoinception4")
    torch.save({"state_dict": model.state_dict(), "meta": {"epochs": 1}}, tmp_path / "model.pt")
    loaded = build("mesoinception4", seed=1, weights=str(tmp_path / "model.pt"))
    x = torch.rand(2, 3, 64, 64)
    torch.testing.assert_close(loaded(x), model(x), atol=0, rtol=0)


def test_mesoinception4_has_the_papers_parameter_count():
    model = build("mesoinception4")
    body = sum(p.numel() for name, p in model.named_parameters() if not name.startswith("head."))
    assert (
        body + 16 + 1 == 28_615
    )  # Afchar et al. 2018, Section 3.2, with their single-unit sigmoid classifier


def test_cnn_gru_mean_pooling_is_the_average_of_the_frame_features():
    model = build("cnn-gru", temporal="mean")
    x = batch(model, 64)
    frames = model.backbone.embed(x.flatten(0, 1)).view(2, FRAMES, -1)
    torch.testing.assert_close(model.embed(x), frames.mean(dim=1))


def test_cnn_gru_sees_the_order_of_the_frames():
    model = build("cnn-gru")
    x = batch(model, 64)
    assert not torch.allclose(model(x), model(x.flip(1)))


@pytest.mark.parametrize("name", VIDEO)
def test_video_detectors_refuse_single_frames_clearly(name):
    with pytest.raises(ValueError, match=r"clips \[N, T, 3, H, W\]"):
        build(name)(torch.rand(2, 3, 64, 64))


@pytest.mark.parametrize(
    ("params", "message"),
    [({"backbone": "resnet18"}, "cnn-gru backbone: unknown detector"), ({"backbone": "r3d-18"}, "video detector"),
     ({"backbone": "tiny-cnn", "pretrained": True}, "has no pretrained weights"), ({"hidden": 0}, "hidden")],
)  # fmt: skip
def test_bad_cnn_gru_parameters_are_config_errors(params, message):
    with pytest.raises(ConfigError, match=message):
        DETECTORS.build("cnn-gru", **params)


def test_the_gru_switches_cudnn_off_for_eval_gradients_and_keeps_its_other_flags(monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", True)
    with cudnn_enabled(False):
        assert not torch.backends.cudnn.enabled and torch.backends.cudnn.deterministic
    with cudnn_enabled(True):
        assert torch.backends.cudnn.enabled
    assert torch.backends.cudnn.enabled and torch.backends.cudnn.deterministic
