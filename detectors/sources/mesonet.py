"""The MesoNet authors' published weights (Afchar, Nozick, Yamagishi, Echizen, "MesoNet: a Compact Facial Video
Forgery Detection Network", WIFS 2018, https://arxiv.org/abs/1809.00888; https://github.com/DariusAf/MesoNet,
Apache 2.0): Meso4 and MesoInception4, each trained on the authors' Deepfake set (``_DF``) and on Face2Face
(``_F2F``). The four Keras 2 HDF5 files ship with afsl-bench (``mesonet_weights/``, with the license and
notice), so ``--set detector.weights=mesonet:Meso4_DF`` works offline; ``mesonet:PATH`` reads another file
saved by the authors' code.

What differs from afsl-bench's MesoNet and how it is mapped (exact at evaluation):

- Keras kernels are channels-last, (kh, kw, in, out): transposed to torch's (out, in, kh, kw).
- Keras numbers its layers in the order they were created in the session (``conv2d_5`` ... in one file,
  ``conv2d_1`` ... in another): the layers of each kind are taken in that creation order, which is the order
  of afsl-bench's modules (an inception block's branches: 1x1; 1x1 then 3x3; dilated 2; dilated 3).
- The first dense layer reads Keras' channels-last flatten of the 8 x 8 x 16 map: its columns are permuted
  to torch's channels-first flatten.
- Keras' batch norm adds epsilon 1e-3 to the variance, torch's 1e-5: the running variance is loaded plus
  the difference, so (x - mean) / sqrt(var + eps) is the same number. (Fine-tuning in train mode then
  normalises batches with torch's 1e-5, a negligible change.)
- ReLU comes before batch norm in every layer, the inception branches have ReLUs, the input is [0, 1] at
  256 px without mean / std: as afsl-bench's MesoNet (``branch_relu=true``, the default).
- The single sigmoid output is the probability of *real* (the authors' class folders sorted ``df`` before
  ``real``): its pre-sigmoid value s becomes the two logits (z_real, z_fake) = (s, 0), so softmax gives
  P(fake) = 1 - sigmoid(s) exactly, and the model's own rule (fake when z_fake > z_real) is P(fake) > 0.5.

``tests/test_mesonet.py`` builds the authors' networks in Keras 3 itself, loads the same files and compares
the outputs.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import torch

from afsl_bench.core.errors import ConfigError
from afsl_bench.detectors.base import Head
from afsl_bench.detectors.sources.base import Layout, Source, register_source, rename

#: the authors' files, shipped with the package (with their LICENSE and NOTICE)
BUILTIN_DIR = Path(__file__).with_name("mesonet_weights")
BUILTIN = {path.stem: path for path in sorted(BUILTIN_DIR.glob("*.h5"))}
KERAS_BN_EPS, TORCH_BN_EPS = 1e-3, 1e-5
#: the layer kinds of the files, by the prefix of their Keras names
KINDS = {"conv2d": "conv", "batch_normalization": "bn", "dense": "dense"}
BN_PARAMS = {
    "gamma": "weight",
    "beta": "bias",
    "moving_mean": "running_mean",
    "moving_variance": "running_var",
}
BN = r"(weight|bias|running_mean|running_var)"


def read_keras_mesonet(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a MesoNet Keras 2 HDF5 weights file, in torch's layouts, under canonical names:
    ``conv.<i>``, ``bn.<i>``, ``dense.<i>`` (i: the creation order of the layers of that kind) and ``head``
    (the last dense layer as two logits). Any other file is a ConfigError saying what it is not."""
    import h5py

    try:
        with h5py.File(path, "r") as file:
            layers = _layers(file, path)
    except OSError as err:
        raise ConfigError(f"detector weights {path} are not a readable HDF5 file ({err}); {_HINT}") from None
    state: dict[str, torch.Tensor] = {}
    for kind, group in layers.items():
        for index, weights in enumerate(group):
            state |= _convert(kind, index, weights)
    dense = [k for k in state if k.startswith("dense.")]
    last = max(int(k.split(".")[1]) for k in dense) if dense else None
    if last is None or state[f"dense.{last}.weight"].shape[0] != 1:
        raise ConfigError(f"detector weights {path} do not end in MesoNet's one-unit dense layer; {_HINT}")
    state["dense.0.weight"] = _channels_first(state["dense.0.weight"], channels=_last_conv_channels(state))
    s_weight, s_bias = state.pop(f"dense.{last}.weight"), state.pop(f"dense.{last}.bias")
    state["head.weight"] = torch.cat([s_weight, torch.zeros_like(s_weight)])  # (z_real, z_fake) = (s, 0)
    state["head.bias"] = torch.cat([s_bias, torch.zeros_like(s_bias)])
    return state


_HINT = (
    "give one of the MesoNet authors' .h5 files (or mesonet:NAME of a built-in one: "
    + ", ".join(BUILTIN)
    + ")"
)


def _layers(file, path: Path) -> dict[str, list[dict[str, np.ndarray]]]:
    """{kind: [the weights of each layer, in creation order]} of a Keras 2 ``save_weights`` file."""
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in file.attrs.get("layer_names", [])]
    if not names:
        raise ConfigError(f"detector weights {path} hold no Keras layer list ('layer_names'); {_HINT}")
    found: dict[str, list[tuple[int, dict[str, np.ndarray]]]] = {kind: [] for kind in KINDS.values()}
    for name in names:
        match = re.fullmatch(r"([a-z0-9_]+?)(?:_(\d+))?", name)
        kind = KINDS.get(match.group(1)) if match else None
        if kind is None:
            continue  # input, pooling, dropout, flatten, concatenate, activations: no weights
        group = file[name]
        weights = {key.split("/")[-1].removesuffix(":0"): np.asarray(group[key]) for key in _datasets(group)}
        found[kind].append((int(match.group(2) or 0), weights))
    return {kind: [w for _, w in sorted(group, key=lambda item: item[0])] for kind, group in found.items()}


def _datasets(group) -> list[str]:
    names: list[str] = []
    group.visit(lambda name: names.append(name) if hasattr(group[name], "shape") else None)
    return names


def _convert(kind: str, index: int, weights: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    tensor = {k: torch.from_numpy(np.ascontiguousarray(v)).float() for k, v in weights.items()}
    prefix = f"{kind}.{index}"
    if kind == "conv":
        return {
            f"{prefix}.weight": tensor["kernel"].permute(3, 2, 0, 1).contiguous(),
            f"{prefix}.bias": tensor["bias"],
        }
    if kind == "dense":
        return {f"{prefix}.weight": tensor["kernel"].T.contiguous(), f"{prefix}.bias": tensor["bias"]}
    out = {f"{prefix}.{BN_PARAMS[k]}": v for k, v in tensor.items() if k in BN_PARAMS}
    out[f"{prefix}.running_var"] = out[f"{prefix}.running_var"] + (KERAS_BN_EPS - TORCH_BN_EPS)
    return out


def _last_conv_channels(state: dict[str, torch.Tensor]) -> int:
    last = max(int(k.split(".")[1]) for k in state if k.startswith("conv."))
    return state[f"conv.{last}.weight"].shape[0]


def _channels_first(weight: torch.Tensor, channels: int) -> torch.Tensor:
    """A dense layer's weight [out, H*W*C] reading a channels-last flatten -> one reading torch's C*H*W."""
    out, features = weight.shape
    side = math.isqrt(features // channels)
    return weight.view(out, side, side, channels).permute(0, 3, 1, 2).reshape(out, features)


LINEAR = {"head": (Head.LINEAR, "the authors' output is one dense unit, loaded as a linear two-logit head")}

#: afsl-bench's Meso-4 body: conv, ReLU, BN, pool per layer (indices 0/2, 4/6, 8/10, 12/14), dense at 18
MESO4 = Layout(
    detector="meso4",
    network="Meso4 (Keras)",
    renames=(
        *(rename(rf"conv\.{i}\.(weight|bias)", rf"body.{4 * i}.\1") for i in range(4)),
        *(rename(rf"bn\.{i}\.{BN}", rf"body.{4 * i + 2}.\1") for i in range(4)),
        rename(r"dense\.0\.(weight|bias)", r"body.18.\1"),
        rename(r"head\.(weight|bias)", r"head.\1"),
    ),
    mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), input_size=256,
    requires=LINEAR,
)  # fmt: skip

#: MesoInception-4: inception blocks at 0 and 3 (BN 1, 4), convs at 6 and 10 (BN 8, 12), dense at 16; the
#: seven convs of a block in creation order: branch 0's 1x1, then each later branch's 1x1 and 3x3
BRANCH_CONVS = ("0.0", "1.0", "1.2", "2.0", "2.2", "3.0", "3.2")
MESOINCEPTION4 = Layout(
    detector="mesoinception4",
    network="MesoInception4 (Keras)",
    renames=(
        *(
            rename(rf"conv\.{7 * block + i}\.(weight|bias)", rf"body.{3 * block}.branches.{conv}.\1")
            for block in (0, 1)
            for i, conv in enumerate(BRANCH_CONVS)
        ),
        rename(r"conv\.14\.(weight|bias)", r"body.6.\1"),
        rename(r"conv\.15\.(weight|bias)", r"body.10.\1"),
        *(rename(rf"bn\.{i}\.{BN}", rf"body.{index}.\1") for i, index in enumerate((1, 4, 8, 12))),
        rename(r"dense\.0\.(weight|bias)", r"body.16.\1"),
        rename(r"head\.(weight|bias)", r"head.\1"),
    ),
    mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), input_size=256,
    requires={**LINEAR, "branch_relu": (True, "the authors' inception branches have ReLUs")},
)  # fmt: skip

MESONET = register_source(
    Source(
        name="mesonet",
        citation="MesoNet (Afchar et al., WIFS 2018), https://github.com/DariusAf/MesoNet, Apache 2.0; checked against Keras",
        layouts=(MESO4, MESOINCEPTION4),
        reader=read_keras_mesonet,
        builtin=BUILTIN,
    )
)
