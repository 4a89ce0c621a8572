"""The one atomic writer: every file the suite writes (records, tables, checkpoints, caches, prepared shards,
the leaderboard page, the CI baseline) goes through ``atomic_write``.

The content is written to a temporary file in the target's own folder, flushed to disk, then renamed over
the target (``os.replace`` is atomic on POSIX and Windows), so a reader or a killed process sees the old file
or the new one, never half of one; on any error (Ctrl-C included) the temporary file is removed.
"""

from __future__ import annotations

import errno
import os
import pickle
import tempfile
from collections.abc import Callable
from pathlib import Path

from afsl_bench.core.errors import ConfigError, DiskFullError

#: what reading a file that is not what it should be raises (torch.load of an empty, truncated or foreign
#: file; JSON that is not the expected mapping): the store treats such files as absent and rebuilds them
UNREADABLE = (OSError, EOFError, RuntimeError, ValueError, KeyError, TypeError, AttributeError,
              pickle.UnpicklingError)  # fmt: skip


def check_writable(folder: Path | str, what: str, fix: str) -> Path:
    """Refuse, before any work that would be lost otherwise, a ``folder`` this process cannot write into or
    create (a file in the way, a read-only place): a ConfigError naming it, the reason and ``fix``. Nothing
    is created: the nearest existing folder on the path is checked."""
    folder = Path(folder)
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        reason = f"{existing} is a file" if existing == folder else f"{existing} is not a folder"
    elif not os.access(existing, os.W_OK | os.X_OK):
        reason = f"no permission to write in {existing}"
    else:
        return folder
    raise ConfigError(f"{what} {folder} is not writable ({reason}): {fix}")


def atomic_write(path: Path | str, write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp)`` on a temporary path beside ``path``, then move the result over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        _fsync(tmp)
        tmp.chmod(0o666 & ~_umask())  # mkstemp makes 0600; the file gets the mode any other write would
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        if err.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DiskFullError(
                f"no space left on device writing in {path.parent} ({err.strerror}): free space there or "
                "pass another --results-dir; what was written before is kept"
            ) from None
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_bytes(path: Path | str, data: bytes) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def atomic_write_text(path: Path | str, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def _fsync(path: Path) -> None:
    with path.open("rb") as handle:
        os.fsync(handle.fileno())
