"""Errors a user can fix. The CLI prints them as one line and exits with code 2; nothing else is caught."""

from __future__ import annotations


class ConfigError(ValueError):
    """Bad user input: an unknown name, a bad parameter value, a missing path.

    The message names the offending thing and says how to fix it, in one line.
    """


class DataNotFoundError(ConfigError):
    """A data set's files are not where they are expected."""


class DiskFullError(ConfigError):
    """No space left where results are written: every later cell would fail the same way, so a sweep stops."""


class NonFiniteLossError(ConfigError, FloatingPointError):
    """A training loss, its gradients or the validation scores became NaN or infinite: a diverging run, which
    the user fixes with a lower ``train.lr`` (so the CLI says it in one line and exits 2)."""
