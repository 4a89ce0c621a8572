"""``--precision``: attacks may craft in bfloat16 / float16, and no reported number comes from a reduced
forward (afsl_bench/core/precision.py). A reduced-precision attack may miss an example float32 finds, never
report a stronger defense than float32 by more than 1 sample in 200; every reported score is the float32 score
of the stored adversarial example; a decision that ends a search is taken in float32 where the reduced
forward calls a sample fooled or leaves it near the boundary."""

from __future__ import annotations

import dataclasses
import json
import re

import pytest
import torch
from _attack_fixtures import make_images
from typer.testing import CliRunner

from afsl_bench.attacks import ATTACKS, Attack
from afsl_bench.attacks.base import AttackOutput
from afsl_bench.core.precision import crafting_dtype, native_bf16, training_dtype
from afsl_bench.core.runtime import Compile, Precision
from afsl_bench.core.speed import FrozenModel
from afsl_bench.core.types import Split
from afsl_bench.runner.evaluation import margin, score_split

pytestmark = pytest.mark.usefixtures("one_thread")

#: the attacks of the issue, at the budgets a unit test affords (the ensemble's Square at 300 queries)
ATTACKS_COMPARED = {
    "pgd-10": ("pgd", {"steps": 10}),
    "apgd-100": ("apgd", {"steps": 100}),
    "autoattack-binary": ("autoattack-binary", {"queries": 300}),
}


@dataclasses.dataclass(frozen=True)
class Keeping(Attack):
    """Runs ``inner`` and keeps each adversarial batch it returns, to re-score it independently."""

    inner: Attack | None = None
    kept: list = dataclasses.field(default_factory=list, compare=False)

    def run(self, model, x, y) -> AttackOutput:
        out = self.inner.run(model, x, y)
        self.kept.append(out.x_adv.clone())
        return out

    def forward_budget(self) -> int | None:
        return self.inner.forward_budget()


@pytest.fixture(scope="module")
def split() -> Split:
    x, y = make_images(200, seed=21)
    ids = [f"s{i}" for i in range(len(y))]
    return Split((x * 255).round().to(torch.uint8), y, ids, ids, ["m"] * len(y))


def scored(model, split, name, dtype):
    attack = Keeping(inner=ATTACKS.build(ATTACKS_COMPARED[name][0], **ATTACKS_COMPARED[name][1]))
    frozen = FrozenModel(model, Compile.AUTO, dtype)
    table = score_split(frozen, attack, split, batch_size=100, device=torch.device("cpu"), seed=0)
    return table, torch.cat(attack.kept)


@pytest.mark.parametrize("name", list(ATTACKS_COMPARED))
def test_a_bf16_attack_never_reports_a_stronger_defense_and_scores_in_float32(model, split, name) -> None:
    fp32, _ = scored(model, split, name, None)
    bf16, x_adv = scored(model, split, name, torch.bfloat16)
    labels = split.labels
    robust32 = torch.tensor((fp32["adv_score"] > 0).to_numpy()) == labels.bool()
    robust16 = torch.tensor((bf16["adv_score"] > 0).to_numpy()) == labels.bool()
    assert robust16.sum() <= robust32.sum() + len(labels) // 200, (
        f"{name}: bf16 reports {int(robust16.sum())} robust samples, fp32 {int(robust32.sum())}"
    )
    assert robust32.float().mean() < 0.9, "the attack has teeth on this model: the comparison is not vacuous"
    rescored = margin(FrozenModel(model, Compile.AUTO).exact(x_adv)).detach().numpy()
    assert (bf16["adv_score"].to_numpy() == rescored).all(), "a reported score is not the float32 score"
    assert (bf16["clean_score"].to_numpy() == fp32["clean_score"].to_numpy()).all()


class Liar(torch.nn.Module):
    """A model whose reduced-precision forward calls every sample fooled and whose float32 forward never does:
    an attack that believed the reduced forward would stop at once."""

    reduced = True
    differentiable = True

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        truth = self.exact(x)
        return truth.flip(1) + 0 * x.flatten(1).sum(1, keepdim=True)  # the wrong class wins

    def exact(self, x):
        y = x.flatten(1).mean(1, keepdim=True)
        return torch.cat([y, 1 - y + 10], 1) + self.w  # fake (1) by a wide margin: nothing breaks it


@pytest.mark.parametrize(("name", "params"), [("pgd", {"steps": 5}), ("apgd", {"steps": 5}),
                                              ("square", {"queries": 5}),
                                              ("nes", {"queries": 15, "samples": 2})])  # fmt: skip
def test_a_search_never_stops_on_a_point_only_the_reduced_forward_calls_adversarial(name, params) -> None:
    liar, x, y = Liar(), torch.rand(4, 3, 8, 8), torch.ones(4, dtype=torch.long)
    ATTACKS.build(name, **params)(liar, x, y)
    assert liar.calls >= 5, f"{name} stopped after {liar.calls} reduced forwards"


def test_the_precision_choices_resolve_per_device() -> None:
    cpu = torch.device("cpu")
    assert crafting_dtype("fp32", cpu) is None and crafting_dtype("bf16", cpu) is torch.bfloat16
    assert crafting_dtype("fp16", cpu) is torch.float16
    assert crafting_dtype("auto", cpu) is (torch.bfloat16 if native_bf16(cpu) else None)
    assert training_dtype("auto") is None and training_dtype("bf16") is torch.bfloat16


def test_fp16_input_gradients_are_loss_scaled_and_unchanged_in_direction(model) -> None:
    x, y = make_images(16, seed=5)
    grads = {}
    for dtype in (None, torch.float16):
        probe = x.clone().requires_grad_(True)
        logits = FrozenModel(model, Compile.OFF, dtype)(probe)
        assert logits.dtype == torch.float32
        torch.nn.functional.cross_entropy(logits, y).backward()
        grads[dtype] = probe.grad.flatten(1)
    cosine = torch.nn.functional.cosine_similarity(grads[None], grads[torch.float16])
    assert cosine.min() > 0.95 and grads[torch.float16].norm() / grads[None].norm() == pytest.approx(1, abs=0.1)


SMALL = ["--set", "data.n_identities=20", "--set", "data.images_per_identity=6", "--set", "data.resolution=32",
         "--set", "train.epochs=1", "--set", "eval.samples=24", "--set", "attack.steps=3"]  # fmt: skip


def test_the_record_says_what_crafted_its_examples_and_a_bad_choice_is_one_line(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("AFSL_CHECKPOINT_CACHE")  # a float32 checkpoint of these settings may be shared
    from afsl_bench.cli import app

    args = ["run", *SMALL, "--results-dir", str(tmp_path), "--device", "cpu", "--no-checks", "--json"]
    bf16 = CliRunner().invoke(app, [*args, "--precision", "bf16"])
    assert bf16.exit_code == 0, bf16.output
    record = json.loads(bf16.stdout)
    assert record["runtime"]["precision"] == "bf16"
    assert record["runtime"]["training"]["precision"] == "bf16", "an explicit bf16 trains in bf16 too"
    again = CliRunner().invoke(app, [*args, "--precision", "fp32"])
    assert json.loads(again.stdout)["cell_id"] == record["cell_id"], "precision is not part of the cell id"
    bad = CliRunner().invoke(app, [*args, "--precision", "fp8"])
    said = " ".join(re.sub("[─│╭╮╰╯]", " ", bad.output).split())  # typer's box wraps at the terminal width
    assert bad.exit_code == 2 and "'fp8' is not one of" in said
    from afsl_bench import api

    with pytest.raises(Exception, match="precision='fp8': choose one of fp32, bf16, fp16, auto"):
        api.run(overrides=[s for s in SMALL if s != "--set"], results_dir=tmp_path, precision="fp8")
    assert Precision.AUTO.value == "auto"
