"""Gradient-masking checks (benchmark/runner/probes.py): a sound model raises nothing; a non-differentiable, a
randomised or a gradient-free front end raises the matching flags; cross-record flags; gradient attacks
refuse models without gradients."""

from __future__ import annotations

import pytest
import torch
from _attack_fixtures import make_images
from torch import nn

from afsl_bench.attacks import ATTACKS
from afsl_bench.attacks.vocabulary import GradientsUnavailableError
from afsl_bench.runner.probes import ProbeSettings, run_checks, store_flags
from afsl_bench.store.record import Record

pytestmark = pytest.mark.usefixtures("one_thread")

EPS = 8 / 255
PROBE = ProbeSettings(samples=64, queries=300, steps=10)


@pytest.fixture(scope="module")
def data() -> tuple[torch.Tensor, torch.Tensor]:
    return make_images(64, seed=7)


class Quantised(nn.Module):
    """A non-differentiable front end (Buckman et al.'s thermometer/quantisation defenses): the input is
    rounded to 8 levels, so the input gradient is zero everywhere while the decision barely changes."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(torch.round(x * 7) / 7)


class Noisy(nn.Module):
    """A randomised front end: Gaussian noise added at every forward pass, in eval mode too."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x + 0.05 * torch.randn_like(x))


class Api(nn.Module):
    """A detector behind an API: scores only, no autograd graph."""

    differentiable = False

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.net(x)


def checks_for(net: nn.Module, attack_name: str, data, **params) -> dict:
    x, y = data
    attack = ATTACKS.build(attack_name, eps=EPS, **params)
    torch.manual_seed(0)
    x_adv = attack(net, x, y)
    with torch.no_grad():
        adv_correct = net(x_adv).argmax(1) == y
    torch.manual_seed(0)
    return run_checks(net, attack, x, y, adv_correct, PROBE)


def test_a_sound_model_raises_no_flag(model, data):
    result = checks_for(model, "pgd", data, steps=10)
    assert result["raised"] == [], result["checks"]
    assert result["samples"] == 64
    curve = result["checks"]["not_monotone_in_eps"]["value"]
    assert list(curve.values())[-1] == 0.0, "PGD at L-inf 0.5 breaks every sample of an honest model"


def test_non_differentiable_front_end_raises_the_masking_flags(model, data):
    result = checks_for(Quantised(model).eval(), "pgd", data, steps=10)
    checks = result["checks"]
    assert checks["zero_gradients"]["raised"] and checks["zero_gradients"]["value"] == 1.0
    # gradient attacks are blind, the score-based Square is not: a black-box beats the white-box attack
    assert checks["black_box_stronger"]["raised"], checks["black_box_stronger"]
    assert checks["large_eps_robust"]["raised"], checks["large_eps_robust"]
    assert not checks["randomised_forward"]["raised"]


def test_randomised_front_end_raises_the_randomness_flag(model, data):
    result = checks_for(Noisy(model).eval(), "pgd", data, steps=10)
    assert "randomised_forward" in result["raised"]
    assert result["checks"]["randomised_forward"]["value"] > 1e-2
    assert not result["checks"]["zero_gradients"]["raised"]


def test_saturated_cross_entropy_is_flagged_but_not_as_zero_gradient(model, data):
    class Scaled(nn.Module):
        def __init__(self, net: nn.Module) -> None:
            super().__init__()
            self.net = net

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(x) * 1e4

    result = checks_for(Scaled(model).eval(), "apgd", data, steps=5, loss="margin")
    assert result["checks"]["ce_saturated"]["raised"]
    assert not result["checks"]["zero_gradients"]["raised"]


def test_a_model_without_gradients_skips_the_gradient_probes(model, data):
    x, y = data
    net = Api(model).eval()
    attack = ATTACKS.build("square", eps=EPS, queries=50)
    with torch.no_grad():
        adv_correct = net(attack(net, x, y)).argmax(1) == y
    result = run_checks(net, attack, x, y, adv_correct, PROBE)
    assert result["checks"]["zero_gradients"]["raised"]
    assert result["checks"]["black_box_stronger"]["detail"].startswith("skipped")


@pytest.mark.parametrize("name", ["pgd", "apgd", "fgsm", "autoattack-binary"])
def test_gradient_attacks_refuse_a_model_without_gradients(name, model, data):
    with pytest.raises(GradientsUnavailableError, match=rf"'{name}'.*square"):
        ATTACKS.build(name)(Api(model), *data)


def test_a_gradient_attack_on_a_detached_output_says_so(model, data):
    class Detached(nn.Module):  # does not declare itself, but its output has no graph
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return model(x).detach()

    with pytest.raises(GradientsUnavailableError, match="score-based attack"):
        ATTACKS.build("pgd")(Detached(), *data)


# --- across records -----------------------------------------------------------------------------------------


def record(cell: str, attack: str, eps: float, robust: float, train_id: str = "t1", **params) -> Record:
    return Record.from_json({
        "cell_id": cell,
        "train_id": train_id,
        "spec": {
            "attack": {"name": attack, "params": {"eps": eps, "norm": "linf", **params}},
            "eval_data": {"name": "synthetic", "params": {}},
        },
        "status": "ok",
        "metrics": {"robust_acc": robust},
    })


def test_store_flags_black_box_below_white_box_and_non_monotone_eps():
    records = [
        record("a", "pgd", 4 / 255, 0.5),
        record("b", "pgd", 8 / 255, 0.3),
        record("c", "pgd", 16 / 255, 0.4),
        record("d", "square", 8 / 255, 0.1),
        record("e", "apgd", 8 / 255, 0.25),
        record("f", "square", 8 / 255, 0.05, train_id="other"),  # another model: not compared
    ]
    flags = store_flags(records)
    kinds = sorted(f["flag"] for f in flags)
    assert kinds == ["black_box_stronger", "not_monotone_in_eps"]
    black = next(f for f in flags if f["flag"] == "black_box_stronger")
    assert black["cells"][0] == "d" and set(black["cells"][1:]) == {"b", "e"}
    assert next(f for f in flags if f["flag"] == "not_monotone_in_eps")["cells"] == ["a", "b", "c"]


def test_store_flags_quiet_on_a_sound_set():
    records = [
        record("a", "pgd", 4 / 255, 0.5),
        record("b", "pgd", 8 / 255, 0.3),
        record("d", "square", 8 / 255, 0.35),
    ]
    assert store_flags(records) == []


def test_model_level_checks_are_computed_once_per_budget_and_equal_a_fresh_run(model, data, monkeypatch):
    """The runner shares the checks of the model alone between the cells of one model and evaluation set:
    a cell that reuses them gets exactly the flags a fresh computation gives, whatever ran before."""
    from afsl_bench.runner import probes

    x, y = data
    robust = torch.ones_like(y, dtype=torch.bool)  # as if the cell's attack had left every sample robust
    fresh = {
        name: run_checks(model, ATTACKS.build(name, eps=EPS), x, y, robust, PROBE, seed=3)
        for name in ("pgd", "fgsm")
    }
    calls = []
    real = probes.model_checks
    monkeypatch.setattr(probes, "model_checks", lambda *a, **k: calls.append(a[3]) or real(*a, **k))
    memo: dict = {}
    shared = {
        name: run_checks(model, ATTACKS.build(name, eps=EPS), x, y, robust, PROBE, seed=3, memo=memo)
        for name in ("pgd", "fgsm")
    }
    assert shared == fresh
    assert len(calls) == 1 and len(memo) == 1  # fgsm reused pgd's model checks (same budget, same probe)
    run_checks(model, ATTACKS.build("pgd", eps=4 / 255), x, y, robust, PROBE, seed=3, memo=memo)
    assert len(calls) == 2 and len(memo) == 2  # another budget is another entry
