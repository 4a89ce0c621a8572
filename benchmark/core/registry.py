"""One small generic registry (after torchvision's ``models/_api.py``), four instances next to their kinds.

A registry maps a kebab-case name (the one the CLI accepts) to a component: a frozen dataclass whose fields
are its parameters, validated in ``__post_init__`` (every kind of a cell: attacks, defenses, detectors, data
sets). An attack or a defense is its own product; a detector's or a data set's dataclass is a config
(``Buildable``) whose ``build()`` makes the network or loads the data, so a cell's every parameter is checked
when it is planned, before anything is built. ``params_of`` reads the fields (or, for the helper registries
of ``prepare``, a function's signature), so CLI help and ``--set`` validation come from the code itself. Third-party
plugins register through the entry-point group ``afsl_bench.<kind>``; a broken plugin is one warning.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import logging
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, Generic, TypeVar

from afsl_bench.core.errors import ConfigError

T = TypeVar("T", bound=Callable[..., Any])
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OmitAtDefault:
    """Parameter metadata (``typing.Annotated[T, OmitAtDefault(...)]``): the parameter stays out of a spec,
    hence out of cell ids, while it holds its default. A parameter added to a component later thus keeps the
    id of every cell that does not use it (a detector's ``weights``: a model built without a file is the same
    model whether or not its config could take one). ``digest``, when given, is called with a set value
    and its result stored as ``<name>_sha256``: what a file holds, not only where it is."""

    digest: Callable[[Any], str] | None = None


@dataclass(frozen=True)
class Location:
    """Parameter metadata (``typing.Annotated[str, Location()]``): the parameter says where a data set lies
    (a folder, a prepared store), not what it holds. It stays in the spec, so the data can be loaded, but out
    of cell and training ids: the data set's ``content_id`` stands for it, so ``ds/good``, ``./ds/good/``, its
    absolute path and a copy on another machine are one data set."""


def locations(builder: Callable[..., Any]) -> tuple[str, ...]:
    """The builder's parameters marked ``Location``, sorted."""
    hints = typing.get_type_hints(builder, include_extras=True)
    return tuple(
        sorted(
            name
            for name, hint in hints.items()
            if any(isinstance(m, Location) for m in getattr(hint, "__metadata__", ()))
        )
    )


def omitted_at_default(builder: Callable[..., Any]) -> dict[str, OmitAtDefault]:
    """The builder's parameters marked ``OmitAtDefault``, by name."""
    hints = typing.get_type_hints(builder, include_extras=True)
    return {
        name: mark
        for name, hint in hints.items()
        for mark in getattr(hint, "__metadata__", ())
        if isinstance(mark, OmitAtDefault)
    }


class Buildable:
    """A component config whose product is another object (a detector's network, a data set's splits):
    ``Registry.config`` validates the config alone, ``Registry.build`` also makes the product."""

    def build(self) -> Any:
        raise NotImplementedError


@dataclass(frozen=True)
class Param:
    """One parameter of a component: its name, type annotation and default."""

    name: str
    annotation: Any
    default: Any


def did_you_mean(word: str, choices: list[str]) -> str:
    """' Did you mean X?' when a close match exists, else ''."""
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f" Did you mean '{close[0]}'?" if close else ""


class Registry(Generic[T]):
    """Name -> builder. ``register`` raises on a duplicate; ``get`` suggests a fix on an unknown name."""

    def __init__(self, kind: str, version: int = 1) -> None:
        self.kind = kind
        #: the version of every component of this kind that names none itself (in its specs, so a change
        #: of meaning across the kind, such as a head's, gives new cell ids)
        self.version = version
        self._entries: dict[str, T] = {}
        self._plugins_loaded = False

    def register(self, name: str) -> Callable[[T], T]:
        def add(builder: T) -> T:
            if name in self._entries:
                raise ValueError(
                    f"{self.kind} '{name}' is already registered by {self._entries[name].__module__}"
                )
            self._entries[name] = builder
            if isinstance(builder, type):  # a class knows its registered name (error messages, records)
                builder.registered_name = name
            return builder

        return add

    def names(self) -> list[str]:
        self._load_plugins()
        return sorted(self._entries)

    def get(self, name: str) -> T:
        self._load_plugins()
        if name not in self._entries:
            raise ConfigError(
                f"unknown {self.kind} '{name}'.{did_you_mean(name, self.names())} "
                f"Valid {self.kind}s: {', '.join(self.names())}"
            )
        return self._entries[name]

    def __contains__(self, name: str) -> bool:
        self._load_plugins()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def describe(self, name: str) -> str:
        """First paragraph of the component's docstring, on one line."""
        doc = inspect.getdoc(self.get(name)) or ""
        return " ".join(doc.split("\n\n")[0].split())

    def params_of(self, name: str) -> dict[str, Param]:
        return params_of_builder(self.get(name))

    def build(self, name: str, /, **params: Any) -> Any:
        """The component ``name`` with ``params``: its config (``config``), and for a ``Buildable`` config the
        product (``build()``: a detector's network, a data set's splits)."""
        config = self.config(name, **params)
        if not isinstance(config, Buildable):
            return config
        return self._user_error(name, config.build)

    def config(self, name: str, /, **params: Any) -> Any:
        """The component's validated config; unknown parameter names raise a ConfigError listing the valid ones.

        Only the parameters given are passed (the CLI passes only what the user set), so a component's own
        defaults apply otherwise; an explicit ``None`` is kept (e.g. ``--set data.jpeg_quality=none``).
        """
        valid = self.params_of(name)
        for key in params:
            if key not in valid:
                raise ConfigError(
                    f"{self.kind} '{name}' has no parameter '{key}'.{did_you_mean(key, list(valid))} "
                    f"Valid: {', '.join(valid) or '(none)'}"
                )
        return self._user_error(name, lambda: self.get(name)(**params))

    def _user_error(self, name: str, make: Callable[[], Any]) -> Any:
        """``make()``, its ValueError or TypeError (a bad value) said as a ConfigError naming the component."""
        try:
            return make()
        except ConfigError:
            raise
        except (ValueError, TypeError) as err:
            raise ConfigError(f"{self.kind} '{name}': {err}") from err

    def _load_plugins(self) -> None:
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        for ep in entry_points(group=f"afsl_bench.{self.kind}s"):
            try:
                ep.load()  # importing the module registers its components
            except Exception as err:  # noqa: BLE001  (a broken plugin must never break the built-ins)
                log.warning("afsl-bench plugin %s (%s) failed to load: %s", ep.name, ep.value, err)


def params_of_builder(builder: Callable[..., Any]) -> dict[str, Param]:
    """Parameters of a dataclass (its init fields) or of a factory function (its signature)."""
    hints = typing.get_type_hints(builder)
    if dataclasses.is_dataclass(builder):
        return {
            f.name: Param(f.name, hints[f.name], _field_default(f))
            for f in dataclasses.fields(builder)
            if f.init and not f.name.startswith("_")
        }
    return {
        p.name: Param(p.name, hints.get(p.name, Any), p.default)
        for p in inspect.signature(builder).parameters.values()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and not p.name.startswith("_")
    }


def _field_default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return inspect.Parameter.empty
