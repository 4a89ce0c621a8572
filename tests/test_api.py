"""The Python API as a user calls it: ``afsl_bench.evaluate`` on any nn.Module, ``train``, ``load_detector``,
``run``; and the README's example, executed as written."""

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import afsl_bench
from afsl_bench.core.errors import ConfigError

pytestmark = pytest.mark.usefixtures("one_thread")

DATA = ["data.n_identities=20", "data.images_per_identity=6", "data.resolution=32"]
DATA_PARAMS = {"n_identities": 20, "images_per_identity": 6, "resolution": 32}
SMALL = [*DATA, "train.epochs=1", "train.robust_val_samples=32"]


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("results")


@pytest.fixture(scope="module")
def cli_cell(results):
    """The cell `afsl-bench run --attack pgd` writes, through the API the CLI calls."""
    return afsl_bench.run("tiny-cnn", "none", "pgd", overrides=SMALL, results_dir=results, device="cpu")


@pytest.fixture(scope="module")
def trained(results, cli_cell) -> nn.Module:
    return afsl_bench.train("tiny-cnn", "none", overrides=SMALL, results_dir=results, device="cpu")


class OneLogit(nn.Module):
    """A user's model with a single output (> 0 = fake): mean brightness minus a constant."""

    def __init__(self) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.tensor(-0.5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 10 * (x.mean(dim=(1, 2, 3)) + self.bias)


def test_evaluate_on_a_trained_detector_gives_the_cli_cell_metrics(cli_cell, trained) -> None:
    # the same weights, data, attack and seed: the numbers equal the CLI's cell; only the identity differs
    threshold = float(trained.threshold)
    result = afsl_bench.evaluate(trained, "synthetic", "pgd", data_params=DATA_PARAMS, device="cpu", checks=False)
    assert float(trained.threshold) == threshold != 0, "the caller's model keeps its calibrated threshold"
    assert result.record.decision == cli_cell.record.decision == {"rule": "margin", "threshold": 0.0}
    assert result.record.metrics == cli_cell.record.metrics
    assert result.record.per_method == cli_cell.record.per_method
    assert result.record.cell_id != cli_cell.record.cell_id
    assert result.record.spec["detector"]["name"] == "TinyCNN"
    assert result.record.spec["train_data"]["name"] == "external"


def test_the_eer_rule_fixes_the_threshold_on_validation_data_like_the_cli(results, trained) -> None:
    cli = afsl_bench.run("tiny-cnn", "none", "pgd", overrides=[*SMALL, "eval.threshold=eer"], results_dir=results,
                         device="cpu")  # fmt: skip
    api = afsl_bench.evaluate(trained, "synthetic", "pgd", data_params=DATA_PARAMS, threshold="eer", device="cpu",
                              checks=False)  # fmt: skip
    assert api.record.decision["rule"] == cli.record.decision["rule"] == "eer"
    assert api.record.decision["threshold"] == pytest.approx(cli.record.decision["threshold"], abs=1e-5)
    assert api.record.metrics["clean_acc"] == pytest.approx(cli.record.metrics["clean_acc"])
    with pytest.raises(ConfigError, match="eval.threshold=median: choose one of eer, margin"):
        afsl_bench.evaluate(trained, data_params=DATA_PARAMS, threshold="median")


def test_train_loads_the_cached_checkpoint_of_the_cell(results, cli_cell, trained) -> None:
    assert not trained.training
    assert float(trained.threshold) == pytest.approx(cli_cell.record.training["val_metrics"]["threshold"])
    assert len(list((results / "checkpoints").glob("*.pt"))) == 1, "train() reused the cell's checkpoint"


def test_evaluate_a_one_logit_model_and_store_the_record(tmp_path) -> None:
    result = afsl_bench.evaluate(
        OneLogit(), "synthetic", "pgd", eps=4 / 255, data_params=DATA_PARAMS, samples=16, device="cpu",
        checks=False, results_dir=tmp_path, name="brightness",
    )  # fmt: skip
    record = result.record
    assert record.spec["detector"]["name"] == "brightness"
    assert record.spec["attack"]["params"]["eps"] == pytest.approx(4 / 255)
    assert record.n_samples == 16 and len(result.samples) == 16
    assert record.perturbation["linf_max"] <= 4 / 255 + 1e-6
    assert (tmp_path / "records" / f"{record.cell_id}.json").is_file()
    row = result.row()
    assert isinstance(row, pd.Series) and row["detector"] == "brightness"
    assert row["robust_acc"] == record.metrics["robust_acc"]


def test_two_models_with_other_weights_get_other_cells() -> None:
    a, b = OneLogit(), OneLogit()
    with torch.no_grad():
        b.bias.fill_(-0.4)
    ids = [
        afsl_bench.evaluate(m, attack="fgsm", data_params=DATA_PARAMS, samples=8, device="cpu", checks=False)
        for m in (a, b)
    ]
    assert ids[0].record.cell_id != ids[1].record.cell_id


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"attack": "apdg"}, "Did you mean 'apgd'"),
        ({"attack": "jpeg", "eps": 8 / 255}, "has no budget eps"),
        ({"attack": "pgd", "attack_params": {"stpes": 3}}, "Did you mean 'steps'"),
        ({"dataset": "synthetc"}, "Did you mean 'synthetic'"),
        ({"attack": "transfer", "attack_params": {"surrogate_detector": "resnt"}}, "Did you mean 'resnet'"),
    ],
)
def test_bad_arguments_fail_with_the_fix(kwargs, message) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        afsl_bench.evaluate(OneLogit(), **({"data_params": DATA_PARAMS} | kwargs))


def test_a_model_with_three_outputs_is_refused_naming_the_shapes() -> None:
    three = nn.Sequential(nn.Flatten(), nn.LazyLinear(3))
    with pytest.raises(ConfigError, match=r"returned logits of shape \(\d+, 3\)"):
        afsl_bench.evaluate(three, data_params=DATA_PARAMS, samples=8, device="cpu", checks=False)


def test_load_detector_reads_a_weights_file(tmp_path) -> None:
    torch.manual_seed(3)
    source = afsl_bench.load_detector("tiny-cnn")
    torch.save(source.state_dict(), tmp_path / "w.pt")
    torch.manual_seed(4)
    loaded = afsl_bench.load_detector("tiny-cnn", weights=tmp_path / "w.pt")
    for key, value in source.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    with pytest.raises(ConfigError, match="not found"):
        afsl_bench.load_detector("tiny-cnn", weights=tmp_path / "missing.pt")


#: how far the README example's printed metrics may be from the ones this machine prints (README says so):
#: float rounding across CPUs and thread counts moves a few samples of 200 at most
README_TOLERANCE = 0.02


def printed_values(text: str) -> dict[str, str]:
    """``pandas.Series.to_string()`` lines, 'name   value', as {name: value}."""
    return dict(line.split(maxsplit=1) for line in text.strip().splitlines())


def test_the_readme_example_runs_as_written_and_prints_what_the_readme_says(tmp_path, monkeypatch, capsys) -> None:
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.DOTALL)
    example = next(b for b in blocks if "afsl_bench.evaluate(" in b)
    assert len(example.strip().splitlines()) <= 12
    after = readme[readme.index(example) + len(example) :]
    said = printed_values(re.search(r"It prints.*?```\n(.*?)```", after, flags=re.DOTALL).group(1))
    assert f"within {README_TOLERANCE}" in after[:2000], "the README states the tolerance this test uses"
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(example, "README.md", "exec"), namespace)  # noqa: S102  (our own README, run as a user would)
    got = printed_values(capsys.readouterr().out)
    assert got.keys() == said.keys(), (got, said)
    for key, value in said.items():
        try:
            expected = float(value)
        except ValueError:
            assert got[key] == value, key
            continue
        assert float(got[key]) == pytest.approx(expected, abs=README_TOLERANCE), (key, got[key], value)


def test_the_cli_and_the_api_write_their_records_through_the_one_pipeline(tmp_path, monkeypatch) -> None:
    """``afsl-bench run`` (through ``afsl_bench.run``) and ``afsl_bench.evaluate`` both call
    ``runner.cell.run_cell``, with the model trained from the spec or given; the records they return are the
    records that function built, complete (no key is added afterwards)."""
    from typer.testing import CliRunner

    from afsl_bench import api
    from afsl_bench.cli import app
    from afsl_bench.runner import cell

    calls, real = [], cell.run_cell

    def spy(spec, options=None, progress=None, source=None):
        outcome = real(spec, options, progress, source)
        calls.append((type(source).__name__ if source else "Trained", outcome.record))
        return outcome

    monkeypatch.setattr(cell, "run_cell", spy)
    monkeypatch.setattr(api, "run_cell", spy)
    args = ["run", "--detector", "tiny-cnn", "--attack", "fgsm", "--results-dir", str(tmp_path), "--device", "cpu",
            "--no-checks", "--json", *[a for s in SMALL for a in ("--set", s)]]  # fmt: skip
    assert CliRunner().invoke(app, args).exit_code == 0
    model = afsl_bench.train("tiny-cnn", "none", overrides=SMALL, results_dir=tmp_path, device="cpu")
    api = afsl_bench.evaluate(model, attack="fgsm", data_params=DATA_PARAMS, device="cpu", checks=False,
                              results_dir=tmp_path / "api")  # fmt: skip
    (cli_source, cli_record), (api_source, api_record) = calls
    assert (cli_source, api_source) == ("Trained", "Given")
    assert api_record is api.record
    assert set(cli_record.to_json()) == set(api_record.to_json()), "the same keys, built by one function"
    assert cli_record.metrics == api_record.metrics and cli_record.decision == api_record.decision
    assert api_record.runtime["compile"] == cli_record.runtime["compile"]


class Blackbox(nn.Module):
    """A wrapper of a black box with plain settings and no parameters: its identity is its class and state."""

    def __init__(self, offset: float) -> None:
        super().__init__()
        self.offset = offset

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 10 * (x.mean(dim=(1, 2, 3)) - self.offset)


class Brightness(Blackbox):
    """Another class with the same state."""


def test_parameter_free_models_of_other_classes_or_settings_get_other_cells(tmp_path) -> None:
    """Two wrappers without weights used to share one cell id, the second record replacing the first."""
    kwargs = {"attack": "fgsm", "data_params": DATA_PARAMS, "samples": 8, "device": "cpu", "checks": False,
              "results_dir": tmp_path}  # fmt: skip
    ids = {afsl_bench.evaluate(m, **kwargs).record.cell_id for m in (Blackbox(0.5), Blackbox(0.4), Brightness(0.5))}
    assert len(ids) == 3 and len(list((tmp_path / "records").glob("*.json"))) == 3


def test_a_model_whose_state_cannot_be_digested_needs_a_name() -> None:
    model = Blackbox(0.5)
    model.scorer = lambda x: x  # a function: no stable value to digest
    with pytest.raises(ConfigError, match=r"holds state that cannot be digested.*scorer \(function\).*name="):
        afsl_bench.evaluate(model, attack="fgsm", data_params=DATA_PARAMS, samples=8, device="cpu", checks=False)
    named = afsl_bench.evaluate(model, attack="fgsm", data_params=DATA_PARAMS, samples=8, device="cpu", checks=False,
                                name="blackbox-v1")  # fmt: skip
    assert named.record.spec["detector"]["name"] == "blackbox-v1"


def test_eps_may_be_written_as_on_the_command_line_and_samples_must_be_positive() -> None:
    result = afsl_bench.evaluate(OneLogit(), attack="fgsm", eps="4/255", data_params=DATA_PARAMS, samples=8,
                                 device="cpu", checks=False)  # fmt: skip
    assert result.record.spec["attack"]["params"]["eps"] == pytest.approx(4 / 255)
    with pytest.raises(ConfigError, match="samples must be positive"):
        afsl_bench.evaluate(OneLogit(), data_params=DATA_PARAMS, samples=0)


class NaNs(OneLogit):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = super().forward(x)
        return torch.where(torch.arange(len(x)) % 2 == 0, out, torch.full_like(out, float("nan")))


def test_a_model_returning_nan_is_refused_saying_how_many() -> None:
    with pytest.raises(ConfigError, match=r"NaN or infinite scores for 4 of 8 clean samples of batch 1"):
        afsl_bench.evaluate(NaNs(), attack="fgsm", data_params=DATA_PARAMS, samples=8, device="cpu", checks=False)


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_models_of_other_float_types_are_evaluated_in_their_own_type(dtype) -> None:
    model = OneLogit().to(dtype)
    result = afsl_bench.evaluate(model, attack="fgsm", data_params=DATA_PARAMS, samples=8, device="cpu",
                                 checks=False)  # fmt: skip
    reference = afsl_bench.evaluate(OneLogit(), attack="fgsm", data_params=DATA_PARAMS, samples=8, device="cpu",
                                    checks=False)  # fmt: skip
    assert result.samples["clean_score"].dtype == "float32"
    tolerance = 1e-6 if dtype == torch.float64 else 0.1
    assert np.allclose(result.samples["clean_score"], reference.samples["clean_score"], atol=tolerance)
