"""Leftovers of killed runs: recognise our own, and remove them once their owner is gone.

A SIGKILL can stop a run between any two system calls, so three kinds of debris are
possible, and each is named or judged so that a later run can clean it without ever
touching what a live writer still uses:

* file:// temporary names: ``.state.json.<host>.<pid>.<rand>.<n>.tmp`` and
  ``.lock.<host>...`` (beside a state) and ``.state-ext-write-check.<host>...`` (the
  writability probe). A folder a new state was being created in may be left empty:
  Meltano ignores it, and the re-run, which plans that state as new, writes it there.
  Every run that writes a state folder removes those of its own ``<host>`` whose process
  no longer exists. ``<host>`` names the machine *and* its process-ID namespace, because a
  pid means something only there: two containers sharing a volume each see the other's
  pids as free, and must leave each other's files alone. (A zombie counts as alive until
  it is reaped.)
* object-store writability probes, ``<prefix>/.state-ext-write-check.<host>.<pid>.<rand>``:
  removed by the next run on the same host once that pid is gone.
* lock objects: Meltano's protocol lets any writer delete a lock older than
  ``lock_timeout_seconds``; ``sweep_stale_locks`` does so for the IDs of a migration's plan,
  only if the lock is still the version it read.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import shutil
import socket
import time
import uuid
import zlib

from state_ext.backends.locks import lock_age


def _pid_namespace() -> str:
    try:
        return os.readlink("/proc/self/ns/pid")  # "pid:[4026531836]": one per container
    except OSError:
        return ""


HOST = f"{zlib.crc32((socket.gethostname() + _pid_namespace()).encode()):08x}"
TEMP = re.compile(r"^\.(state\.json|lock|state-ext-write-check)"
                  r"\.([0-9a-f]{8})\.(\d+)\.[0-9a-f]{8}\.\d+\.tmp$")
SCRATCH = re.compile(r"^\.state-ext-write-check\.([0-9a-f]{8})\.(\d+)\.[0-9a-f]{8}$")
_COUNTER = itertools.count()
_PREFIX: list[str] = []


def temp_suffix() -> str:
    """The ``<host>.<pid>.<rand>.<n>`` of a file:// temporary name (``TEMP``): no other
    process or thread can pick it, and a later run can tell when its owner is gone."""
    if not _PREFIX:
        _PREFIX.append(f"{HOST}.{os.getpid()}.{uuid.uuid4().hex[:8]}")
    return f"{_PREFIX[0]}.{next(_COUNTER)}"


if hasattr(os, "register_at_fork"):  # a forked child is another process: a new prefix
    os.register_at_fork(after_in_child=_PREFIX.clear)


def process_gone(pid: int) -> bool:
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OverflowError):
        return False
    return False


def dead_temp(name: str) -> bool:
    """A file:// temporary name of this host and pid namespace whose process is gone."""
    found = TEMP.match(name)
    return bool(found) and found.group(2) == HOST and process_gone(int(found.group(3)))


def remove_dead_temps(folder: str, names) -> int:
    """Remove the dead temporaries among ``names`` in ``folder``."""
    removed = 0
    for name in names:
        if not dead_temp(name):
            continue
        path = os.path.join(folder, name)
        with contextlib.suppress(FileNotFoundError):
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            else:
                os.unlink(path)
            removed += 1
    return removed


def scratch_name() -> str:
    """The key of an object-store writability probe: this host, this pid."""
    return f".state-ext-write-check.{HOST}.{os.getpid()}.{os.urandom(4).hex()}"


def dead_scratch(name: str) -> bool:
    found = SCRATCH.match(name)
    return bool(found) and found.group(1) == HOST and process_gone(int(found.group(2)))


async def delete_dead_scratch(backend, keys: list[str]) -> None:
    for key in keys:
        await backend.store.delete(key)


def _age(backend, state_id: str, current) -> float | None:
    age = lock_age(current[0])
    if age is None:  # empty or unreadable: judged by the store's modification time
        modified = backend.lock_modified(state_id)
        age = None if modified is None else time.time() - modified - 1.0
    return age


def sweep_stale_locks(backend, state_ids) -> int:
    """Delete the stale locks of ``state_ids``; returns how many were deleted.

    A lock older than ``lock_timeout_seconds`` is deleted if it is still the version read.
    A younger one (a crash a moment ago, or a live writer) is waited for, at most the
    timeout: a live writer releases it meanwhile or replaces it (then it is
    left alone); one that is still the same version once past the timeout is stale by
    Meltano's own rule and deleted. A lock dated in the future is never deleted.
    """
    timeout = backend.settings.lock_timeout_seconds
    removed, pending = 0, []
    for state_id in state_ids:
        current = backend.read_lock(state_id)
        if current is None:
            continue
        age = _age(backend, state_id, current)
        if age is not None and age > timeout:
            removed += _remove(backend, state_id, current)
        elif age is not None and age >= 0:
            pending.append((state_id, current, timeout - age))
    if pending:
        time.sleep(min(timeout, max(left for _, _, left in pending)) + 0.2)
        for state_id, seen, _ in pending:
            current = backend.read_lock(state_id)
            if current is not None and current == seen:
                age = _age(backend, state_id, current)
                if age is not None and age > timeout:
                    removed += _remove(backend, state_id, current)
    return removed


def _remove(backend, state_id: str, seen) -> int:
    """Remove the lock if it is still ``seen``; 1 if it is gone afterwards (a lock taken
    meanwhile is kept by the conditional removal, and not counted)."""
    backend.remove_if_unchanged(state_id, *seen)
    return int(backend.read_lock(state_id) is None)
