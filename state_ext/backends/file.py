"""``file://`` backend: Meltano's folder layout on the local filesystem (POSIX).

``<dir>/<state_id>/state.json`` holds the envelope and ``<dir>/<state_id>/lock`` the lock,
with the raw state ID as folder name (IDs with ``/`` nest). Unlike Meltano we write
atomically (temporary file, fsync, rename), so a reader never sees half a file; we list
nested IDs too; and a delete removes only that ID's files, never the IDs nested below it.
"""

from __future__ import annotations

import errno
import fcntl
import os
import time
import uuid
from contextlib import ExitStack, contextmanager
from pathlib import Path
from urllib.parse import urlsplit

from state_ext.backends.base import StateBackend, StateSlot, digest
from state_ext.backends.locks import HeldLock, LockPrimitives, hold_lock
from state_ext.errors import BackendError, ConfigurationError, StateExtError
from state_ext.model import Envelope
from state_ext.settings import redact_uri
from state_ext.state_ids import matches, validate_state_id

STATE_FILE = "state.json"
LOCK_FILE = "lock"
READ_ATTEMPTS = 5  # Meltano truncates then writes: give a concurrent writer a moment
BATCH = 500  # bulk writes hold at most this many locks at once


def state_dir_from_uri(uri: str) -> Path:
    parts = urlsplit(uri)
    if parts.netloc not in ("", "localhost"):
        host = parts.netloc.rpartition("@")[2]
        raise ConfigurationError(
            f"Invalid file URI {redact_uri(uri)!r}: the path must be absolute, as in "
            f"file:///path/to/state (here {host!r} would be read as a host)"
        )
    if not parts.path or parts.path == "/":
        raise ConfigurationError(f"Invalid file URI {redact_uri(uri)!r}: it names no directory")
    # `file:///${MELTANO_SYS_DIR_ROOT}/state` expands to four slashes: still one path.
    return Path("/" + parts.path.lstrip("/"))


def _describe(exc: OSError) -> str:
    return exc.strerror or str(exc)


class FileBackend(StateBackend, LockPrimitives):
    def __init__(self, settings, **kwargs):
        super().__init__(settings, **kwargs)
        self.root = state_dir_from_uri(settings.uri)

    @property
    def location(self):
        return ("file", "", str(self.root.resolve()).rstrip("/"))

    def _dir(self, state_id: str) -> Path:
        validate_state_id(state_id)
        return self.root / state_id

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
        raise BackendError(f"Cannot list {self.root}: {_describe(exc)}")

    def get(self, state_id: str) -> Envelope | None:
        path = self._dir(state_id) / STATE_FILE
        for attempt in range(READ_ATTEMPTS):
            try:
                text = path.read_bytes()
            except (FileNotFoundError, NotADirectoryError):
                return None
            except OSError as exc:
                raise BackendError(f"Cannot read {path}: {_describe(exc)}") from None
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
        directory = self._dir(state_id)
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise BackendError(
                f"Cannot write state for {state_id!r}: cannot create {directory}: {_describe(exc)}"
            ) from None
        try:
            with hold_lock(
                self, state_id,
                timeout=self.settings.lock_timeout_seconds,
                retry=self.settings.lock_retry_seconds,
                where=str(self.root),
            ):
                yield _FileSlot(self, state_id, directory)
        finally:
            self._prune(directory)  # a delete or a failed write leaves no empty folder

    # -- bulk writes ----------------------------------------------------------------
    def put_many(self, states: dict[str, Envelope]) -> int:
        """Import: lock every ID first, so that one lock we cannot take writes nothing."""
        with ExitStack() as held:
            slots = [held.enter_context(self.transaction(i)) for i in sorted(states)]
            self._write_slots(slots, states)
        return len(states)

    def put_many_checked(self, states, expected, concurrency=8):
        """Migrate: per batch, lock (sorted, so bulk writers cannot deadlock), check, write."""
        failures: dict[str, str] = {}
        ids = sorted(states)
        for start in range(0, len(ids), BATCH):
            with ExitStack() as held:
                ready = []
                for state_id in ids[start:start + BATCH]:
                    try:
                        slot = held.enter_context(self.transaction(state_id))
                        if digest(slot.read()) != expected[state_id]:
                            failures[state_id] = "changed by another process during the operation"
                            continue
                    except StateExtError as exc:
                        failures[state_id] = exc.message
                        continue
                    ready.append(slot)
                self._write_slots(ready, states, concurrency)
        return failures

    @staticmethod
    def _write_slots(slots: list[_FileSlot], states, concurrency: int = 8) -> None:
        """Atomic writes, fsynced on a thread pool: the journal commits them together."""
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
            list(pool.map(lambda slot: slot.write(states[slot.state_id]), slots))

    def _prune(self, directory: Path) -> None:
        """Remove folders left empty by a delete, up to (not including) the root."""
        while directory != self.root and self.root in directory.parents:
            try:
                directory.rmdir()
            except OSError:
                return
            directory = directory.parent

    # -- lock primitives (LockPrimitives) ------------------------------------------
    def try_create(self, state_id: str, content: str) -> HeldLock | None:
        directory = self._dir(state_id)
        tmp = directory / f".lock.{uuid.uuid4().hex}.tmp"
        try:
            tmp.write_text(content)
            try:
                os.link(tmp, directory / LOCK_FILE)  # atomic create-if-absent
            except FileExistsError:
                return None
            return HeldLock(content, tmp.stat().st_ino)
        except OSError as exc:
            raise BackendError(
                f"Cannot lock state {state_id!r} in {self.root}: {_describe(exc)}"
            ) from None
        finally:
            tmp.unlink(missing_ok=True)

    def read_lock(self, state_id: str):
        path = self._dir(state_id) / LOCK_FILE
        try:
            with open(path, "rb") as handle:
                return handle.read().decode("utf-8", "replace"), os.fstat(handle.fileno()).st_ino
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise BackendError(f"Cannot read lock {path}: {_describe(exc)}") from None

    def remove_if_unchanged(self, state_id: str, content: str, marker) -> None:
        directory = self._dir(state_id)
        with _dir_flock(directory):
            current = self.read_lock(state_id)
            if current is not None and current == (content, marker):
                (directory / LOCK_FILE).unlink(missing_ok=True)


@contextmanager
def _dir_flock(directory: Path):
    """Serialise lock take-over and release among state-ext processes (flock on the folder)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


class _FileSlot(StateSlot):
    def __init__(self, backend: FileBackend, state_id: str, directory: Path):
        self.backend, self.state_id, self.directory = backend, state_id, directory

    def read(self) -> Envelope | None:
        return self.backend.get(self.state_id)

    def write(self, envelope: Envelope) -> None:
        """Temporary file beside ``state.json``, fsync, rename: old or new, never half."""
        target = self.directory / STATE_FILE
        tmp = self.directory / f".state.json.{uuid.uuid4().hex}.tmp"
        try:
            with open(tmp, "x", encoding="utf-8") as handle:
                handle.write(envelope.to_json())
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, target)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise BackendError(f"Cannot write {target}: {_describe(exc)}") from None
        _fsync_dir(self.directory)

    def delete(self) -> bool:
        try:
            (self.directory / STATE_FILE).unlink()
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise BackendError(f"Cannot delete state {self.state_id!r}: {_describe(exc)}") from None
        return True


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as exc:  # pragma: no cover - some filesystems refuse directory fsync
        if exc.errno not in (errno.EINVAL, errno.EBADF):
            raise
    finally:
        os.close(fd)
