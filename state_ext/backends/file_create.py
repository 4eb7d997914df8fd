"""New ``file://`` states without the lock, the one walk that plans a migration, and import.

A state planned as absent is written whole to a temporary file in its folder and linked to
``state.json``: ``link()`` fails if the name exists, so a reader sees no state or a complete
one, and a state someone created meanwhile (a ``meltano run``, ``meltano state set``) is
never replaced; it is reported instead. A folder that holds a ``lock`` by the time we get
there sends the state back to the locked path: a writer is at work on it. Writes are made
durable by the backend's ``flush`` (one ``syncfs``), like every bulk write.

The transfer engine does not read these states back (``--verify=read-back`` still does):
the kernel accepted every byte (``write`` counted them, ``close`` reported no error, which
is where NFS reports a failed write), ``link`` put the whole file in place, and ``flush``
runs before anything leaves the source and raises what the disk failed to store later
(``syncfs`` reports write-back errors). A read-back right after the write would come from
the page cache the write just filled: it checks nothing more, and cost an eighth of a
migration of 10,000 states.
"""

from __future__ import annotations

import os
from contextlib import ExitStack, suppress
from pathlib import Path

from state_ext import posix_io
from state_ext.backends import debris
from state_ext.backends.base import FAST_IMPORT_MIN, LOCK_FILE, STATE_FILE
from state_ext.backends.fast_create import CREATED, EXISTS, Listing, NewWrites
from state_ext.errors import BackendError, StateExtError
from state_ext.state_ids import matches

LOCKED = "locked"  # the folder holds a lock: the state goes back to the locked path


def plan_listing(backend, pattern: str | None = None) -> Listing:
    """States and locks from one walk; temporaries of dead processes are removed on the
    way (debris.py)."""
    ids, locked = [], set()
    if not backend.root.is_dir():
        return Listing(backend.list_ids(pattern))
    root = backend._root
    for dirpath, _dirnames, filenames in os.walk(root, onerror=backend._walk_error):
        debris.remove_dead_temps(dirpath, [f for f in filenames if f.startswith(".")])
        if dirpath == root:
            continue
        state_id = os.path.relpath(dirpath, root)
        if STATE_FILE in filenames and matches(state_id, pattern):
            ids.append(state_id)
        if LOCK_FILE in filenames:
            locked.add(state_id)
    return Listing(sorted(ids), locked)


def create_new_many(backend, states: dict, workers: int = 4) -> NewWrites:
    """``create_new`` for each state, on threads when the filesystem is slow enough for
    them to pay (``posix_io.map_file_calls``)."""
    result = NewWrites()
    if not states:
        return result
    backend._needs_flush = True
    backend.root.mkdir(parents=True, exist_ok=True)

    def one(state_id: str) -> tuple[str, str]:
        try:
            return state_id, create_new(backend, state_id, states[state_id].to_json())
        except StateExtError as exc:
            return state_id, exc.message

    for state_id, outcome in posix_io.map_file_calls(one, sorted(states), workers):
        if outcome == CREATED:
            result.created.append(state_id)
        elif outcome == EXISTS:
            result.exists.append(state_id)
        elif outcome == LOCKED:
            result.locked.append(state_id)
        else:
            result.failed[state_id] = outcome
    return result


def create_new(backend, state_id: str, text: str) -> str:
    """CREATED, EXISTS (someone created it: never replaced) or LOCKED (take the lock)."""
    directory = backend._path(state_id)
    target = os.path.join(directory, STATE_FILE)
    temporary = os.path.join(directory, f".state.json.{debris.temp_suffix()}.tmp")
    made = linked = False
    try:
        try:
            os.mkdir(directory)
            made = True
        except FileExistsError:  # a writer taking its lock, or a folder left empty
            if os.path.lexists(os.path.join(directory, LOCK_FILE)):
                return LOCKED
            posix_io.make_dir(directory)
        except FileNotFoundError:  # a nested ID whose parents do not exist yet
            os.makedirs(directory, exist_ok=True)
            made = True
        posix_io.write_new(temporary, text)
        try:
            os.link(temporary, target)  # fails if a state.json is there: never replaces
        except FileExistsError:
            return EXISTS
        linked = True
        return CREATED
    except OSError as exc:
        raise BackendError(f"Cannot write {target}: {posix_io.describe(exc)}") from None
    finally:
        with suppress(OSError):
            os.unlink(temporary)
        if made and not linked and not os.path.lexists(target):
            backend._prune(Path(directory))


def import_many(backend, states: dict) -> int:
    """Import: lock every ID that exists or is locked first, so that one lock we cannot
    take writes nothing; then create the new ones without a lock (``create_new_many``),
    and overwrite the rest, with those someone created meanwhile (import overwrites)."""
    fresh: dict = {}
    if len(states) >= FAST_IMPORT_MIN:
        seen = plan_listing(backend)
        taken = set(seen.ids) | seen.locked
        fresh = {i: e for i, e in states.items() if i not in taken}
    with ExitStack() as held:
        ready = [(i, held.enter_context(backend._locked(i)))
                 for i in sorted(states) if i not in fresh]
        result = create_new_many(backend, fresh)
        late = sorted(result.exists + result.locked)
        ready += [(i, held.enter_context(backend._locked(i))) for i in late]
        failures = {**result.failed, **backend._write_durably(ready, states)}
    backend.flush()
    if failures:
        written = len(states) - len(failures)
        raise BackendError(
            f"{next(iter(failures.values()))}; {written} of {len(states)} states were "
            "written (each one whole); running the same command again completes it")
    return len(states)
