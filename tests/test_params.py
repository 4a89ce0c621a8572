"""--set parsing: fractions, enums, booleans, tuples, and one-line errors."""

from enum import StrEnum
from typing import Literal

import pytest

from afsl_bench.core.errors import ConfigError
from afsl_bench.core.params import coerce, parse_value, split_overrides, typed_params
from afsl_bench.core.registry import Param


class Colour(StrEnum):
    RED = "red"
    BLUE = "blue"


@pytest.mark.parametrize(
    ("text", "annotation", "expected"),
    [
        ("8/255", float, 8 / 255),
        ("0.5", float, 0.5),
        ("1e-3", float, 1e-3),
        ("7", int, 7),
        ("true", bool, True),
        ("off", bool, False),
        ("blue", Colour, Colour.BLUE),
        ("b", Literal["a", "b"], "b"),
        ("none", int | None, None),
        ("75", int | None, 75),
        ("a,b", tuple[str, ...], ("a", "b")),
    ],
)
def test_parse_value(text, annotation, expected) -> None:
    assert parse_value(text, annotation) == expected


@pytest.mark.parametrize(
    ("text", "annotation", "message"),
    [
        ("8/0", float, "not a number"),
        ("abc", int, "not an integer"),
        ("maybe", bool, "not a boolean"),
        ("bleu", Colour, "Did you mean 'blue'"),
    ],
)
def test_parse_value_errors_are_actionable(text, annotation, message) -> None:
    with pytest.raises(ValueError, match=message):
        parse_value(text, annotation)


def test_split_overrides_groups_by_kind() -> None:
    raw = split_overrides(["attack.eps=8/255", "defense.beta2 = 0.1"], ["attack", "defense"])
    assert raw == {"attack": {"eps": "8/255"}, "defense": {"beta2": "0.1"}}


@pytest.mark.parametrize(
    ("item", "message"), [("eps=8/255", "KIND.KEY=VALUE"), ("atack.eps=1", "Did you mean 'attack'")]
)
def test_split_overrides_rejects_malformed(item, message) -> None:
    with pytest.raises(ConfigError, match=message):
        split_overrides([item], ["attack", "defense"])


def test_typed_params_names_the_bad_key_and_value() -> None:
    params = {"eps": Param("eps", float, 0.1), "steps": Param("steps", int, 10)}
    assert typed_params("attack", "pgd", {"eps": "4/255"}, params) == {"eps": 4 / 255}
    with pytest.raises(ConfigError, match="no parameter 'stesp'.*Did you mean 'steps'"):
        typed_params("attack", "pgd", {"stesp": "3"}, params)
    with pytest.raises(ConfigError, match=r"--set attack.steps=x: 'x' is not an integer"):
        typed_params("attack", "pgd", {"steps": "x"}, params)


def test_coerce_restores_stored_json_values() -> None:
    assert coerce("red", Colour) is Colour.RED
    assert coerce(["a", "b"], tuple[str, ...]) == ("a", "b")
    assert coerce(0.25, float) == 0.25 and coerce(None, int | None) is None
