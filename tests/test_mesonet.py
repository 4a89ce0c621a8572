"""The MesoNet authors' published weights (detectors/sources/mesonet.py), checked against Keras itself: the
authors' networks are built in Keras 3 on its torch backend from their own definition, load the same HDF5
files, and must give the logits afsl-bench's detectors give, on random inputs and on the authors' sample
face crops; the samples' probabilities must equal the reference values computed with Keras when the
weights were added to the project (shared/data/mesonet/README.md)."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from PIL import Image

from afsl_bench.core.errors import ConfigError
from afsl_bench.detectors import DETECTORS
from afsl_bench.detectors.sources.mesonet import BUILTIN, BUILTIN_DIR

pytestmark = pytest.mark.usefixtures("one_thread")

SAMPLES = BUILTIN_DIR / "samples"
#: P(real) of Meso4_DF on the four sample crops, computed with Keras 3 (torch backend) from Meso4_DF.h5
REFERENCE = {"df00204": 0.0509, "df01254": 0.0353, "real00240": 0.9897, "real00772": 0.9985}
FILES = sorted(BUILTIN)


def detector(name: str) -> torch.nn.Module:
    network = "meso4" if name.startswith("Meso4") else "mesoinception4"
    return DETECTORS.build(network, weights=f"mesonet:{name}").eval()


def sample_images() -> tuple[list[str], torch.Tensor]:
    """The authors' four sample crops, resized to 256 x 256 with Pillow's default filter, in [0, 1]."""
    paths = sorted(SAMPLES.glob("*/*.jpg"))
    images = [
        np.asarray(Image.open(p).convert("RGB").resize((256, 256)), dtype=np.float32) / 255 for p in paths
    ]
    return [p.stem for p in paths], torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()


def p_real(model: torch.nn.Module, x: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return torch.softmax(model(x), dim=1)[:, 0].numpy()


def test_the_four_files_ship_with_the_package_beside_their_license() -> None:
    assert FILES == ["Meso4_DF", "Meso4_F2F", "MesoInception_DF", "MesoInception_F2F"]
    assert (BUILTIN_DIR / "LICENSE").is_file() and (BUILTIN_DIR / "NOTICE").is_file()


def test_meso4_df_gives_the_reference_probabilities_on_the_authors_samples() -> None:
    names, x = sample_images()
    got = dict(zip(names, p_real(detector("Meso4_DF"), x), strict=True))
    assert got == pytest.approx(REFERENCE, abs=1e-3)


@pytest.mark.parametrize("name", ["Meso4_DF", "MesoInception_DF"])
def test_the_deepfake_models_tell_the_samples_apart_at_their_own_decision_rule(name) -> None:
    """The models trained on the authors' Deepfake set call both of its sample forgeries fake and both real
    faces real (P(fake) > 0.5). The Face2Face models call every sample real: these crops are Deepfake-set
    forgeries, another manipulation than the one they learned (the generalisation gap the field reports)."""
    names, x = sample_images()
    fake = p_real(detector(name), x) < 0.5
    assert list(fake) == [n.startswith("df") for n in names]
    f2f = p_real(detector(name.replace("_DF", "_F2F")), x)
    assert (f2f > 0.5).all()


# --- against Keras itself ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def keras():
    os.environ.setdefault("KERAS_BACKEND", "torch")
    keras = pytest.importorskip("keras", reason="the Keras reference needs keras (pip install keras h5py)")
    if keras.backend.backend() != "torch":
        pytest.skip(f"keras was imported with the {keras.backend.backend()} backend, not torch")
    return keras


def keras_meso4(keras):
    """The authors' Meso4 (shared/data/mesonet/classifiers.py), layer for layer."""
    from keras import layers

    x = layers.Input(shape=(256, 256, 3))
    y = x
    for filters, kernel, pool in ((8, 3, 2), (8, 5, 2), (16, 5, 2), (16, 5, 4)):
        y = layers.Conv2D(filters, kernel, padding="same", activation="relu")(y)
        y = layers.BatchNormalization()(y)
        y = layers.MaxPooling2D(pool_size=pool, padding="same")(y)
    return keras.Model(x, keras_dense_part(layers, y))


def keras_mesoinception4(keras):
    """The authors' MesoInception4 (shared/data/mesonet/classifiers.py), layer for layer."""
    from keras import layers

    def inception(y, a, b, c, d):
        x1 = layers.Conv2D(a, 1, padding="same", activation="relu")(y)
        x2 = layers.Conv2D(b, 1, padding="same", activation="relu")(y)
        x2 = layers.Conv2D(b, 3, padding="same", activation="relu")(x2)
        x3 = layers.Conv2D(c, 1, padding="same", activation="relu")(y)
        x3 = layers.Conv2D(c, 3, dilation_rate=2, padding="same", activation="relu")(x3)
        x4 = layers.Conv2D(d, 1, padding="same", activation="relu")(y)
        x4 = layers.Conv2D(d, 3, dilation_rate=3, padding="same", activation="relu")(x4)
        return layers.Concatenate(axis=-1)([x1, x2, x3, x4])

    x = layers.Input(shape=(256, 256, 3))
    y = x
    for block in ((1, 4, 4, 2), (2, 4, 4, 2)):
        y = layers.MaxPooling2D(pool_size=2, padding="same")(
            layers.BatchNormalization()(inception(y, *block))
        )
    for pool in (2, 4):
        y = layers.Conv2D(16, 5, padding="same", activation="relu")(y)
        y = layers.MaxPooling2D(pool_size=pool, padding="same")(layers.BatchNormalization()(y))
    return keras.Model(x, keras_dense_part(layers, y))


def keras_dense_part(layers, y):
    y = layers.Dropout(0.5)(layers.Flatten()(y))
    y = layers.LeakyReLU(negative_slope=0.1)(layers.Dense(16)(y))
    return layers.Dense(1)(layers.Dropout(0.5)(y))  # the pre-sigmoid output s: P(real) = sigmoid(s)


@pytest.mark.reference
@pytest.mark.parametrize("name", FILES)
def test_logits_equal_the_authors_network_in_keras(keras, name) -> None:
    """Random inputs and the four samples: afsl-bench's margin z_fake - z_real equals -s of Keras, within
    1e-4, for all four files."""
    model = detector(name)
    reference = (keras_meso4 if name.startswith("Meso4") else keras_mesoinception4)(keras)
    reference.load_weights(str(BUILTIN[name]))
    _, samples = sample_images()
    x = torch.cat([torch.rand(6, 3, 256, 256, generator=torch.Generator().manual_seed(0)), samples])
    s = np.asarray(reference.predict(x.permute(0, 2, 3, 1).numpy(), verbose=0)).reshape(-1)
    with torch.no_grad():
        logits = model(x)
    margin = (logits[:, 1] - logits[:, 0]).numpy()
    assert np.abs(margin + s).max() < 1e-4, f"max |logit difference| {np.abs(margin + s).max():.2e}"


# --- bad input ----------------------------------------------------------------------------------------------


def test_a_file_that_is_not_mesonet_is_refused_in_one_line(tmp_path) -> None:
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(BUILTIN["Meso4_DF"].read_bytes()[:5000])
    with pytest.raises(ConfigError, match="not a readable HDF5 file"):
        DETECTORS.build("meso4", weights=f"mesonet:{truncated}")
    with pytest.raises(ConfigError, match="do not fit meso4"):
        DETECTORS.build("meso4", weights="mesonet:MesoInception_DF")
    with pytest.raises(ConfigError, match="needs detector.head=linear"):
        DETECTORS.build("meso4", weights="mesonet:Meso4_DF", head="cosine")


def test_an_hdf5_file_that_is_not_a_keras_mesonet_says_so(tmp_path) -> None:
    import h5py

    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as file:
        file.create_dataset("weights", data=np.zeros(3))
    with pytest.raises(ConfigError, match="hold no Keras layer list"):
        DETECTORS.build("meso4", weights=f"mesonet:{other}")
