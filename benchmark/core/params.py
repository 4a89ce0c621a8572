"""Parse ``--set kind.key=value`` overrides into typed component parameters.

Values are read by the parameter's type annotation, never evaluated: floats accept fractions such as
``8/255`` (budgets are written that way in the literature), enums and ``Literal`` accept their choices.
"""

from __future__ import annotations

import enum
import inspect
import types
import typing
from fractions import Fraction
from typing import Any

from afsl_bench.core.errors import ConfigError
from afsl_bench.core.registry import Param, did_you_mean

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def parse_number(text: str) -> float:
    """'0.03', '8/255' or '1e-3' -> float."""
    try:
        return float(Fraction(text.strip())) if "/" in text else float(text)
    except (ValueError, ZeroDivisionError):
        raise ValueError(f"'{text}' is not a number (write e.g. 0.03 or 8/255)") from None


def parse_value(text: str, annotation: Any) -> Any:
    """Convert the text of one ``--set`` value to the parameter's annotated type."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if text.strip().lower() == "none" and len(args) < len(typing.get_args(annotation)):
            return None
        errors = []
        for arg in args:
            try:
                return parse_value(text, arg)
            except ValueError as err:
                errors.append(str(err))
        raise ValueError("; ".join(errors))
    if origin is typing.Literal:
        choices = [str(c) for c in typing.get_args(annotation)]
        if text not in choices:
            raise ValueError(f"'{text}' is not one of {', '.join(choices)}.{did_you_mean(text, choices)}")
        return text
    if inspect.isclass(annotation) and issubclass(annotation, enum.Enum):
        choices = [str(m.value) for m in annotation]
        if text not in choices:
            raise ValueError(f"'{text}' is not one of {', '.join(choices)}.{did_you_mean(text, choices)}")
        return annotation(text)
    if annotation is bool:
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
        raise ValueError(f"'{text}' is not a boolean (write true or false)")
    if annotation is int:
        try:
            return int(text)
        except ValueError:
            raise ValueError(f"'{text}' is not an integer") from None
    if annotation is float:
        return parse_number(text)
    if origin in (tuple, list) or annotation in (tuple, list):
        item = (typing.get_args(annotation) or (str,))[0]
        return tuple(parse_value(part, item) for part in text.split(",") if part.strip())
    return text


def coerce(value: Any, annotation: Any) -> Any:
    """A JSON value of a stored spec back to the annotated type (enums from strings, lists to tuples)."""
    if value is None:
        return None
    if isinstance(value, list):
        item = (typing.get_args(annotation) or (Any,))[0]
        return tuple(value if item is Any else (coerce(v, item) for v in value))
    if isinstance(value, str):
        return parse_value(value, annotation)
    return value


def split_overrides(
    items: list[str], kinds: list[str], default_kind: str | None = None, example: str = "attack.eps=8/255"
) -> dict[str, dict[str, str]]:
    """['attack.eps=8/255', ...] -> {'attack': {'eps': '8/255'}}; raw strings, typed later per component.

    The one ``--set`` parser of every command. With ``default_kind`` (a command with a single kind, such as
    ``prepare``'s ``layout``) a bare ``KEY=VALUE`` means ``default_kind.KEY=VALUE``.
    """
    out: dict[str, dict[str, str]] = {k: {} for k in kinds}
    for item in items:
        key, sep, value = item.partition("=")
        kind, dot, name = key.strip().partition(".")
        if sep and not dot and default_kind is not None:
            kind, dot, name = default_kind, ".", kind
        if not sep or not dot or not name.strip():
            shape = "KIND.KEY=VALUE" if default_kind is None else "KEY=VALUE"
            raise ConfigError(f"--set '{item}' must look like {shape}, e.g. {example}")
        if kind not in out:
            raise ConfigError(
                f"--set '{item}': unknown kind '{kind}'.{did_you_mean(kind, kinds)} Valid: {', '.join(kinds)}"
            )
        out[kind][name.strip()] = value.strip()
    return out


def typed_params(kind: str, component: str, raw: dict[str, str], params: dict[str, Param]) -> dict[str, Any]:
    """Type each raw override by the component's parameters; unknown keys raise with the valid ones."""
    typed = {}
    for key, text in raw.items():
        if key not in params:
            raise ConfigError(
                f"{kind} '{component}' has no parameter '{key}'.{did_you_mean(key, list(params))} "
                f"Valid: {', '.join(params) or '(none)'}"
            )
        try:
            typed[key] = parse_value(text, params[key].annotation)
        except ValueError as err:
            raise ConfigError(f"--set {kind}.{key}={text}: {err}") from None
    return typed
