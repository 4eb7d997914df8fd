"""``file://`` backend: Meltano's folder layout on the local filesystem (POSIX).

``<dir>/<state_id>/state.json`` holds the envelope and ``<dir>/<state_id>/lock`` the lock,
with the raw state ID as folder name (IDs with ``/`` nest). Unlike Meltano we write
atomically (temporary file, fsync, rename), so a reader never sees half a file (a migration
renames without the per-file fsync and makes the whole batch durable with one ``syncfs``
in ``flush``); we list nested IDs too; and a delete removes only that ID's files, never the
IDs nested below it.

Here are the reads and the locked writes. The layout's names are in ``file_layout``, the
lock files in ``file_locks``, states created without the lock (with the one walk that
plans a migration, and import) in ``file_create``, temporary names and their cleanup in
``debris``, and the system calls (atomic write, ``syncfs``, folder fsync) in
``state_ext.posix_io``.
``file_create`` and ``debris`` are imported by the methods that write, so that ``get`` and
``list``, a tenth of a second each, do not load them (with their ``socket``, ``uuid`` and
thread pools: 5 ms, measured by ``benchmarks/bench_single.py``).
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager
from pathlib import Path

from state_ext import posix_io
from state_ext.backends.base import (
    CHANGED,
    STATE_FILE,
    StateBackend,
    StateSlot,
    digest,
)
from state_ext.backends.file_layout import state_dir_from_uri
from state_ext.backends.file_locks import FileLockPrimitives
from state_ext.backends.locks import hold_lock
from state_ext.errors import BackendError, StateExtError
from state_ext.model import Envelope
from state_ext.state_ids import matches, validate_state_id

READ_ATTEMPTS = 5  # Meltano truncates then writes: give a concurrent writer a moment


class FileBackend(StateBackend, FileLockPrimitives):
    def __init__(self, settings, **kwargs):
        super().__init__(settings, **kwargs)
        self.root = state_dir_from_uri(settings.uri)
        self._root = str(self.root)

    @property
    def location(self):
        return ("file", "", str(self.root.resolve()).rstrip("/"))

    def _path(self, state_id: str, name: str = "") -> str:
        """The ID's folder, or ``name`` in it, as a plain string (no ``Path``): the bulk
        paths run it ~10 times per state. Every path to a state's files goes through here,
        so every one is of a validated ID."""
        validate_state_id(state_id)
        directory = os.path.join(self._root, state_id)
        return os.path.join(directory, name) if name else directory

    # -- reads -------------------------------------------------------------------
    def list_ids(self, pattern: str | None = None) -> list[str]:
        if not self.root.exists():
            return []
        if not self.root.is_dir():
            raise BackendError(f"State directory {self.root} is not a directory")
        found = []
        for dirpath, _dirnames, filenames in os.walk(self.root, onerror=self._walk_error):
            if STATE_FILE in filenames and dirpath != str(self.root):
                state_id = os.path.relpath(dirpath, self.root)
                if matches(state_id, pattern):
                    found.append(state_id)
        return sorted(found)

    def _walk_error(self, exc: OSError) -> None:
        raise BackendError(f"Cannot list {self.root}: {posix_io.describe(exc)}")

    def get(self, state_id: str) -> Envelope | None:
        path = self._path(state_id, STATE_FILE)
        for attempt in range(READ_ATTEMPTS):
            try:
                text = posix_io.read_with_inode(path)[0]
            except (FileNotFoundError, NotADirectoryError):
                return None
            except OSError as exc:
                raise BackendError(f"Cannot read {path}: {posix_io.describe(exc)}") from None
            try:
                return Envelope.from_stored_json(text, where=str(path), warn=self.warn)
            except BackendError:
                if attempt == READ_ATTEMPTS - 1:
                    raise
                time.sleep(0.05 * (attempt + 1))
        return None  # pragma: no cover - loop always returns or raises

    # -- writes ------------------------------------------------------------------
    @contextmanager
    def transaction(self, state_id: str):
        with self._locked(state_id) as directory:
            yield _FileSlot(self, state_id, Path(directory))

    # -- bulk writes ----------------------------------------------------------------
    def check_writable(self) -> None:
        """One hidden scratch file in the state folder, created then deleted: a read-only
        folder fails here, in one line, before any state is written. It is no state
        (Meltano lists ``*/state.json``), even if a crash leaves it behind."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            scratch = os.path.join(self._root, f".state-ext-write-check.{_temp_suffix()}.tmp")
            os.close(os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            os.unlink(scratch)
        except OSError as exc:
            raise BackendError(f"{self.label} does not accept writes, so nothing was written: "
                               f"cannot create a file in {self._root}: "
                               f"{posix_io.describe(exc)}") from None

    def put_many(self, states: dict[str, Envelope]) -> int:
        """Import (``file_create.import_many``): all or nothing per lock, new IDs created."""
        from state_ext.backends import file_create

        return file_create.import_many(self, states)

    def put_many_checked(self, states, expected, concurrency=8):
        """Migrate: per ID (on threads where the filesystem makes each call wait:
        ``posix_io.map_file_calls``): lock, check that it still holds what was planned
        over, write it atomically, unlock. A thread holds one lock at a time, so concurrent
        bulk writers cannot deadlock. The engine creates the states planned as absent
        without a lock first (``create_new_many``); those it sends here had a lock beside
        them, and take the lock like every other.

        Bulk writes are renamed into place without one fsync each: ``flush`` (one
        ``syncfs``) is the durability barrier the engine runs before it verifies or deletes
        anything from the source. It costs a fraction of 10,000 fsyncs, and a crash before
        it loses nothing that the source does not still hold.
        """
        self._needs_flush = True

        def one(state_id: str) -> str | None:
            try:
                with self._locked(state_id) as directory:
                    if not self._still_holds(state_id, directory, expected[state_id]):
                        return CHANGED
                    _write_state(directory, states[state_id].to_json(), durable=False)
            except StateExtError as exc:
                return exc.message
            return None

        ids = sorted(states)
        reasons = posix_io.map_file_calls(one, ids, concurrency)
        return {state_id: reason for state_id, reason in zip(ids, reasons, strict=True) if reason}

    # -- new states without the lock (file_create.py) -------------------------------------
    def plan_listing(self, pattern: str | None = None):
        from state_ext.backends import file_create

        return file_create.plan_listing(self, pattern)

    def create_new_many(self, states: dict[str, Envelope], concurrency: int = 8):
        """The transfer engine's conditional creates: a link that never replaces, checked
        by the write's byte count and ``flush``'s barrier, not by a read-back."""
        from state_ext.backends import file_create

        return file_create.create_new_many(self, states, workers=concurrency)

    @contextmanager
    def _locked(self, state_id: str):
        """Create the ID's folder, hold its lock, and remove the folder again if it was left
        without a state (a delete, a failed or refused write). Temporaries that dead
        processes left in the folder are removed first (debris.py)."""
        directory = self._path(state_id)
        try:
            posix_io.make_dir(directory)
            from state_ext.backends.debris import remove_dead_temps

            remove_dead_temps(directory, [n for n in os.listdir(directory)
                                          if n.startswith(".")])
        except OSError as exc:
            raise BackendError(f"Cannot write state for {state_id!r}: cannot create "
                               f"{directory}: {posix_io.describe(exc)}") from None
        done = False
        try:
            with hold_lock(self, state_id, timeout=self.settings.lock_timeout_seconds,
                           retry=self.settings.lock_retry_seconds, where=str(self.root),
                           warn=self.warn):
                yield directory
                done = os.path.lexists(os.path.join(directory, STATE_FILE))
        finally:
            if not done:
                self._prune(Path(directory))

    def _still_holds(self, state_id: str, directory: str, expected: str | None) -> bool:
        if expected is None:  # planned as absent: a stat, not a read
            return not os.path.lexists(os.path.join(directory, STATE_FILE))
        return digest(self.get(state_id)) == expected

    @staticmethod
    def _write_durably(ready, states) -> dict[str, str]:
        """Atomic, fsynced writes; fsyncs wait on the disk, so they usually go to threads."""

        def one(item):
            state_id, directory = item
            try:
                _write_state(directory, states[state_id].to_json(), durable=True)
            except BackendError as exc:
                return state_id, exc.message
            return state_id, None

        outcomes = posix_io.map_file_calls(one, ready, posix_io.MAX_FILE_THREADS)
        return {state_id: reason for state_id, reason in outcomes if reason}

    def flush(self) -> None:
        if self.__dict__.pop("_needs_flush", False):
            try:
                posix_io.sync_filesystem(self._root)
            except OSError as exc:
                raise BackendError(f"Cannot make the states written to {self._root} durable: "
                                   f"{posix_io.describe(exc)}") from None

    def _prune(self, directory: Path) -> None:
        """Remove folders left empty by a delete, up to (not including) the root."""
        while directory != self.root and self.root in directory.parents:
            try:
                directory.rmdir()
            except OSError:
                return
            directory = directory.parent


class _FileSlot(StateSlot):
    def __init__(self, backend: FileBackend, state_id: str, directory: Path):
        self.backend, self.state_id, self.directory = backend, state_id, directory

    def read(self) -> Envelope | None:
        return self.backend.get(self.state_id)

    def write(self, envelope: Envelope) -> None:
        """Temporary file beside ``state.json``, fsync, rename: old or new, never half."""
        _write_state(str(self.directory), envelope.to_json(), durable=True)

    def delete(self) -> bool:
        try:
            (self.directory / STATE_FILE).unlink()
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise BackendError(f"Cannot delete state {self.state_id!r}: "
                               f"{posix_io.describe(exc)}") from None
        return True


def _write_state(directory: str, text: str, *, durable: bool) -> None:
    """Write ``state.json`` through a temporary file and a rename: old or new, never half.

    ``durable`` fsyncs the file and the folder before returning; bulk writers leave that
    to one ``posix_io.sync_filesystem`` barrier instead (``FileBackend.flush``).
    """
    target = os.path.join(directory, STATE_FILE)
    tmp = os.path.join(directory, f".state.json.{_temp_suffix()}.tmp")
    try:
        posix_io.replace_atomically(target, tmp, text, durable=durable)
    except OSError as exc:
        raise BackendError(f"Cannot write {target}: {posix_io.describe(exc)}") from None
    if durable:
        posix_io.fsync_dir(directory)


def _temp_suffix() -> str:
    from state_ext.backends.debris import temp_suffix  # writes only: see the module's notes

    return temp_suffix()
