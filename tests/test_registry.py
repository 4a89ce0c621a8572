"""The generic registry: duplicates, unknown names, parameters, building, plugins."""

import dataclasses
from dataclasses import dataclass

import pytest

from afsl_bench.core.errors import ConfigError
from afsl_bench.core.registry import Registry


@pytest.fixture()
def things() -> Registry:
    reg: Registry = Registry("thing")

    @reg.register("fast-thing")
    @dataclass(frozen=True)
    class Fast:
        """A fast thing.

        More text that `describe` must not show.
        """

        speed: float = 1.0
        steps: int = 3

        def __post_init__(self) -> None:
            if self.speed <= 0:
                raise ValueError(f"speed must be > 0, got {self.speed}")

    @reg.register("made-thing")
    def made(width: int = 4, name: str = "x") -> dict:
        """Made by a factory."""
        return {"width": width, "name": name}

    return reg


def test_duplicate_name_raises_naming_the_existing_entry(things: Registry) -> None:
    with pytest.raises(ValueError, match="already registered"):
        things.register("fast-thing")(lambda: None)


def test_unknown_name_suggests_the_closest_and_lists_valid(things: Registry) -> None:
    with pytest.raises(ConfigError) as info:
        things.get("fast-thin")
    assert "Did you mean 'fast-thing'?" in str(info.value)
    assert "made-thing" in str(info.value)


def test_names_sorted_and_describe_is_first_docstring_line(things: Registry) -> None:
    assert things.names() == ["fast-thing", "made-thing"]
    assert things.describe("fast-thing") == "A fast thing."


def test_params_of_dataclass_and_factory(things: Registry) -> None:
    fast = things.params_of("fast-thing")
    assert (
        list(fast) == ["speed", "steps"] and fast["steps"].annotation is int and fast["speed"].default == 1.0
    )
    made = things.params_of("made-thing")
    assert made["width"].default == 4 and made["name"].annotation is str


def test_build_rejects_unknown_parameter_and_bad_value(things: Registry) -> None:
    with pytest.raises(ConfigError, match="has no parameter 'sped'.*Did you mean 'speed'"):
        things.build("fast-thing", sped=2.0)
    with pytest.raises(ConfigError, match="speed must be > 0"):
        things.build("fast-thing", speed=-1.0)


def test_build_passes_only_given_parameters_even_one_called_name(things: Registry) -> None:
    assert things.build("made-thing", name="y") == {"width": 4, "name": "y"}
    assert things.build("made-thing", width=None) == {"width": None, "name": "x"}


def test_broken_plugin_is_a_warning_not_a_crash(things: Registry, monkeypatch, caplog) -> None:
    class BrokenEntryPoint:
        name, value = "broken", "nowhere:thing"

        def load(self):
            raise ImportError("no module named nowhere")

    monkeypatch.setattr("afsl_bench.core.registry.entry_points", lambda group: [BrokenEntryPoint()])
    things._plugins_loaded = False
    assert things.names() == ["fast-thing", "made-thing"]
    assert "broken" in caplog.text


@pytest.mark.parametrize("kind", ["attacks", "defenses", "detectors", "datasets"])
def test_every_component_of_a_cell_is_a_frozen_config_dataclass(kind) -> None:
    """One shape for every kind: the parameters are a frozen dataclass's fields; a detector or a data set is a
    config whose ``build()`` makes the network or loads the data."""
    from afsl_bench.attacks import ATTACKS
    from afsl_bench.core.registry import Buildable
    from afsl_bench.data import DATASETS
    from afsl_bench.defenses import DEFENSES
    from afsl_bench.detectors import DETECTORS

    registry = {"attacks": ATTACKS, "defenses": DEFENSES, "detectors": DETECTORS, "datasets": DATASETS}[kind]
    for name in registry.names():
        component = registry.get(name)
        assert dataclasses.is_dataclass(component) and component.__dataclass_params__.frozen, name
        assert issubclass(component, Buildable) == (kind in ("detectors", "datasets")), name


def test_a_bad_detector_or_data_value_is_refused_when_the_cell_is_planned() -> None:
    """Planning builds each config, never the network or the data: a sweep refuses a bad value of any
    component before anything runs (a detector's depth, a folder's fractions, a synthetic resolution)."""
    from afsl_bench.runner.plan import plan_cell

    for override, message in [("detector.depth=9", "depth must be 6n"),
                              ("data.resolution=4", "resolution=4 is out of range")]:  # fmt: skip
        with pytest.raises(ConfigError, match=message):
            plan_cell("resnet", "none", "pgd", "synthetic", overrides=[override])
    with pytest.raises(ConfigError, match="val_fraction must be in"):
        plan_cell("tiny-cnn", "none", "pgd", "folder", overrides=["data.val_fraction=0.9"])
