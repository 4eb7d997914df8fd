"""See and clear the lock objects of file:// and object stores (``locks``, ``unlock``).

A crashed writer (a killed ``meltano state merge`` or run) leaves ``<state_id>/lock``
behind; Meltano gives no way to see it and takes it over only once it is older than
``lock_timeout_seconds``. These tools list every lock with its age, say whether it is
live or stale by that timeout (Meltano's rule: a lock dated in the future stays live),
and remove one only if it is still the lock that was shown (``remove_if_unchanged``:
same inode or object version), never a lock another process took meanwhile.

Built only on the backends' public lock primitives (``read_lock``, ``lock_modified``,
``remove_if_unchanged``, ``lock_location``; ``state_ext.backends.locks``) and, to find
the lock objects, the file backend's ``root`` and the object store's ``store`` listing.
The system database and add-on backends keep no lock objects.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

from state_ext.backends.locks import LockPrimitives, describe_lock, lock_age
from state_ext.errors import BackendError, ConfigurationError
from state_ext.state_ids import matches, state_id_problem

LOCK_FILE = "lock"


@dataclass
class LockInfo:
    state_id: str
    location: str
    content: str
    marker: Any
    age: float | None  # seconds; None when neither the content nor the store tells
    stale: bool

    def cells(self) -> tuple[str, str, str, str]:
        """state ID, live or stale, age, path or key: a row of the ``locks`` table."""
        age = "?" if self.age is None else f"{self.age:.0f}s"
        return self.state_id, "stale" if self.stale else "live", age, self.location

    def describe(self) -> str:
        return describe_lock(self.content)

    def to_dict(self) -> dict:
        return {"state_id": self.state_id, "location": self.location,
                "age_seconds": None if self.age is None else round(self.age, 3),
                "stale": self.stale, "content": self.content}


def supported(backend) -> bool:
    return isinstance(backend, LockPrimitives)


def require_support(backend) -> None:
    if not supported(backend):
        raise ConfigurationError(
            f"{backend.label} keeps no lock objects: locks and unlock work on file:// and "
            "object stores (the system database locks rows inside each transaction)")


def lock_ids(backend, pattern: str | None = None) -> list[str]:
    """State IDs that have a lock object (with or without a state next to it)."""
    require_support(backend)
    root = getattr(backend, "root", None)
    found = _file_lock_ids(root) if root is not None else _object_lock_ids(backend)
    return sorted(i for i in found if state_id_problem(i) is None and matches(i, pattern))


def _file_lock_ids(root) -> list[str]:
    if not root.is_dir():
        return []
    found = []
    for dirpath, _dirs, files in os.walk(root):
        if LOCK_FILE in files and dirpath != str(root):
            found.append(os.path.relpath(dirpath, root))
    return found


def _object_lock_ids(backend) -> list[str]:
    from state_ext.backends import aio

    loop = getattr(backend.fs, "loop", None)
    if loop is None:
        from fsspec.asyn import get_loop

        loop = get_loop()
    prefix = backend.list_prefix
    try:
        keys = aio.run(loop, backend.store.list_keys(prefix), 120)
    except Exception as exc:  # noqa: BLE001 - any SDK failure is one line
        raise BackendError(backend.describe_failure("list locks", exc)) from None
    suffix = "/" + LOCK_FILE
    return [k[len(prefix):-len(suffix)] for k in keys
            if k.startswith(prefix) and k.endswith(suffix)]


def read_lock(backend, state_id: str, now: float | None = None) -> LockInfo | None:
    """The lock of ``state_id`` as it is now, or None when there is none."""
    current = backend.read_lock(state_id)
    if current is None:
        return None
    content, marker = current
    age = lock_age(content)
    if age is None:
        modified = backend.lock_modified(state_id)
        age = None if modified is None else (now or time.time()) - modified
    timeout = backend.settings.lock_timeout_seconds
    return LockInfo(state_id, backend.lock_location(state_id), content, marker, age,
                    stale=age is not None and age > timeout)


def read_locks(backend, pattern: str | None = None) -> list[LockInfo]:
    found = (read_lock(backend, state_id) for state_id in lock_ids(backend, pattern))
    return [info for info in found if info is not None]


def remove(backend, shown: LockInfo) -> LockInfo | None:
    """Delete the lock only if it still is ``shown``; returns the lock there now: None,
    or another process's lock taken meanwhile (left alone)."""
    backend.remove_if_unchanged(shown.state_id, shown.content, shown.marker)
    return read_lock(backend, shown.state_id)


def same(one: LockInfo | None, other: LockInfo | None) -> bool:
    return one is not None and other is not None and \
        (one.content, one.marker) == (other.content, other.marker)
