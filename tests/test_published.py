"""Published detectors evaluated as they are (``train.epochs=0``) and fine-tuned with a defense: the MesoNet
authors' weights on their own sample crops, as a user runs them."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from typer.testing import CliRunner

from afsl_bench.cli import app
from afsl_bench.detectors import DETECTORS
from afsl_bench.detectors.sources.mesonet import BUILTIN, BUILTIN_DIR
from afsl_bench.detectors.weights import weights_file_digest

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def crops(tmp_path_factory):
    """The authors' four sample crops as a user's folder: real/ and fake/."""
    root = tmp_path_factory.mktemp("crops")
    shutil.copytree(BUILTIN_DIR / "samples" / "real", root / "real")
    shutil.copytree(BUILTIN_DIR / "samples" / "fake", root / "fake")
    return root


def run(*args: str):
    return CliRunner().invoke(app, ["run", "--device", "cpu", *args])


def test_published_weights_are_evaluated_as_they_are_on_every_image_of_a_folder(crops, tmp_path) -> None:
    result = run("--detector", "meso4", "--set", "detector.weights=mesonet:Meso4_DF", "--set", "train.epochs=0",
                 "--dataset", "folder", "--set", f"data.root={crops}", "--attack", "fgsm", "--no-checks", "--json",
                 "--results-dir", str(tmp_path))  # fmt: skip
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert (record["n_samples"], record["n_reals"], record["n_fakes"]) == (4, 2, 2), "every image is test data"
    assert record["metrics"]["clean_acc"] == 1.0
    assert record["decision"] == {"rule": "margin", "threshold": 0.0}, "the published model's own rule"
    training = record["training"]
    assert training["epochs"] == 0 and training["history"] == [] and not training["cached"]
    assert training["weights"] == {
        "source": "mesonet", "given": "mesonet:Meso4_DF", "file": str(BUILTIN["Meso4_DF"]),
        "sha256": weights_file_digest("mesonet:Meso4_DF"),
    }  # fmt: skip
    assert record["spec"]["train_data"]["params"]["resolution"] == 256, "the checkpoint's own input size"
    assert not list((tmp_path / "checkpoints").glob("*.pt")), "nothing was trained, nothing saved"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "meso4 has none set"),
        (["--defense", "at", "--set", "detector.weights=mesonet:Meso4_DF"], "--defense at trains"),
        (["--set", "detector.weights=mesonet:Meso5"], "detector weights file not found"),
    ],
)
def test_evaluation_without_training_refuses_what_it_cannot_evaluate(crops, tmp_path, args, message) -> None:
    result = run("--detector", "meso4", "--set", "train.epochs=0", "--dataset", "folder",
                 "--set", f"data.root={crops}", "--results-dir", str(tmp_path), *args)  # fmt: skip
    assert result.exit_code == 2 and message in result.output, result.output
    assert not (tmp_path / "records").exists(), "refused before any work"


def test_a_defense_fine_tunes_the_published_weights_from_the_first_step(tmp_path, monkeypatch) -> None:
    """``--defense at`` with published weights trains the published model, not a random one: the detector
    the training loop receives is the authors' Meso4_DF, tensor for tensor."""
    from afsl_bench.runner import sources

    received = {}

    class Stop(Exception):
        pass

    def spy(detector, *args, **kwargs):
        received.update({k: v.clone() for k, v in detector.state_dict().items()})
        raise Stop

    monkeypatch.delenv("AFSL_CHECKPOINT_CACHE")  # another test's shared checkpoint would spare the training
    monkeypatch.setattr(sources, "train", spy)
    with pytest.raises(Stop):
        import afsl_bench

        afsl_bench.run("meso4", "at", "pgd", "synthetic", results_dir=tmp_path, device="cpu",
                       overrides=["detector.weights=mesonet:Meso4_DF", "train.epochs=1", "data.n_identities=10",
                                  "data.images_per_identity=2"])  # fmt: skip
    published = DETECTORS.build("meso4", weights="mesonet:Meso4_DF").state_dict()
    assert received.keys() == published.keys()
    assert all(torch.equal(received[k], published[k]) for k in published)
