"""DeepfakeBench's released detector weights (Yan et al., "DeepfakeBench: A Comprehensive Benchmark of
Deepfake Detection", NeurIPS 2023 Datasets and Benchmarks, https://github.com/SCLBD/DeepfakeBench).

Its trainer saves ``model.state_dict()`` of a detector whose network is ``self.backbone`` (keys
``backbone.*``; a ``module.`` prefix from DataParallel is dropped before mapping), with the network's own
two-logit classifier as the last layer (``last_linear`` / ``fc`` / ``fc2``; 0 = real, 1 = fake, as here).
Every detector config trains at 256 x 256 with mean = std = 0.5 per channel. The networks
(``training/networks/*.py``) and how they differ from afsl-bench's detectors:

- ``xception``: the FaceForensics++ Xception, layer for layer timm's ``legacy_xception`` (the same names);
  ``adjust_channel``, built but not used by the ``xception`` detector, is ignored.
- ``meso4``: convolutions without bias, and one batch norm shared by conv1 and conv2 and another by conv3
  and conv4 (``bn1``, ``bn2``): each shared norm is copied into both of afsl-bench's layers, the same
  function at evaluation. The last 4x4 max-pool equals afsl-bench's adaptive pool at 256 px.
- ``mesoinception4``: as meso4, and its inception branches have no ReLU between or after their convs:
  it needs ``detector.branch_relu=false``.
- ``resnet34``: torchvision's ResNet-34 without its classifier as ``backbone.resnet`` (an
  ``nn.Sequential`` of its children, so ``resnet.0`` is conv1 and ``resnet.4``-``7`` are layer1-4), then
  ``fc``; timm's ``resnet34`` has torchvision's names.

- ``efficientnet-b4``: ``efficientnet_pytorch``'s EfficientNet-B4 as ``backbone.efficientnet`` (its blocks one
  flat list ``_blocks.0``-``31``; timm numbers them by stage, 2, 4, 4, 6, 6, 8, 2 blocks), then
  ``last_layer``. Its convolutions pad TensorFlow-"same" style as computed for a 380 px input, and
  DeepfakeBench replaced its stem by a convolution without padding: it needs
  ``detector.padding=deepfakebench`` (detectors/timm_models.py rebuilds exactly that network from timm's
  ``tf_efficientnet_b4``).
"""

from __future__ import annotations

from afsl_bench.detectors.base import Head
from afsl_bench.detectors.sources.base import Layout, Source, register_source, rename

MEAN = STD = (0.5, 0.5, 0.5)
RESOLUTION = 256
LINEAR = {"head": (Head.LINEAR, "it carries a linear two-logit classifier")}
BN = r"(weight|bias|running_mean|running_var|num_batches_tracked)"

XCEPTION = Layout(
    detector="xception",
    network="Xception",
    renames=(
        rename(r"backbone\.last_linear\.(?:1\.)?(weight|bias)", r"head.\1"),
        rename(r"backbone\.(.+)", r"backbone.\1"),
    ),
    mean=MEAN, std=STD, input_size=RESOLUTION,
    ignored=(r"backbone\.adjust_channel\..+",),
    requires=LINEAR,
)  # fmt: skip

#: afsl-bench's Meso-4 body: conv, ReLU, BN, pool per layer (indices 0/2, 4/6, 8/10, 12/14), dense at 18
MESO4 = Layout(
    detector="meso4",
    network="Meso4",
    renames=(
        rename(r"backbone\.conv1\.weight", "body.0.weight"),
        rename(r"backbone\.conv2\.weight", "body.4.weight"),
        rename(r"backbone\.conv3\.weight", "body.8.weight"),
        rename(r"backbone\.conv4\.weight", "body.12.weight"),
        rename(rf"backbone\.bn1\.{BN}", r"body.2.\1", r"body.6.\1"),
        rename(rf"backbone\.bn2\.{BN}", r"body.10.\1", r"body.14.\1"),
        rename(r"backbone\.fc1\.(weight|bias)", r"body.18.\1"),
        rename(r"backbone\.fc2\.(weight|bias)", r"head.\1"),
    ),
    mean=MEAN, std=STD, input_size=RESOLUTION,
    zeroed=(r"body\.(0|4|8|12)\.bias",),
    requires=LINEAR,
)  # fmt: skip

#: afsl-bench's MesoInception-4 body: inception 0 (BN 1), inception 3 (BN 4), conv 6 (BN 8), conv 10
#: (BN 12), dense at 16; a branch is (1x1 conv, act, 3x3 conv, act), so its convs are .0 and .2
BRANCHES = {"1": "0.0", "2_1": "1.0", "2_2": "1.2", "3_1": "2.0", "3_2": "2.2", "4_1": "3.0", "4_2": "3.2"}
MESOINCEPTION4 = Layout(
    detector="mesoinception4",
    network="MesoInception4",
    renames=(
        *(
            rename(rf"backbone\.Incption{layer}_conv{conv}\.weight", f"body.{index}.branches.{branch}.weight")
            for layer, index in (("1", 0), ("2", 3))
            for conv, branch in BRANCHES.items()
        ),
        rename(rf"backbone\.Incption1_bn\.{BN}", r"body.1.\1"),
        rename(rf"backbone\.Incption2_bn\.{BN}", r"body.4.\1"),
        rename(r"backbone\.conv1\.weight", "body.6.weight"),
        rename(r"backbone\.conv2\.weight", "body.10.weight"),
        rename(rf"backbone\.bn1\.{BN}", r"body.8.\1", r"body.12.\1"),
        rename(r"backbone\.fc1\.(weight|bias)", r"body.16.\1"),
        rename(r"backbone\.fc2\.(weight|bias)", r"head.\1"),
    ),
    mean=MEAN, std=STD, input_size=RESOLUTION,
    zeroed=(r"body\.(0|3)\.branches\.\d\.\d\.bias", r"body\.(6|10)\.bias"),
    requires={**LINEAR, "branch_relu": (False, "its inception branches have no ReLU")},
)  # fmt: skip

RESNET_CHILDREN = {"0": "conv1", "1": "bn1", "4": "layer1", "5": "layer2", "6": "layer3", "7": "layer4"}
RESNET34 = Layout(
    detector="resnet34",
    network="ResNet34",
    renames=(
        *(rename(rf"backbone\.resnet\.{i}\.(.+)", rf"backbone.{name}.\1") for i, name in RESNET_CHILDREN.items()),
        rename(r"backbone\.fc\.(weight|bias)", r"head.\1"),
    ),
    mean=MEAN, std=STD, input_size=RESOLUTION,
    ignored=(r"backbone\.adjust_channel\..+",),
    requires=LINEAR,
)  # fmt: skip

#: B4's blocks per stage (depth multiplier 1.8 on EfficientNet-B0's 1, 2, 2, 3, 3, 4, 1)
B4_STAGES = (2, 4, 4, 6, 6, 8, 2)
#: efficientnet_pytorch's layer names -> timm's: the first stage's blocks have no expansion convolution
SEPARABLE = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_se_reduce": "se.conv_reduce",
             "_se_expand": "se.conv_expand", "_project_conv": "conv_pw", "_bn2": "bn2"}  # fmt: skip
INVERTED = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
            "_se_reduce": "se.conv_reduce", "_se_expand": "se.conv_expand", "_project_conv": "conv_pwl",
            "_bn2": "bn3"}  # fmt: skip


def efficientnet_block_renames() -> tuple:
    flat = [(stage, index) for stage, count in enumerate(B4_STAGES) for index in range(count)]
    return tuple(
        rename(
            rf"backbone\.efficientnet\._blocks\.{i}\.{name}\.(.+)",
            rf"backbone.blocks.{stage}.{index}.{ours}.\1",
        )
        for i, (stage, index) in enumerate(flat)
        for name, ours in (SEPARABLE if stage == 0 else INVERTED).items()
    )


EFFICIENTNET_B4 = Layout(
    detector="efficientnet-b4",
    network="EfficientNetB4",
    renames=(
        rename(r"backbone\.efficientnet\._conv_stem\.weight", "backbone.conv_stem.weight"),
        rename(r"backbone\.efficientnet\._bn0\.(.+)", r"backbone.bn1.\1"),
        *efficientnet_block_renames(),
        rename(r"backbone\.efficientnet\._conv_head\.weight", "backbone.conv_head.weight"),
        rename(r"backbone\.efficientnet\._bn1\.(.+)", r"backbone.bn2.\1"),
        rename(r"backbone\.last_layer\.(weight|bias)", r"head.\1"),
    ),
    mean=MEAN, std=STD, input_size=RESOLUTION,
    ignored=(r"backbone\.adjust_channel\..+",),
    requires={**LINEAR, "padding": ("deepfakebench", "its convolutions pad as efficientnet_pytorch's for 380 px")},
)  # fmt: skip

DEEPFAKEBENCH = register_source(
    Source(
        name="deepfakebench",
        citation="DeepfakeBench (Yan et al., NeurIPS 2023 D&B), https://github.com/SCLBD/DeepfakeBench",
        layouts=(XCEPTION, MESO4, MESOINCEPTION4, RESNET34, EFFICIENTNET_B4),
    )
)
