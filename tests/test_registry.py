"""The generic registry: duplicates, unknown names, parameters, building, plugins."""

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
