"""Whole models saved with ``torch.save(model)`` into plain state dicts, without running the file's code.

Some released detectors ship as a pickled ``nn.Module`` (FaceForensics++'s Xception, saved in 2019 in
PyTorch's legacy format), which ``torch.load(weights_only=True)`` refuses: the pickle names the authors'
classes, and the legacy format stores a module's class as a persistent id that the weights-only loader
does not accept. Unpickling it the usual way would import those classes and could call any function the
file names. Here ``torch.load`` reads it with a restricted unpickler (the ``find_class`` allowlist the Python
documentation recommends, https://docs.python.org/3/library/pickle.html#restricting-globals): torch's own
``torch.nn`` modules and tensor rebuilders, ``OrderedDict`` and ``set`` are themselves; each class under one of
the source's package names (``network.`` for FaceForensics++) is an empty ``nn.Module`` shell of that name
(its attributes and submodules restored, none of its code present); any other global (``os.system``,
``builtins.eval``, another package's class) stops the conversion with its name. The result is the shells'
``state_dict()``.
"""

from __future__ import annotations

import importlib
import pickle
import types
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from afsl_bench.core.errors import ConfigError

#: the functions and containers a pickled module needs besides torch.nn classes (torch's own wrapper
#: resolves the ``*Storage`` types before asking); the thnn backend is what PyTorch <= 0.4 saved in modules
ALLOWED = frozenset(
    {
        "collections.OrderedDict",
        "builtins.set",
        "builtins.frozenset",
        "torch._utils._rebuild_tensor",
        "torch._utils._rebuild_tensor_v2",
        "torch._utils._rebuild_parameter",
        "torch._utils._rebuild_parameter_with_state",
        "torch.nn.backends.thnn._get_thnn_function_backend",
    }
)

#: protocol-2 pickles (torch.save's) name the builtins module as Python 2 did
PYTHON2_NAMES = {"__builtin__": "builtins"}


class Shell(nn.Module):
    """Stands in for a class of the pickled model's own code: holds what the pickle restores, runs nothing."""

    def forward(self, *args: object) -> None:
        raise TypeError("a pickled model's stand-in class has no forward; use its state_dict()")


def shell(module: str, name: str) -> type[Shell]:
    return type(name, (Shell,), {"__module__": module, "__qualname__": name})


def is_torch_module_class(module: str, name: str) -> bool:
    if not module.startswith("torch.nn.modules."):
        return False
    found = getattr(importlib.import_module(module), name, None)
    return isinstance(found, type) and issubclass(found, nn.Module)


def restricted_pickle(path: Path, namespaces: tuple[str, ...]) -> types.SimpleNamespace:
    """A ``pickle_module`` for ``torch.load`` whose Unpickler resolves only the allowlisted globals."""
    shells: dict[str, type[Shell]] = {}

    class Unpickler(pickle.Unpickler):
        def find_class(self, module: str, name: str) -> Any:
            module = PYTHON2_NAMES.get(module, module)
            qualified = f"{module}.{name}"
            if qualified in ALLOWED or is_torch_module_class(module, name):
                return super().find_class(module, name)
            if module.startswith(namespaces):
                return shells.setdefault(qualified, shell(module, name))
            raise ConfigError(
                f"{path} names '{qualified}', neither a torch.nn module nor a class of the source's code "
                f"({', '.join(namespaces)}); refusing to unpickle it"
            )

    def load(file: Any, **kwargs: Any) -> Any:
        return Unpickler(file, **kwargs).load()

    return types.SimpleNamespace(Unpickler=Unpickler, load=load, __name__="afsl_bench_restricted_pickle")


def read_pickled_model(path: Path, namespaces: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """The state dict of a whole model pickled in ``path`` whose own classes live under ``namespaces``."""
    pickle_module = restricted_pickle(path, namespaces)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "couldn't retrieve source code" of each stand-in class
            loaded = torch.load(path, map_location="cpu", weights_only=False, pickle_module=pickle_module)
    except ConfigError:
        raise
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, AttributeError, TypeError) as err:
        raise ConfigError(f"cannot read {path} as a pickled model ({type(err).__name__}: {err})") from None
    if isinstance(loaded, nn.Module):
        return dict(loaded.state_dict())
    if isinstance(loaded, dict) and all(isinstance(v, torch.Tensor) for v in loaded.values()):
        return dict(loaded)
    raise ConfigError(f"{path} holds a {type(loaded).__name__}, not a model or a state dict")
