"""What each state command does, in terms of the backend interface only.

Semantics follow ``meltano state`` (see the README for the few deliberate differences):
``set`` replaces both halves, ``merge`` deep-merges into ``partial``, ``copy``/``move``
carry the envelope exactly (both halves), ``export``/``import`` use the document of
``meltano state export``.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from typing import IO

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


def clear_state(backend: StateBackend, state_id: str) -> bool:
    return backend.delete(validate_state_id(state_id))


def clear_all(backend: StateBackend) -> int:
    return backend.delete_many(backend.list_ids())


def copy_state(src: StateBackend, src_id: str, dst: StateBackend, dst_id: str) -> Envelope:
    """Copy the envelope exactly (Meltano flattens it into ``completed``)."""
    validate_state_id(dst_id)
    envelope = src.get(validate_state_id(src_id))
    if envelope is None:
        raise InvalidInputError(f"No state found for state ID {src_id!r}")
    dst.put(dst_id, envelope)
    return envelope


def move_state(src: StateBackend, src_id: str, dst: StateBackend, dst_id: str) -> None:
    """Copy, read back to verify, then delete the source."""
    envelope = copy_state(src, src_id, dst, dst_id)
    written = dst.get(dst_id)
    if written is None or written.canonical() != envelope.canonical():
        raise InvalidInputError(
            f"State {dst_id!r} did not read back as written; source {src_id!r} kept"
        )
    if src is dst and src_id == dst_id:
        return
    src.delete(src_id)


def iter_export(
    backend: StateBackend, pattern: str | None = None
) -> Iterator[tuple[str, Envelope]]:
    return backend.iter_all(pattern)


def write_export(states: Iterator[tuple[str, Envelope]], out: IO[str]) -> int:
    """Stream ``meltano state export``'s document: compact JSON, one trailing newline.

    States are read and encoded a thousand at a time, in one call of the C encoder
    each, which is what makes a big export fast. Nothing is written before the first
    thousand are read, so a store that cannot be read (or a small one with a corrupt
    state) leaves stdout empty; a failure further on ends the command non-zero.
    """
    compact = json.JSONEncoder(separators=(",", ":")).encode
    states = iter(states)
    count = 0
    while True:
        batch = {i: e.to_dict() for i, e in itertools.islice(states, 1000)}
        if not batch:
            break
        out.write(("," if count else "{") + compact(batch)[1:-1])
        count += len(batch)
    out.write(("}" if count else "{}") + "\n")
    return count


def import_states(backend: StateBackend, states: dict[str, Envelope]) -> int:
    """Overwrite every ID in the document; the document was fully validated first."""
    return backend.put_many(states)
