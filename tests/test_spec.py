"""Content-addressed specs: ids are stable, sensitive to what changes results, and shared where they must."""

import pytest

from afsl_bench.core.errors import ConfigError
from afsl_bench.core.spec import CellSpec, Component, TrainSpec, canonical_json


def _cell(attack_params=None, detector_version=1, seed=0) -> CellSpec:
    training = TrainSpec(
        Component("tiny-cnn", {"head": "linear", "width": 16}, detector_version),
        Component("afsl", {"beta1": 1.0, "beta2": 0.1}),
        Component("synthetic", {"seed": 0}),
        Component("train", {"epochs": 5}),
        seed,
    )
    return CellSpec(
        training,
        Component("pgd", attack_params or {"eps": 8 / 255, "steps": 10}),
        Component("synthetic", {"seed": 0}),
    )


def test_canonical_json_ignores_key_order() -> None:
    assert canonical_json({"b": 1, "a": [1, 2]}) == canonical_json({"a": [1, 2], "b": 1})


def test_cell_id_is_stable_and_16_hex() -> None:
    assert _cell().cell_id == _cell().cell_id
    assert len(_cell().cell_id) == 16 and int(_cell().cell_id, 16) >= 0


def test_cell_id_changes_with_params_version_and_seed() -> None:
    base = _cell().cell_id
    assert _cell({"eps": 4 / 255, "steps": 10}).cell_id != base
    assert _cell(detector_version=2).cell_id != base
    assert _cell(seed=1).cell_id != base


def test_attacks_share_the_training_id() -> None:
    a, b = _cell(), _cell({"eps": 16 / 255, "steps": 10})
    assert a.training.train_id == b.training.train_id and a.cell_id != b.cell_id


# ------------------------------------------------------------------ heads and defenses (plan_cell)


def _head(defense: str, *overrides: str) -> str:
    from afsl_bench.runner.plan import plan_cell

    return plan_cell("tiny-cnn", defense, "pgd", "synthetic", overrides=list(overrides)).training.detector.params[
        "head"
    ]


@pytest.mark.parametrize("defense", ["none", "at", "trades", "afsl"])
@pytest.mark.parametrize("head", ["linear", "cosine", "cosine-pair"])
def test_an_explicit_head_is_kept_with_any_defense(defense, head) -> None:
    assert _head(defense, f"detector.head={head}") == head


def test_a_defense_without_a_head_override_gets_its_papers_head() -> None:
    assert _head("afsl") == "cosine"  # AFSL's paper head: the one-vector cosine head
    assert _head("at") == "linear" and _head("none") == "linear"  # the detector's own default


def test_a_bad_head_is_a_config_error_naming_the_choices() -> None:
    from afsl_bench.runner.plan import plan_cell

    with pytest.raises(ConfigError, match="cosine-pair") as err:
        plan_cell("tiny-cnn", "afsl", "pgd", "synthetic", overrides=["detector.head=foo"])
    assert "foo" in str(err.value) and "linear" in str(err.value)


def test_every_detector_component_has_version_2_and_heads_give_distinct_training_ids() -> None:
    from afsl_bench.runner.plan import plan_cell

    cells = [plan_cell(d, "none", "pgd", "synthetic", overrides=[f"detector.head={h}"])
             for d in ("tiny-cnn", "meso4") for h in ("linear", "cosine", "cosine-pair")]
    assert {c.training.detector.version for c in cells} == {2}
    assert len({c.training.train_id for c in cells}) == 6
