"""The transfer attack (a surrogate crafts, the target is scored) and the binary-safe AutoAttack ensemble."""

from __future__ import annotations

import pytest
import torch
from _attack_fixtures import accuracy, make_images, train_model
from torch import nn

from afsl_bench.attacks import ATTACKS
from afsl_bench.attacks.base import AttackContext, SurrogateRequest
from afsl_bench.core.errors import ConfigError
from afsl_bench.runner.cell import RunOptions, run_cell
from afsl_bench.runner.plan import plan_cell

pytestmark = pytest.mark.usefixtures("one_thread")

EPS = 8 / 255


@pytest.fixture(scope="module")
def other_model() -> nn.Module:
    return train_model(seed=1)


@pytest.fixture(scope="module")
def data() -> tuple[torch.Tensor, torch.Tensor]:
    return make_images(256, seed=123)


def context_with(surrogate: nn.Module) -> AttackContext:
    return AttackContext(surrogate=lambda detector, defense, seed, data: surrogate, seed=0)


# --- transfer -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("early_stop", [True, False])
def test_transfer_from_the_target_itself_equals_the_white_box_attack(early_stop, model, data):
    x, y = data
    transfer = ATTACKS.build("transfer", eps=EPS, steps=10, early_stop=early_stop).prepare(context_with(model))
    torch.manual_seed(0)
    x_transfer = transfer(model, x, y)
    torch.manual_seed(0)
    x_white = ATTACKS.build("pgd", eps=EPS, steps=10, early_stop=early_stop)(model, x, y)
    assert torch.equal(x_transfer, x_white)


def test_transfer_from_another_model_is_weaker_than_white_box_but_works(model, other_model, data):
    x, y = data
    torch.manual_seed(0)
    out = ATTACKS.build("transfer", eps=EPS, steps=10).prepare(context_with(other_model)).run(model, x, y)
    torch.manual_seed(0)
    white = accuracy(model, ATTACKS.build("pgd", eps=EPS, steps=10)(model, x, y), y)
    transferred = accuracy(model, out.x_adv, y)
    assert white <= transferred < accuracy(model, x, y) - 0.1, (white, transferred)
    with torch.no_grad():
        assert torch.equal(out.info["fooled_surrogate"].bool(), other_model(out.x_adv).argmax(1) != y)
    assert (out.x_adv - x).abs().max() <= EPS + 1e-6


def test_transfer_needs_its_surrogate(model, data):
    with pytest.raises(ConfigError, match="surrogate"):
        ATTACKS.build("transfer")(model, *data)


@pytest.mark.parametrize("params, word", [
    ({"inner": "transfer"}, "inner"), ({"inner": "jpegg"}, "inner"), ({"inner": "pgd", "steps": 0}, "steps"),
])
def test_transfer_bad_parameters(params, word):
    with pytest.raises(ConfigError, match=word):
        ATTACKS.build("transfer", **params)


def test_transfer_names_its_surrogate_and_other_attacks_need_none():
    """The attack only names the models it needs; it does not look them up (attacks import no other kind's
    registry): the planner checks the names."""
    named = {"surrogate_detector": "meso4", "surrogate_defense": "at", "surrogate_data": "not-checked-here"}
    transfer = ATTACKS.build("transfer", **named)
    assert transfer.surrogates() == (SurrogateRequest("meso4", "at", "not-checked-here"),)
    assert ATTACKS.build("transfer").surrogates() == (SurrogateRequest("resnet", "none", None),)
    assert ATTACKS.build("pgd").surrogates() == ()


@pytest.mark.parametrize("override, word", [
    ("attack.surrogate_detector=resnt", "Did you mean 'resnet'"),
    ("attack.surrogate_defense=afls", "Did you mean 'afsl'"),
    ("attack.surrogate_data=synthetc", "Did you mean 'synthetic'"),
])
def test_the_planner_refuses_an_unknown_surrogate_name(override, word):
    with pytest.raises(ConfigError, match=word):
        plan_cell("tiny-cnn", "none", "transfer", "synthetic", overrides=[override])


SMALL = ["data.n_identities=20", "data.images_per_identity=6", "data.resolution=32", "train.epochs=1"]


def test_transfer_cell_with_the_target_as_surrogate_equals_the_white_box_cell(tmp_path):
    """End to end: the surrogate spec equal to the target's is the target's checkpoint (trained once)."""
    options = RunOptions(results_dir=tmp_path, device="cpu", checks=False)
    white = run_cell(plan_cell("tiny-cnn", "none", "pgd", "synthetic", overrides=SMALL), options).record
    spec = plan_cell("tiny-cnn", "none", "transfer", "synthetic", overrides=[
        *SMALL, "attack.surrogate_detector=tiny-cnn", "attack.surrogate_seed=0", "attack.early_stop=true"])
    black = run_cell(spec, options).record
    assert black.surrogates == [white.train_id]
    assert black.metrics["robust_acc"] == white.metrics["robust_acc"]
    assert len(list((tmp_path / "checkpoints").glob("*.pt"))) == 1, "the surrogate must come from the cache"


# --- autoattack-binary --------------------------------------------------------------------------------------


def ensemble(**params):
    return ATTACKS.build("autoattack-binary", eps=EPS, steps=10, queries=200, **params)


@pytest.fixture(scope="module")
def ensemble_run(model, data):
    torch.manual_seed(0)
    return ensemble().run(model, *data)


def test_ensemble_is_at_most_each_member(model, data, ensemble_run):
    x, y = data
    worst = accuracy(model, ensemble_run.x_adv, y)
    for member in ensemble().attacks():
        torch.manual_seed(0)
        assert worst <= accuracy(model, member(model, x, y), y), member
    assert (ensemble_run.x_adv - x).abs().max() <= EPS + 1e-6


def test_ensemble_broken_by_names_the_member_that_broke_each_sample(model, data, ensemble_run):
    _, y = data
    broken_by = ensemble_run.info["broken_by"]
    with torch.no_grad():
        fooled = model(ensemble_run.x_adv).argmax(1) != y
    assert torch.equal(fooled, ~broken_by.isnan()), "broken_by is NaN exactly for robust samples"
    assert set(broken_by[~broken_by.isnan()].tolist()) <= {0.0, 1.0, 2.0}


def test_ensemble_early_stop_changes_cost_not_the_worst_case(model, data, ensemble_run):
    x, y = data
    torch.manual_seed(0)
    everyone = ensemble(early_stop=False).run(model, x, y)
    fast, full = accuracy(model, ensemble_run.x_adv, y), accuracy(model, everyone.x_adv, y)
    # later members start from other random draws when run on fewer points: a few samples either way
    assert fast == pytest.approx(full, abs=3 / 256)


@pytest.mark.parametrize("params, word", [
    ({"members": ("apgd-ce", "fab-t")}, "members"), ({"members": ("apgd-ce", "apgd-ce")}, "members"),
    ({"queries": 0}, "queries"), ({"norm": "l1"}, "norm"),
])
def test_ensemble_bad_parameters(params, word):
    with pytest.raises(ConfigError, match=word):
        ATTACKS.build("autoattack-binary", **params)


def test_transfer_surrogate_trained_on_another_data_set(tmp_path):
    """surrogate_data: the surrogate's training spec names that data set (its defaults), so it is another
    checkpoint, trained once and reused by the next cell that asks for it."""
    options = RunOptions(results_dir=tmp_path, device="cpu", checks=False)
    overrides = [*SMALL, "attack.surrogate_detector=tiny-cnn", "attack.surrogate_data=synthetic-hq",
                 "attack.steps=2"]
    record = run_cell(plan_cell("tiny-cnn", "none", "transfer", "synthetic", overrides=overrides), options).record
    (surrogate_id,) = record.surrogates
    assert surrogate_id != record.train_id
    assert (tmp_path / "checkpoints" / f"{surrogate_id}.pt").exists()
    again = run_cell(plan_cell("tiny-cnn", "at", "transfer", "synthetic", overrides=overrides), options).record
    assert again.surrogates == [surrogate_id]
