"""Content-addressed specs: ids are stable, sensitive to what changes results, and shared where they must."""

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
