"""What each state command does, in terms of the backend interface only.

Semantics follow ``meltano state`` (see the README for the few deliberate differences):
``set`` replaces both halves, ``merge`` deep-merges into ``partial``, ``import`` overwrites
each state of a ``meltano state export`` document. ``copy``/``move`` go through the transfer
engine (``state_ext.transfer``), the export document through ``state_ext.exports``.

State IDs are not checked here: each backend's public methods (``get``, ``transaction``
and so ``put``/``update``) refuse an invalid ID before touching the store, and the
command line checks the IDs it is given before it opens a backend (see
``cli.common.validate_ids``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from state_ext.backends.base import StateBackend
from state_ext.errors import BackendError, InvalidInputError
from state_ext.model import Envelope, validate_singer_state


def list_ids(backend: StateBackend, pattern: str | None = None) -> list[str]:
    return backend.list_ids(pattern)


def effective_state(backend: StateBackend, state_id: str) -> dict:
    """What ``meltano state get`` prints: ``{}`` when the ID has no state."""
    envelope = backend.get(state_id)
    return {} if envelope is None else envelope.effective()


def set_state(backend: StateBackend, state_id: str, state: dict) -> None:
    """A complete write: ``completed`` = state, ``partial`` = {}; refused before writing
    if its stored JSON would pass the size limit of one state."""
    envelope = Envelope.complete(state)
    envelope.check_stored_size(state_id)
    backend.put(state_id, envelope)


MERGE_ATTEMPTS = 5
SETTLE_SECONDS = 1.0  # a concurrent Meltano writer between its read and its write
_MISSING = object()


class _LeaveIt(Exception):
    """Abandons a re-application: the state now says something our merge must not undo."""


def _leaf_paths(patch: dict, above: tuple = ()) -> list[tuple]:
    paths = []
    for key, value in patch.items():
        if isinstance(value, dict) and value:
            paths += _leaf_paths(value, (*above, key))
        else:
            paths.append((*above, key))
    return paths


def _values_at(envelope: Envelope | None, paths: list[tuple]) -> list:
    """The effective state's values at ``paths`` (what a tap would read there)."""
    state = {} if envelope is None else envelope.effective()
    found = []
    for path in paths:
        node = state
        for key in path:
            node = node.get(key, _MISSING) if isinstance(node, dict) else _MISSING
            if node is _MISSING:
                break
        found.append(node)
    return found


def merge_state(backend: StateBackend, state_id: str, partial: dict) -> Envelope:
    """A partial write, read and written under the ID's lock. A merge that would grow
    the state past the size limit raises inside the transaction: nothing is written.

    Meltano's lock (file and object stores) is check-then-write: a Meltano writer can take
    our lock while we hold it and then write a state based on a read older than our
    write, silently dropping our merge. So the merge is only reported done once it is seen
    to have survived: if the lock was no longer ours after the write, or another writer
    was active around ours (then after ``SETTLE_SECONDS``), the state is looked at again.
    Our merge is applied again, under a fresh lock, only when the values at the merge's
    paths are back to what they were before it (the sign of a write based on a stale
    read; deep merge is idempotent, so re-applying changes nothing else). Values that are
    neither ours nor the old ones were written after us, and a cleared state was cleared
    after us: both are left as they are, with a warning. After ``MERGE_ATTEMPTS``
    overwritten attempts: one clear error.
    """
    from state_ext.backends.locks import watching

    paths = _leaf_paths(partial)
    seen: dict[str, list] = {}

    def change(current: Envelope | None) -> Envelope:
        merged = (current or Envelope()).merged_with_partial(partial)
        merged.check_stored_size(state_id)
        seen.setdefault("before", _values_at(current, paths))
        seen.setdefault("ours", _values_at(merged, paths))
        return merged

    def again(current: Envelope | None) -> Envelope:
        now = _values_at(current, paths)
        if current is None or now not in (seen["before"], seen["ours"]):
            raise _LeaveIt("cleared" if current is None else "changed")
        return change(current)

    result = None
    for attempt in range(1, MERGE_ATTEMPTS + 1):
        try:
            with watching() as report:
                result = backend.update(state_id, change if attempt == 1 else again)
        except _LeaveIt as left:
            backend.warn(f"The merge into state ID {state_id!r} was not applied again: the "
                         f"state was {left} by another writer after it")
            return result
        if not report.lost and not report.contended:
            return result
        if not report.lost:
            time.sleep(SETTLE_SECONDS)
        current = backend.get(state_id)
        now = _values_at(current, paths)
        if current is not None and now == seen["ours"]:
            if not report.lost:
                return result
        elif current is None or now != seen["before"]:
            backend.warn(f"The merge into state ID {state_id!r} was overwritten by a newer "
                         "write of another process (or the state was cleared): left as it is")
            return result
        why = "another writer took the lock while the merge held it" if report.lost else \
            "a concurrent writer overwrote it"
        if attempt < MERGE_ATTEMPTS:
            backend.warn(f"The merge into state ID {state_id!r} may have been lost ({why}; "
                         "Meltano's lock is check-then-write): applied it again "
                         f"(attempt {attempt + 1} of {MERGE_ATTEMPTS})")
    raise BackendError(
        f"The merge into state ID {state_id!r} ({backend.label}) was overwritten by another "
        f"writer {MERGE_ATTEMPTS} times in a row (a Meltano process writing the same state "
        "without an exclusive lock); it may not be in the stored state: run the merge again "
        "once the other writers are done"
    )


def merge_from_state_id(backend: StateBackend, src_id: str, dst_id: str) -> Envelope:
    """``merge DST --from-state-id SRC``: SRC's effective state as a partial write."""
    source = effective_state(backend, src_id)
    if not source:
        raise InvalidInputError(f"No state found for state ID {src_id!r}")
    validate_singer_state(source)
    return merge_state(backend, dst_id, source)


def iter_export(
    backend: StateBackend, pattern: str | None = None
) -> Iterator[tuple[str, Envelope]]:
    return backend.iter_all(pattern)


def import_states(backend: StateBackend, states: dict[str, Envelope]) -> int:
    """Overwrite every ID in the document; the document was fully validated first."""
    return backend.put_many(states)
