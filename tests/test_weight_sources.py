"""Published checkpoints by source: each test writes a state dict in the source's own layout
(its tensor names, its classifier, random values and batch-norm statistics), loads it through
``--set detector.weights=SOURCE:PATH`` and compares the logits with the source network's forward: timm's
``legacy_xception`` (FaceForensics++ and DeepfakeBench's Xception, layer for layer) and torchvision's
``resnet34`` where the source network itself runs here, and a restatement of DeepfakeBench's MesoNet
forwards (``training/networks/mesonet.py``: shared batch norms, bias-free convs, no ReLU in the
inception branches) on the file's own tensors where it does not. Also: strict errors that list unmatched
keys, the detector parameters a source needs, cell ids, and the conversion of a pickled whole model.
"""

from __future__ import annotations

import os
import sys
import types

import pytest
import timm
import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from typer.testing import CliRunner

from afsl_bench import load_detector
from afsl_bench.cli import app
from afsl_bench.core.errors import ConfigError
from afsl_bench.detectors import DETECTORS
from afsl_bench.detectors.sources.pickled import read_pickled_model
from afsl_bench.runner.plan import component_of

pytestmark = pytest.mark.usefixtures("one_thread")

#: the sources' input normalisation: mean = std = 0.5
HALF = 0.5


def randomised(module: nn.Module, seed: int) -> nn.Module:
    """Random weights and batch-norm statistics (a fresh network's BN is the identity, hiding errors)."""
    random_values(module.state_dict(), seed)
    return module.eval()


def random_values(state: dict[str, torch.Tensor], seed: int) -> dict[str, torch.Tensor]:
    """Fill a state dict in place, keeping activations in range so that the output depends on the input: weights
    of std 1 / sqrt(fan-in), batch-norm scales in [0.5, 1.5], running variances in [0.5, 2], small shifts."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, tensor in state.items():
            if not tensor.is_floating_point():
                continue
            if tensor.dim() > 1:
                tensor.normal_(0, tensor[0].numel() ** -0.5)
            elif name.endswith("running_var"):
                tensor.uniform_(0.5, 2.0)
            elif name.endswith("weight"):
                tensor.uniform_(0.5, 1.5)
            else:  # biases and running means
                tensor.normal_(0, 0.1)
    return state


def invoke(*args: str):
    return CliRunner().invoke(app, list(args))


def images(size: int, n: int = 3) -> torch.Tensor:
    torch.manual_seed(7)
    return torch.rand(n, 3, size, size)


def save(state: dict[str, torch.Tensor], path) -> str:
    torch.save(state, path)
    return str(path)


def max_diff(ours: torch.Tensor, reference: torch.Tensor) -> float:
    """The largest logit difference; the reference's logits must differ between the batch's images (a
    random network whose output ignores its input would make any mapping look right)."""
    assert reference.std(0).min() > 1e-2 * reference.abs().max(), f"degenerate reference logits {reference}"
    return (ours - reference).abs().max().item()


# ------------------------------------------------------------------------------ Xception (timm runs it)


def legacy_xception() -> nn.Module:
    return randomised(timm.create_model("legacy_xception", num_classes=2), seed=0)


def deepfakebench_xception(source: nn.Module) -> dict[str, torch.Tensor]:
    """DeepfakeBench's ``XceptionDetector.state_dict()``: ``backbone.*``, ``last_linear`` (its fc) and the
    ``adjust_channel`` branch the detector builds but does not use."""
    state = {f"backbone.{k.replace('fc.', 'last_linear.')}": v for k, v in source.state_dict().items()}
    unused = nn.Sequential(nn.Conv2d(2048, 512, 1), nn.BatchNorm2d(512))
    state.update({f"backbone.adjust_channel.{k}": v for k, v in unused.state_dict().items()})
    return state


def test_deepfakebench_xception_gives_the_logits_of_the_source_network(tmp_path):
    source = legacy_xception()
    weights = save(deepfakebench_xception(source), tmp_path / "xception_best.pth")
    model = load_detector("xception", weights=f"deepfakebench:{weights}")
    x = images(96)
    with torch.no_grad():
        assert max_diff(model(x), source((x - HALF) / HALF)) < 1e-4


def test_a_named_source_lists_every_unmatched_key(tmp_path):
    state = deepfakebench_xception(legacy_xception())
    state["backbone.extra_branch.weight"] = torch.zeros(3)
    del state["backbone.block3.skipbn.running_var"]
    weights = save(state, tmp_path / "x.pth")
    with pytest.raises(ConfigError) as err:
        DETECTORS.build("xception", weights=f"deepfakebench:{weights}")
    message = str(err.value)
    assert "backbone.extra_branch.weight" in message  # in the file, no rule maps it
    assert "backbone.block3.skipbn.running_var" in message  # in the model, the file does not set it


def test_a_shape_that_differs_is_named_with_both_shapes(tmp_path):
    state = deepfakebench_xception(legacy_xception())
    state["backbone.last_linear.weight"] = torch.zeros(3, 2048)  # a three-class classifier
    with pytest.raises(ConfigError, match=r"head\.weight \(3, 2048\) vs \(2, 2048\)"):
        DETECTORS.build("xception", weights=f"deepfakebench:{save(state, tmp_path / 'x.pth')}")


def test_a_source_checkpoint_needs_the_linear_head_and_says_how(tmp_path):
    weights = save(deepfakebench_xception(legacy_xception()), tmp_path / "x.pth")
    with pytest.raises(ConfigError, match=r"needs detector\.head=linear .*--set detector\.head=linear"):
        DETECTORS.build("xception", head="cosine", weights=f"deepfakebench:{weights}")


# ------------------------------------------------------------------------------ ResNet-34 (torchvision runs it)


def test_deepfakebench_resnet34_gives_the_logits_of_torchvisions_network(tmp_path):
    source = randomised(torchvision.models.resnet34(num_classes=2), seed=1)
    trunk = nn.Sequential(*list(source.children())[:-2])  # DeepfakeBench's self.resnet
    state = {f"backbone.resnet.{k}": v for k, v in trunk.state_dict().items()}
    state.update({f"backbone.fc.{k}": v for k, v in source.fc.state_dict().items()})
    model = load_detector("resnet34", weights=f"deepfakebench:{save(state, tmp_path / 'r.pth')}")
    x = images(64)
    with torch.no_grad():
        assert max_diff(model(x), source((x - HALF) / HALF)) < 1e-4


# ------------------------------------------------------------------------------ EfficientNet-B4 (efficientnet_pytorch)


class DeepfakeBenchEfficientNet(nn.Module):
    """DeepfakeBench's EfficientNetB4 backbone (training/networks/efficientnetb4.py) from efficientnet_pytorch:
    its 380 px network with the stem replaced by an unpadded convolution, no classifier, then last_layer."""

    def __init__(self, efficientnet_pytorch) -> None:
        super().__init__()
        self.efficientnet = efficientnet_pytorch.EfficientNet.from_name("efficientnet-b4")
        self.efficientnet._conv_stem = nn.Conv2d(3, 48, kernel_size=3, stride=2, bias=False)
        self.efficientnet._fc = nn.Identity()
        self.last_layer = nn.Linear(1792, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.last_layer(F.adaptive_avg_pool2d(self.efficientnet.extract_features(x), 1).flatten(1))


def calibrated(module: nn.Module, x: torch.Tensor) -> nn.Module:
    """Batch-norm statistics measured on ``x`` (a deep random network with made-up statistics drifts to an
    output that ignores its input)."""
    for norm in module.modules():
        if isinstance(norm, nn.modules.batchnorm._BatchNorm):
            norm.reset_running_stats()
            norm.momentum = None  # the cumulative average over the calls
    with torch.no_grad():
        module.train()(x)
    return module.eval()


def test_deepfakebench_efficientnet_b4_gives_the_logits_of_efficientnet_pytorch(tmp_path):
    source = randomised(DeepfakeBenchEfficientNet(pytest.importorskip("efficientnet_pytorch")), seed=4)
    calibrated(source, (torch.rand(8, 3, 256, 256) - HALF) / HALF)
    state = {f"backbone.{k}": v for k, v in source.state_dict().items()}
    weights = save(state, tmp_path / "effnb4.pth")
    model = load_detector("efficientnet-b4", weights=f"deepfakebench:{weights}", padding="deepfakebench")
    x = images(256, n=2)  # DeepfakeBench's resolution: its paddings were fixed for 380 px, not for this
    with torch.no_grad():
        assert max_diff(model(x), source((x - HALF) / HALF)) < 1e-3


def test_efficientnet_b4_from_deepfakebench_asks_for_its_padding(tmp_path):
    with pytest.raises(ConfigError, match=r"--set detector\.padding=deepfakebench"):
        DETECTORS.build("efficientnet-b4", weights=f"deepfakebench:{save({}, tmp_path / 'e.pth')}")


# ------------------------------------------------------------------------------ MesoNet (restated forward)


def bn(x: torch.Tensor, s: dict[str, torch.Tensor], name: str) -> torch.Tensor:
    return F.batch_norm(
        x,
        s[f"{name}.running_mean"],
        s[f"{name}.running_var"],
        s[f"{name}.weight"],
        s[f"{name}.bias"],
        eps=1e-5,
    )


def meso_dense(x: torch.Tensor, s: dict[str, torch.Tensor]) -> torch.Tensor:
    x = F.leaky_relu(F.linear(x.flatten(1), s["fc1.weight"], s["fc1.bias"]), 0.1)
    return F.linear(x, s["fc2.weight"], s["fc2.bias"])


def deepfakebench_meso4_forward(s: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """DeepfakeBench's Meso4.forward in eval mode: bias-free convs, bn1 after conv1 and conv2, bn2 after conv3
    and conv4, max-pools 2, 2, 2, 4, dense 16 with leaky ReLU, fc2."""
    x = (x - HALF) / HALF
    for conv, norm, pool, pad in (("conv1", "bn1", 2, 1), ("conv2", "bn1", 2, 2), ("conv3", "bn2", 2, 2),
                                  ("conv4", "bn2", 4, 2)):  # fmt: skip
        x = F.max_pool2d(bn(F.relu(F.conv2d(x, s[f"{conv}.weight"], padding=pad)), s, norm), pool)
    return meso_dense(x, s)


def meso4_state() -> dict[str, torch.Tensor]:
    shapes = {"conv1": (8, 3, 3, 3), "conv2": (8, 8, 5, 5), "conv3": (16, 8, 5, 5), "conv4": (16, 16, 5, 5)}
    state = {f"{name}.weight": torch.empty(shape) for name, shape in shapes.items()}
    for norm, channels in (("bn1", 8), ("bn2", 16)):
        state |= {
            f"{norm}.{k}": torch.empty(channels) for k in ("weight", "bias", "running_mean", "running_var")
        }
        state[f"{norm}.num_batches_tracked"] = torch.tensor(100)
    state |= {"fc1.weight": torch.empty(16, 1024), "fc1.bias": torch.empty(16)}
    state |= {"fc2.weight": torch.empty(2, 16), "fc2.bias": torch.empty(2)}
    return state


def test_deepfakebench_meso4_gives_the_logits_of_its_forward(tmp_path):
    state = random_values(meso4_state(), seed=2)
    weights = save({f"backbone.{k}": v for k, v in state.items()}, tmp_path / "meso4.pth")
    model = load_detector("meso4", weights=f"deepfakebench:{weights}")
    x = images(256, n=2)
    with torch.no_grad():
        assert max_diff(model(x), deepfakebench_meso4_forward(state, x)) < 1e-4


def inception(x: torch.Tensor, s: dict[str, torch.Tensor], layer: str) -> torch.Tensor:
    """DeepfakeBench's InceptionLayer: four branches without activations, concatenated, BN, max-pool 2."""
    w = {
        k.removeprefix(f"Incption{layer}_"): v for k, v in s.items() if k.startswith(f"Incption{layer}_conv")
    }
    branches = [F.conv2d(x, w["conv1.weight"])]
    for branch, dilation in (("2", 1), ("3", 2), ("4", 3)):
        inner = F.conv2d(x, w[f"conv{branch}_1.weight"])
        branches.append(F.conv2d(inner, w[f"conv{branch}_2.weight"], padding=dilation, dilation=dilation))
    return F.max_pool2d(bn(torch.cat(branches, 1), s, f"Incption{layer}_bn"), 2)


def deepfakebench_mesoinception4_forward(s: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    x = inception(inception((x - HALF) / HALF, s, "1"), s, "2")
    x = F.max_pool2d(bn(F.relu(F.conv2d(x, s["conv1.weight"], padding=2)), s, "bn1"), 2)
    x = F.max_pool2d(bn(F.relu(F.conv2d(x, s["conv2.weight"], padding=2)), s, "bn1"), 4)
    return meso_dense(x, s)


def mesoinception4_state() -> dict[str, torch.Tensor]:
    state = {}
    for layer, c_in, (a, b, c, d) in (("1", 3, (1, 4, 4, 2)), ("2", 11, (2, 4, 4, 2))):
        state[f"Incption{layer}_conv1.weight"] = torch.empty(a, c_in, 1, 1)
        for branch, width in (("2", b), ("3", c), ("4", d)):
            state[f"Incption{layer}_conv{branch}_1.weight"] = torch.empty(width, c_in, 1, 1)
            state[f"Incption{layer}_conv{branch}_2.weight"] = torch.empty(width, width, 3, 3)
        state |= {f"Incption{layer}_bn.{k}": torch.empty(a + b + c + d)
                  for k in ("weight", "bias", "running_mean", "running_var")}  # fmt: skip
    state |= {"conv1.weight": torch.empty(16, 12, 5, 5), "conv2.weight": torch.empty(16, 16, 5, 5)}
    state |= {f"bn1.{k}": torch.empty(16) for k in ("weight", "bias", "running_mean", "running_var")}
    state |= {"fc1.weight": torch.empty(16, 1024), "fc1.bias": torch.empty(16)}
    return state | {"fc2.weight": torch.empty(2, 16), "fc2.bias": torch.empty(2)}


def test_deepfakebench_mesoinception4_gives_the_logits_of_its_forward(tmp_path):
    state = random_values(mesoinception4_state(), seed=3)
    weights = save({f"backbone.{k}": v for k, v in state.items()}, tmp_path / "mi4.pth")
    model = load_detector("mesoinception4", weights=f"deepfakebench:{weights}", branch_relu=False)
    x = images(256, n=2)
    with torch.no_grad():
        assert max_diff(model(x), deepfakebench_mesoinception4_forward(state, x)) < 1e-4


def test_mesoinception4_from_deepfakebench_asks_for_branch_relu_off(tmp_path):
    weights = save({f"backbone.{k}": v for k, v in mesoinception4_state().items()}, tmp_path / "mi4.pth")
    with pytest.raises(ConfigError, match=r"no ReLU.*--set detector\.branch_relu=false"):
        DETECTORS.build("mesoinception4", weights=f"deepfakebench:{weights}")


# ------------------------------------------------------------------------------ names, sources, cell ids


def test_an_unknown_source_prefix_lists_the_sources():
    with pytest.raises(ConfigError, match=r"unknown source 'deepfakebnch'.*deepfakebench, faceforensics"):
        DETECTORS.build("xception", weights="deepfakebnch:x.pth")


def test_a_source_without_a_layout_for_the_detector_says_which_it_has(tmp_path):
    with pytest.raises(
        ConfigError, match=r"'faceforensics' has no layout for detector 'meso4'; it has: xception"
    ):
        load_detector("meso4", weights=f"faceforensics:{tmp_path / 'x.pt'}")
    with pytest.raises(ConfigError, match=r"no layout for detector 'tiny-cnn'"):
        load_detector("tiny-cnn", weights=f"deepfakebench:{tmp_path / 'x.pt'}")


def test_weights_stay_out_of_the_cell_id_until_set_and_then_enter_with_the_files_content(tmp_path):
    assert "weights" not in component_of(DETECTORS, "meso4", {}).params  # ids from before the parameter
    weights = tmp_path / "meso4.pth"
    state = {f"backbone.{k}": v for k, v in random_values(meso4_state(), seed=2).items()}
    torch.save(state, weights)
    first = component_of(DETECTORS, "meso4", {"weights": f"deepfakebench:{weights}"})
    assert first.params["weights"] == f"deepfakebench:{weights}"
    state["backbone.fc2.bias"] = state["backbone.fc2.bias"] + 1
    torch.save(state, weights)  # the same path, other values: another model, another id
    second = component_of(DETECTORS, "meso4", {"weights": f"deepfakebench:{weights}"})
    assert first.params["weights_sha256"] != second.params["weights_sha256"]


# ------------------------------------------------------------------------------ FaceForensics++'s pickled model


@pytest.fixture
def faceforensics_pickle(tmp_path):
    """A whole TransferModel pickled as FaceForensics++ ships it: every class under ``network.``; the fake
    ``network`` package is gone from sys.modules before the test reads the file, as on a user's machine."""
    source = legacy_xception()
    source.last_linear = nn.Sequential(nn.Dropout(0.5), source.fc)  # trained with dropout
    source.fc = nn.Identity()
    package = types.ModuleType("network")
    models, xception = types.ModuleType("network.models"), types.ModuleType("network.xception")
    renamed = {}
    for module in source.modules():
        cls = type(module)
        if cls.__module__.startswith("timm."):
            if cls not in renamed:
                renamed[cls] = type(cls.__name__, (cls,), {"__module__": "network.xception"})
                setattr(xception, cls.__name__, renamed[cls])
            module.__class__ = renamed[cls]
    transfer = type("TransferModel", (nn.Module,), {"__module__": "network.models"})
    models.TransferModel = transfer
    wrapper = transfer()
    wrapper.model = source
    del source.fc
    modules = {"network": package, "network.models": models, "network.xception": xception}
    sys.modules.update(modules)
    try:
        torch.save(wrapper, tmp_path / "full_c23.p", _use_new_zipfile_serialization=False)  # 2019's format
    finally:
        for name in modules:
            del sys.modules[name]
    reference = legacy_xception()  # the same seed: the same values as the pickled model
    return tmp_path / "full_c23.p", reference


def test_faceforensics_pickle_converts_and_loads_with_the_source_logits(faceforensics_pickle, tmp_path):
    pickled, reference = faceforensics_pickle
    with pytest.raises(
        ConfigError, match=r"pickled whole models; convert it once: afsl-bench convert-weights"
    ):
        DETECTORS.build("xception", weights=f"faceforensics:{pickled}")
    result = invoke(
        "convert-weights", "faceforensics", str(pickled), str(tmp_path / "ff.pt"), "--allow-pickle"
    )
    assert result.exit_code == 0, result.output
    state = torch.load(tmp_path / "ff.pt", weights_only=True)
    assert "model.last_linear.1.weight" in state
    model = load_detector("xception", weights=f"faceforensics:{tmp_path / 'ff.pt'}")
    x = images(96)
    with torch.no_grad():
        assert max_diff(model(x), reference((x - HALF) / HALF)) < 1e-4
    assert "network" not in sys.modules  # nothing of the file's code was imported


def test_conversion_needs_the_explicit_flag_that_names_the_risk(faceforensics_pickle, tmp_path):
    pickled, _ = faceforensics_pickle
    result = invoke("convert-weights", "faceforensics", str(pickled), str(tmp_path / "ff.pt"))
    assert result.exit_code == 2
    assert "--allow-pickle" in result.output and "code" in result.output
    assert not (tmp_path / "ff.pt").exists()


class Payload:
    """What a malicious pickle does: call os.system when read."""

    def __reduce__(self):
        return os.system, ("echo pwned",)


@pytest.mark.parametrize("zipfile", [True, False], ids=["zip", "legacy"])
def test_a_pickle_naming_any_other_code_is_refused_by_name(tmp_path, zipfile):
    torch.save({"model": nn.Linear(2, 2), "payload": Payload()}, tmp_path / "bad.p",
               _use_new_zipfile_serialization=zipfile)  # fmt: skip
    with pytest.raises(ConfigError, match=r"names '(posix|os)\.system'.*refusing to unpickle it"):
        read_pickled_model(tmp_path / "bad.p", ("network.",))


def test_a_legacy_format_pickle_converts_too(tmp_path):
    torch.save(nn.Sequential(nn.Linear(2, 2)), tmp_path / "old.p", _use_new_zipfile_serialization=False)
    assert set(read_pickled_model(tmp_path / "old.p", ("network.",))) == {"0.weight", "0.bias"}
