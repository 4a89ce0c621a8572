"""The timm ImageNet backbones as detectors: ``xception``, ``efficientnet-b4``, ``resnet34`` and ``resnet50``,
one table.

timm (https://github.com/huggingface/pytorch-image-models) builds the network with its classifier removed
(``num_classes=0``), so it returns the globally average-pooled feature: that pooled vector is the feature z,
and the afsl-bench head (linear or cosine) reads it. Normalisation uses the mean / std of the model's timm
``pretrained_cfg`` (the statistics its ImageNet weights were trained with), as buffers inside the model.
The global pooling makes every backbone resolution-agnostic: ``input_size`` is the native resolution, but
any input of about 32 px or more works (the runner feeds images at the data set's resolution).

Each row of ``MODELS`` becomes a ``TimmDetector`` subclass and a registered config with the parameters
``head``, ``scale``, ``weights`` (a local state_dict file, the whole detector's or timm's backbone) and
``pretrained`` (timm's ImageNet weights, needs internet). The rows:

- ``xception``: Xception (Chollet, CVPR 2017), the detector baseline of FaceForensics++ (Roessler et al.,
  ICCV 2019, https://arxiv.org/abs/1901.08971). timm's ``legacy_xception`` is the network FaceForensics++
  trained: Cadene's ``pretrainedmodels`` port of the original Keras Xception and its ImageNet weights
  (timm's ``xception41`` / ``xception65`` are the different "aligned" Xception of DeepLab v3+). Native input
  299 x 299, normalised with mean = std = 0.5 per channel (timm's pretrained_cfg, as in FaceForensics++'s
  code). z is the 2048-channel pooled output of the exit flow (after its final ReLU, so z >= 0).
- ``efficientnet-b4``: EfficientNet-B4 (Tan & Le, ICML 2019), the backbone of the strongest FaceForensics++
  / DFDC image detectors (Bonettini et al., ICPR 2020, https://arxiv.org/abs/2004.07676) and of
  DeepfakeBench. timm's ``efficientnet_b4``, ImageNet normalisation. Native input 380 x 380, the B4
  resolution of the paper (Table 1 scaling); timm's own weights were trained at 320 and tested at 384,
  DeepfakeBench trains it at 256: all work, as the network ends in global average pooling. z is the
  1792-channel pooled output of the head convolution (after SiLU).
- ``resnet34``: ResNet-34 (He et al., CVPR 2016), DeepfakeBench's ResNet baseline: timm's ``resnet34``
  (basic blocks, torchvision's layer names), ImageNet normalisation, native input 224 x 224. z is the
  512-channel pooled output of the last stage (after ReLU).
- ``resnet50``: ResNet-50 (He et al., CVPR 2016), the generic ImageNet backbone of deepfake-detection
  baselines. timm's ``resnet50`` (bottleneck blocks), ImageNet normalisation, native input 224 x 224. z is
  the 2048-channel pooled output of the last stage (after ReLU).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from afsl_bench.core.registry import Buildable, OmitAtDefault
from afsl_bench.detectors.base import DETECTORS, Detector, Head
from afsl_bench.detectors.weights import Weights, build_with_weights, pretrained_download

#: the second paragraph of every config's docstring
WEIGHTS_DOC = (
    "``weights``: a local state_dict file (the whole detector's or timm's backbone) or ``SOURCE:PATH`` (a\n"
    "published checkpoint, detectors/sources/); ``pretrained``: timm's ImageNet weights (needs internet)."
)


@dataclass(frozen=True)
class TimmModel:
    """One row of the table: what differs between the timm detectors."""

    #: the registered name (``--detector``)
    name: str
    #: the model name ``timm.create_model`` takes
    timm_name: str
    #: the native input resolution (square side, pixels): ``Detector.input_size``
    input_size: int
    #: the detector class's name (``type(model).__name__``)
    class_name: str
    #: the paper: its title word, short citation and link
    title: str
    citation: str
    link: str
    #: what the model is in this benchmark, or "" (the config docstring's summary)
    role: str
    #: backbone parameters in millions and the size of the feature z (documentation: the class docstring)
    million_params: float
    feature_dim: int

    @property
    def summary(self) -> str:
        """The config docstring's first paragraph (``afsl-bench list detectors``)."""
        role = f"{self.role}, " if self.role else ""
        return f"{self.title} ({self.citation}, {self.link}), {role}{self.input_size} px."

    @property
    def class_doc(self) -> str:
        return (
            f"timm ``{self.timm_name}``, {self.million_params} M backbone parameters; "
            f"``embed()`` -> [N, {self.feature_dim}]."
        )


MODELS = (
    TimmModel(
        name="xception",
        timm_name="legacy_xception",
        input_size=299,
        class_name="Xception",
        title="Xception",
        citation="Chollet, CVPR 2017",
        link="https://arxiv.org/abs/1610.02357",
        role="the FaceForensics++ baseline",
        million_params=20.8,
        feature_dim=2048,
    ),
    TimmModel(
        name="efficientnet-b4",
        timm_name="efficientnet_b4",
        input_size=380,
        class_name="EfficientNetB4",
        title="EfficientNet-B4",
        citation="Tan & Le, ICML 2019",
        link="https://arxiv.org/abs/1905.11946",
        role="",
        million_params=17.5,
        feature_dim=1792,
    ),
    TimmModel(
        name="resnet34",
        timm_name="resnet34",
        input_size=224,
        class_name="ResNet34",
        title="ResNet-34",
        citation="He et al., CVPR 2016",
        link="https://arxiv.org/abs/1512.03385",
        role="DeepfakeBench's ResNet baseline",
        million_params=21.3,
        feature_dim=512,
    ),
    TimmModel(
        name="resnet50",
        timm_name="resnet50",
        input_size=224,
        class_name="ResNet50",
        title="ResNet-50",
        citation="He et al., CVPR 2016",
        link="https://arxiv.org/abs/1512.03385",
        role="ImageNet backbone",
        million_params=23.5,
        feature_dim=2048,
    ),
)


def create_backbone(name: str, pretrained: bool) -> nn.Module:
    """timm model ``name`` without its classifier; ``pretrained`` downloads its weights (needs internet)."""
    with pretrained_download(f"timm '{name}'", "timm / huggingface"):
        import timm  # here: timm (and the torchvision it imports) would slow every start of the CLI

        return timm.create_model(name, pretrained=pretrained, num_classes=0)


class TimmDetector(Detector):
    """Subclasses set ``timm_name`` and ``input_size``; the feature z is the backbone's pooled output."""

    timm_name: str = ""

    def __init__(
        self,
        head: Head | str = Head.LINEAR,
        scale: float = 64.0,
        pretrained: bool = False,
        timm_name: str = "",
    ) -> None:
        backbone = create_backbone(timm_name or self.timm_name, pretrained)
        cfg = backbone.pretrained_cfg
        super().__init__(backbone.num_features, head, scale, mean=tuple(cfg["mean"]), std=tuple(cfg["std"]))
        self.backbone = backbone

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)


class Padding(StrEnum):
    """``efficientnet-b4``'s padding: ``pytorch`` (timm's ``efficientnet_b4``, symmetric) or ``deepfakebench``
    (the network DeepfakeBench trains, for its released weights: below)."""

    PYTORCH = "pytorch"
    DEEPFAKEBENCH = "deepfakebench"


class StaticPadConv2d(nn.Conv2d):
    """A convolution after a fixed zero padding (left, right, top, bottom), whatever the input size."""

    def __init__(self, conv: nn.Conv2d, pads: tuple[int, int, int, int]) -> None:
        super().__init__(
            conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, 0, conv.dilation, conv.groups,
            conv.bias is not None,
        )  # fmt: skip
        self.pads = pads
        self.weight = conv.weight
        self.bias = conv.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(F.pad(x, self.pads))


def static_same_pads(size: int, kernel: int, stride: int) -> tuple[int, int, int, int]:
    """TensorFlow "same" padding for an input of ``size`` (efficientnet_pytorch's Conv2dStaticSamePadding)."""
    total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    return (total // 2, total - total // 2, total // 2, total - total // 2)


#: efficientnet_pytorch builds B4's static paddings for this input size
EFFICIENTNET_PYTORCH_SIZE = 380


def deepfakebench_efficientnet(
    cls: type[TimmDetector], head: Head | str, scale: float, pretrained: bool
) -> TimmDetector:
    """EfficientNet-B4 as DeepfakeBench builds it (training/networks/efficientnetb4.py): efficientnet_pytorch's
    network (Tan & Le's TensorFlow original: BN eps 1e-3, "same" padding) with the padding fixed for a 380 px
    input at construction, and its stem replaced by a plain stride-2 convolution without padding. Here:
    timm's ``tf_efficientnet_b4`` (the same layers), its stem unpadded, and each strided depthwise
    convolution padded as efficientnet_pytorch computed it for the input size it assumed there (190 px after
    its own stem, then halved at each strided stage), which differs from "same" padding of DeepfakeBench's
    actual 256 px inputs."""
    if pretrained:
        raise ValueError(
            "padding=deepfakebench builds DeepfakeBench's network for its weights: pass weights="
        )
    model = cls(head, scale, timm_name="tf_efficientnet_b4")
    backbone = model.backbone
    stem = backbone.conv_stem
    backbone.conv_stem = nn.Conv2d(stem.in_channels, stem.out_channels, 3, stride=2, padding=0, bias=False)
    size = math.ceil(EFFICIENTNET_PYTORCH_SIZE / 2)  # what efficientnet_pytorch assumed after its stem
    for stage in backbone.blocks:
        for block in stage:
            conv = block.conv_dw
            if conv.stride[0] > 1:
                block.conv_dw = StaticPadConv2d(
                    conv, static_same_pads(size, conv.kernel_size[0], conv.stride[0])
                )
                size = math.ceil(size / conv.stride[0])
    return model


def register(model: TimmModel) -> type[TimmDetector]:
    """The row's detector class and its registered config (``TimmConfig``); returns the class."""
    cls = type(
        model.class_name,
        (TimmDetector,),
        {
            "__doc__": model.class_doc,
            "__module__": __name__,
            "__qualname__": model.class_name,
            "timm_name": model.timm_name,
            "input_size": model.input_size,
        },
    )

    padded = model.name == "efficientnet-b4"  # the one row with a second padding scheme
    doc = f"{model.summary}\n\n{WEIGHTS_DOC}\n" + (
        "``padding``: pytorch, or deepfakebench (DeepfakeBench's network, for its weights).\n"
        if padded
        else ""
    )
    attributes = {"__doc__": doc, "__module__": __name__, "__qualname__": f"{model.class_name}Config"}
    config = type(f"{model.class_name}Config", (PaddedTimmConfig if padded else TimmConfig,), attributes)
    config.row, config.detector = model, cls
    DETECTORS.register(model.name)(dataclass(frozen=True)(config))
    return cls


@dataclass(frozen=True)
class TimmConfig(Buildable):
    """The parameters of a timm detector; each row of ``MODELS`` registers a subclass (``register``)."""

    head: Head = Head.LINEAR
    scale: float = 64.0
    weights: Weights = None
    pretrained: bool = False
    #: the row of ``MODELS`` and its detector class, set per registered subclass
    row: ClassVar[TimmModel]
    detector: ClassVar[type[TimmDetector]]

    def network(self) -> TimmDetector:
        return self.detector(self.head, self.scale, self.pretrained)

    def build(self) -> TimmDetector:
        return build_with_weights(self.network, self.weights, self.row.name, self.layout_params())

    def layout_params(self) -> dict[str, Any]:
        return {"head": self.head}


@dataclass(frozen=True)
class PaddedTimmConfig(TimmConfig):
    """A timm detector with a second padding scheme (efficientnet-b4: DeepfakeBench's network)."""

    padding: Annotated[Padding, OmitAtDefault()] = Padding.PYTORCH

    def network(self) -> TimmDetector:
        if Padding(self.padding) is Padding.PYTORCH:
            return super().network()
        return deepfakebench_efficientnet(self.detector, self.head, self.scale, self.pretrained)

    def layout_params(self) -> dict[str, Any]:
        return {"head": self.head, "padding": Padding(self.padding)}


# module attributes under their own names, so that the classes pickle by reference
Xception, EfficientNetB4, ResNet34, ResNet50 = (register(model) for model in MODELS)
