"""The one interface every state backend implements.

Reads take no lock (as in Meltano). Every write goes through ``transaction(state_id)``,
which holds the backend's lock for that ID (a lock file or object for stores, a row or
advisory lock in a database) around one read-modify-write, so that a partial merge never
loses a concurrent update and Meltano and state-ext exclude each other.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager

from state_ext.model import Envelope
from state_ext.redact import redact_uri
from state_ext.settings import BackendSettings

# The one failure line for a state that another writer (Meltano, another state-ext) changed
# between our read and our write; the transfer engine recognises it to sort out races.
CHANGED = "changed by another process during the operation"
# Meltano's layout on file:// and object stores: <state ID>/state.json and <state ID>/lock.
STATE_FILE, LOCK_FILE = "state.json", "lock"
# An import of this many states is worth one listing of the store first, to write the new
# ones by one conditional create each (issue 13) instead of one locked write each.
FAST_IMPORT_MIN = 20


class StateSlot(ABC):
    """One state ID inside a transaction: read it, then write or delete it."""

    @abstractmethod
    def read(self) -> Envelope | None: ...

    @abstractmethod
    def write(self, envelope: Envelope) -> None: ...

    @abstractmethod
    def delete(self) -> bool:
        """Remove the state; False when there was none."""


class StateBackend(ABC):
    """A store of envelopes keyed by state ID."""

    def __init__(self, settings: BackendSettings, *, warn: Callable[[str], None] | None = None):
        self.settings = settings
        self.warn = warn or (lambda message: None)

    @property
    def label(self) -> str:
        """The URI with secrets hidden, for messages and logs."""
        return redact_uri(self.settings.uri)

    @property
    def location(self) -> tuple[str, str, str]:
        """(kind, container, path) naming where the states live, however the URI is spelled.

        Two backends overlap when kind and container are equal and one path is the other
        or lies inside it; ``migrate`` refuses that (a delete would hit the copy).
        """
        return (type(self).__name__, self.label, "")

    def overlaps(self, other: StateBackend) -> bool:
        kind, container, path = self.location
        other_kind, other_container, other_path = other.location
        if (kind, container) != (other_kind, other_container):
            return False
        if not path or not other_path or path == other_path:
            return True
        return path.startswith(other_path + "/") or other_path.startswith(path + "/")

    # -- reads -------------------------------------------------------------------
    @abstractmethod
    def list_ids(self, pattern: str | None = None) -> list[str]:
        """All state IDs (fnmatch ``pattern``, full and case-sensitive), sorted."""

    @abstractmethod
    def get(self, state_id: str) -> Envelope | None:
        """The stored envelope, or None when the ID has no state."""

    def iter_states(self, state_ids: Iterable[str]) -> Iterator[tuple[str, Envelope | None]]:
        """Many reads; backends that can batch them override this."""
        for state_id in state_ids:
            yield state_id, self.get(state_id)

    def iter_all(self, pattern: str | None = None) -> Iterator[tuple[str, Envelope]]:
        """Every stored state matching ``pattern``; databases stream it in one query."""
        for state_id, envelope in self.iter_states(self.list_ids(pattern)):
            if envelope is not None:  # deleted between list and read
                yield state_id, envelope

    # -- writes ------------------------------------------------------------------
    @abstractmethod
    def transaction(self, state_id: str) -> AbstractContextManager[StateSlot]:
        """Hold the lock of ``state_id`` while the caller reads and writes it."""

    def update(self, state_id: str, change: Callable[[Envelope | None], Envelope]) -> Envelope:
        with self.transaction(state_id) as slot:
            envelope = change(slot.read())
            slot.write(envelope)
            return envelope

    def put(self, state_id: str, envelope: Envelope) -> None:
        with self.transaction(state_id) as slot:
            slot.write(envelope)

    def delete(self, state_id: str) -> bool:
        with self.transaction(state_id) as slot:
            return slot.delete()

    def put_many(self, states: dict[str, Envelope]) -> int:
        """Overwrite every listed ID (import); databases do it in one transaction."""
        for state_id, envelope in states.items():
            self.put(state_id, envelope)
        return len(states)

    def delete_many(self, state_ids: Iterable[str]) -> int:
        return sum(1 for state_id in state_ids if self.delete(state_id))

    # -- checked bulk writes (migrate) ---------------------------------------------
    def put_many_checked(
        self, states: dict[str, Envelope], expected: dict[str, str | None], concurrency: int = 8
    ) -> dict[str, str]:
        """Write each state under its lock only if the store still holds ``expected[id]``.

        ``expected`` maps an ID to the digest of the envelope planned over (None: absent).
        Returns the IDs that were not written, with the reason. Stores override this to
        batch; the default runs per-ID transactions on a thread pool.
        """
        return _run_checked(
            self, states, lambda slot, state_id: slot.write(states[state_id]),
            expected, concurrency,
        )

    def delete_many_checked(self, expected: dict[str, str], concurrency: int = 8) -> dict[str, str]:
        """Delete each ID under its lock only if it still holds ``expected[id]``."""
        return _run_checked(self, expected, lambda slot, state_id: slot.delete(), expected,
                            concurrency)

    def check_writable(self) -> None:
        """Fail at once, in one line, when this store refuses writes (a read-only folder
        or database, a bucket without write permission): a bulk write would otherwise
        fail once per state. Writes and deletes one scratch state, through the same
        paths (locks included) as every other write."""
        import os

        from state_ext.errors import BackendError

        scratch = f"state-ext-write-check:{os.getpid()}-{os.urandom(4).hex()}"
        try:
            self.put(scratch, Envelope())
            self.delete(scratch)
        except BackendError as exc:
            raise BackendError(
                f"{self.label} does not accept writes, so nothing was written: {exc.message}"
            ) from None
        except OSError as exc:
            raise BackendError(f"{self.label} does not accept writes, so nothing was written: "
                               f"{exc.strerror or exc}") from None

    def flush(self) -> None:  # noqa: B027 - optional hook
        """Make bulk writes durable (a barrier); stores whose writes are durable do nothing."""

    def close(self) -> None:  # noqa: B027 - optional hook, most backends hold nothing
        """Release connections; the CLI calls it once per command."""

    def __enter__(self) -> StateBackend:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def digest(envelope: Envelope | None) -> str | None:
    """A short fingerprint of an envelope's content (None when absent)."""
    if envelope is None:
        return None
    import hashlib

    return hashlib.sha256(envelope.canonical().encode()).hexdigest()


def _run_checked(backend, state_ids, action, expected, concurrency) -> dict[str, str]:
    from concurrent.futures import ThreadPoolExecutor

    from state_ext.errors import StateExtError

    def one(state_id: str) -> tuple[str, str | None]:
        try:
            with backend.transaction(state_id) as slot:
                if digest(slot.read()) != expected[state_id]:
                    return state_id, CHANGED
                action(slot, state_id)
        except StateExtError as exc:
            return state_id, exc.message
        return state_id, None

    ids = list(state_ids)
    if concurrency <= 1 or len(ids) <= 1:
        results = map(one, ids)
    else:
        with ThreadPoolExecutor(max_workers=concurrency) as pool:  # joined even on error
            results = list(pool.map(one, ids))
    return {state_id: reason for state_id, reason in results if reason}
