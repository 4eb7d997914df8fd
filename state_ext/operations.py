"""What each state command does, in terms of the backend interface only.

Semantics follow ``meltano state`` (see the README for the few deliberate differences):
``set`` replaces both halves, ``merge`` deep-merges into ``partial``, ``import`` overwrites
each state of a ``meltano state export`` document. ``copy``/``move`` go through the transfer
engine (``state_ext.transfer``), the export document through ``state_ext.exports``.
"""

from __future__ import annotations

from collections.abc import Iterator

from state_ext.backends.base import StateBackend
from state_ext.errors import InvalidInputError
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


def merge_state(backend: StateBackend, state_id: str, partial: dict) -> Envelope:
    """A partial write, read and written under the ID's lock. A merge that would grow
    the state past the size limit raises inside the transaction: nothing is written."""
    validate_state_id(state_id)

    def change(current: Envelope | None) -> Envelope:
        merged = (current or Envelope()).merged_with_partial(partial)
        merged.check_stored_size(state_id)
        return merged

    return backend.update(state_id, change)


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
