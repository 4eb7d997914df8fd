"""See and clear the lock objects of file:// and object stores (``locks``, ``unlock``).

A crashed writer (a killed ``meltano state merge`` or run) leaves ``<state_id>/lock``
behind; Meltano gives no way to see it and takes it over only once it is older than
``lock_timeout_seconds``. These tools list every lock with its age, say whether it is
live or stale by that timeout (Meltano's rule: a lock dated in the future stays live),
and remove one only if it is still the lock that was shown (``remove_if_unchanged``:
same inode or object version), never a lock another process took meanwhile.

Built only on the backends' public lock primitives (``read_lock``, ``lock_modified``,
``remove_if_unchanged``, ``lock_location``; ``state_ext.backends.locks``) and, to find
the lock objects, the file backend's ``root`` and the object store's ``store`` listing
(run through its ``run``).
The system database keeps no lock objects (it locks rows inside each transaction); what
blocks a pipeline there after a crash is a ``runs`` row left in state RUNNING ("pipeline
already running"), so ``locks`` lists those rows with their last heartbeat, stale by
Meltano's own rule (no heartbeat for 5 minutes, or a row without heartbeats started more
than 24 hours ago). Add-on backends keep their locks out of sight.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

from state_ext.backends.base import LOCK_FILE, STATE_FILE
from state_ext.backends.locks import LockPrimitives, describe_lock, lock_age
from state_ext.errors import ConfigurationError
from state_ext.state_ids import matches, state_id_problem


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
            f"{backend.label} keeps no lock objects: unlock works on file:// and object "
            "stores (the system database locks rows inside each transaction; `locks` shows "
            "its runs rows left RUNNING)")


def listing(backend, pattern: str | None = None) -> tuple[list[str], list[str]]:
    """(IDs with a state, IDs with a lock) from one listing of a file:// or object store
    (``check`` needs both: one listing instead of two, 10 requests fewer per 10,000)."""
    require_support(backend)
    root = getattr(backend, "root", None)
    entries = _file_entries(backend, root) if root is not None else _object_entries(backend)
    found: dict[str, set[str]] = {STATE_FILE: set(), LOCK_FILE: set()}
    for state_id, name in entries:
        if state_id_problem(state_id) is None and matches(state_id, pattern):
            found[name].add(state_id)
    return sorted(found[STATE_FILE]), sorted(found[LOCK_FILE])


def lock_ids(backend, pattern: str | None = None) -> list[str]:
    """State IDs that have a lock object (with or without a state next to it)."""
    return listing(backend, pattern)[1]


def _file_entries(backend, root) -> list[tuple[str, str]]:
    if root.exists() and not root.is_dir():
        backend.list_ids()  # raises the backend's own one-line error
    found = []
    for dirpath, _dirs, files in os.walk(root):
        if dirpath != str(root):
            found += [(os.path.relpath(dirpath, root), name)
                      for name in (STATE_FILE, LOCK_FILE) if name in files]
    return found


def _object_entries(backend) -> list[tuple[str, str]]:
    prefix = backend.list_prefix
    keys = backend.run("list state", backend.store.list_keys, prefix)
    found = []
    for key in keys:
        head, _, name = key.rpartition("/")
        if key.startswith(prefix) and name in (STATE_FILE, LOCK_FILE) and len(head) > len(prefix):
            found.append((head[len(prefix):], name))
    return found


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


def locks_and_runs(backend, pattern: str | None = None) -> tuple[list, list]:
    """What ``locks`` lists: the lock objects of a file:// or object store, or, on the
    system database (which keeps none), Meltano's ``runs`` rows left RUNNING."""
    if supported(backend):
        return read_locks(backend, pattern), []
    if hasattr(backend, "engine"):
        return [], running_runs(backend, pattern)
    require_support(backend)
    return [], []  # pragma: no cover - require_support raised


def remove(backend, shown: LockInfo) -> LockInfo | None:
    """Delete the lock only if it still is ``shown``; returns the lock there now: None,
    or another process's lock taken meanwhile (left alone)."""
    backend.remove_if_unchanged(shown.state_id, shown.content, shown.marker)
    return read_lock(backend, shown.state_id)


def same(one: LockInfo | None, other: LockInfo | None) -> bool:
    return one is not None and other is not None and \
        (one.content, one.marker) == (other.content, other.marker)


# -- the system database: runs rows left RUNNING -----------------------------------------
HEARTBEAT_VALID = 5 * 60  # Meltano's HEARTBEAT_VALID_MINUTES
HEARTBEATLESS_VALID = 24 * 3600  # Meltano's HEARTBEATLESS_JOB_VALID_HOURS


@dataclass
class RunningRun:
    state_id: str
    run_row: int
    run_id: str
    started_at: str | None
    last_heartbeat_at: str | None
    age: float | None  # seconds since the last heartbeat (or the start, without any)
    stale: bool

    def cells(self) -> tuple[str, str, str, str]:
        age = "?" if self.age is None else f"{self.age:.0f}s"
        beat = self.last_heartbeat_at or "no heartbeat"
        return (self.state_id, "stale" if self.stale else "live", age,
                f"runs row {self.run_row} RUNNING (run {self.run_id}, last heartbeat {beat})")

    def to_dict(self) -> dict:
        return {"state_id": self.state_id, "run_row": self.run_row, "run_id": self.run_id,
                "started_at": self.started_at, "last_heartbeat_at": self.last_heartbeat_at,
                "age_seconds": None if self.age is None else round(self.age, 3),
                "stale": self.stale}


def running_runs(backend, pattern: str | None = None) -> list[RunningRun]:
    """``runs`` rows in state RUNNING, read through the system database backend's engine."""
    from state_ext.backends.systemdb.runs import running_runs as rows

    now = time.time()
    found = []
    for row_id, state_id, run_id, started, beat in rows(backend):
        if not matches(state_id, pattern):
            continue
        since = _epoch(beat) if beat is not None else _epoch(started)
        age = None if since is None else now - since
        limit = HEARTBEAT_VALID if beat is not None else HEARTBEATLESS_VALID
        found.append(RunningRun(state_id, row_id, str(run_id), _text(started), _text(beat),
                                age, stale=age is not None and age > limit))
    return found


def _epoch(value) -> float | None:
    """A stored time (naive means UTC, as Meltano writes it) as epoch seconds."""
    from datetime import datetime, timezone

    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return None
    if not isinstance(value, datetime):
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.timestamp()


def _text(value) -> str | None:
    return None if value is None else str(value)
