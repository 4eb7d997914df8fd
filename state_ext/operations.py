"""What each state command does, in terms of the backend interface only.

Semantics follow ``meltano state`` (see the README for the few deliberate differences):
``set`` replaces both halves, ``merge`` deep-merges into ``partial``, ``import`` overwrites
each state of a ``meltano state export`` document. ``copy``/``move`` go through the transfer
engine (``state_ext.transfer``), the export document through ``state_ext.exports``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from state_ext.backends.base import StateBackend
from state_ext.errors import BackendError, InvalidInputError
from state_ext.model import Envelope, validate_singer_state
from state_ext.state_ids import validate_state_id


def list_ids(backend: StateBackend, pattern: str | None = None) -> list[str]:
    return backend.list_ids(pattern)


def effective_state(backend: StateBackend, state_id: str) -> dict:
    """What ``meltano state get`` prints: ``{}`` when the ID has no state."""
    envelope = backend.get(validate_state_id(state_id))
    return {} if envelope is None else envelope.effective()


def set_state(backend: StateBackend, state_id: str, state: dict) -> None:
    """A complete write: ``completed`` = state, ``partial`` = {}; refused before writing
    if its stored JSON would pass the size limit of one state."""
    envelope = Envelope.complete(state)
    envelope.check_stored_size(validate_state_id(state_id))
    backend.put(state_id, envelope)


MERGE_ATTEMPTS = 5
SETTLE_SECONDS = 1.0  # a concurrent Meltano writer between its read and its write


def merge_state(backend: StateBackend, state_id: str, partial: dict) -> Envelope:
    """A partial write, read and written under the ID's lock. A merge that would grow
    the state past the size limit raises inside the transaction: nothing is written.

    Meltano's lock (file and object stores) is check-then-write: a Meltano writer can take
    our lock while we hold it and then write a state based on a read older than our
    write, silently dropping our merge. So the merge is only reported done once it is seen
    to have survived: if the lock was no longer ours after the write, the merge is applied
    again under a fresh lock (deep merge is idempotent: re-applying it changes nothing
    else); if another writer was active around ours, the state is read again after
    ``SETTLE_SECONDS`` and the merge re-applied if it is gone (``merged == current`` means
    it is there). After ``MERGE_ATTEMPTS`` overwritten attempts: one clear error.
    """
    from state_ext.backends.locks import watching

    validate_state_id(state_id)

    def change(current: Envelope | None) -> Envelope:
        merged = (current or Envelope()).merged_with_partial(partial)
        merged.check_stored_size(state_id)
        return merged

    for attempt in range(1, MERGE_ATTEMPTS + 1):
        with watching() as report:
            result = backend.update(state_id, change)
        if report.lost:
            why = "another writer took the lock while the merge held it"
        elif not report.contended:
            return result
        else:
            time.sleep(SETTLE_SECONDS)
            current = backend.get(state_id)
            if current is not None and current.merged_with_partial(partial) == current:
                return result
            why = "a concurrent writer overwrote it"
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
