"""``file://`` backend: Meltano's folder layout on the local filesystem (POSIX).

``<dir>/<state_id>/state.json`` holds the envelope and ``<dir>/<state_id>/lock`` the lock,
with the raw state ID as folder name (IDs with ``/`` nest). Unlike Meltano we write
atomically (temporary file, fsync, rename), so a reader never sees half a file (a migration
renames without the per-file fsync and makes the whole batch durable with one ``syncfs``
in ``flush``); we list nested IDs too; and a delete removes only that ID's files, never the
IDs nested below it.
"""

from __future__ import annotations

import errno
import fcntl
import itertools
import os
import time
import uuid
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path
from urllib.parse import urlsplit

from state_ext.backends import debris
from state_ext.backends.base import CHANGED, StateBackend, StateSlot, digest
from state_ext.backends.fast_create import CREATED, EXISTS
from state_ext.backends.locks import HeldLock, LockPrimitives, hold_lock, lock_age
from state_ext.errors import BackendError, ConfigurationError, StateExtError
from state_ext.model import Envelope
from state_ext.settings import redact_uri
from state_ext.state_ids import matches, validate_state_id

STATE_FILE = "state.json"
LOCK_FILE = "lock"
LOCKED = "locked"  # see file_create.create_new
FAST_IMPORT_MIN = 20  # an import this large is worth one walk of the folder first
READ_ATTEMPTS = 5  # Meltano truncates then writes: give a concurrent writer a moment
_UNIQUE = itertools.count()
_PREFIX: list[str] = []


def _unique() -> str:
    """A temporary-file suffix no other process or thread can pick (host and pid
    namespace, pid, random, counter: see debris.py)."""
    if not _PREFIX:
        _PREFIX.append(f"{debris.HOST}.{os.getpid()}.{uuid.uuid4().hex[:8]}")
    return f"{_PREFIX[0]}.{next(_UNIQUE)}"


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_PREFIX.clear)


def _read_file(path: str) -> tuple[bytes, int]:
    """Contents and inode with four syscalls (``open()`` adds seeks and a tty check)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        inode = os.fstat(fd).st_ino
        chunks = []
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                return b"".join(chunks), inode
            chunks.append(chunk)
    finally:
        os.close(fd)


def _make_dir(directory: str) -> None:
    try:
        os.mkdir(directory)
    except FileExistsError:
        if not os.path.isdir(directory):
            raise NotADirectoryError(errno.ENOTDIR, "Not a directory", directory) from None
    except FileNotFoundError:  # a nested ID whose parents do not exist yet
        os.makedirs(directory, exist_ok=True)


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
        self._root = str(self.root)

    @property
    def location(self):
        return ("file", "", str(self.root.resolve()).rstrip("/"))

    def _dir(self, state_id: str) -> Path:
        return Path(self._path(state_id))

    def _path(self, state_id: str, name: str = "") -> str:
        """``_dir`` as a plain string: the bulk paths run it ~10 times per state."""
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
        raise BackendError(f"Cannot list {self.root}: {_describe(exc)}")

    def get(self, state_id: str) -> Envelope | None:
        path = self._path(state_id, STATE_FILE)
        for attempt in range(READ_ATTEMPTS):
            try:
                text = _read_file(path)[0]
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
        with self._locked(state_id) as directory:
            yield _FileSlot(self, state_id, Path(directory))

    # -- bulk writes ----------------------------------------------------------------
    def check_writable(self) -> None:
        """One hidden scratch file in the state folder, created then deleted: a read-only
        folder fails here, in one line, before any state is written. It is no state
        (Meltano lists ``*/state.json``), even if a crash leaves it behind."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            scratch = os.path.join(self._root, f".state-ext-write-check.{_unique()}.tmp")
            os.close(os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            os.unlink(scratch)
        except OSError as exc:
            raise BackendError(f"{self.label} does not accept writes, so nothing was written: "
                               f"cannot create a file in {self._root}: {_describe(exc)}") from None

    def put_many(self, states: dict[str, Envelope]) -> int:
        """Import: lock every ID that exists or is locked first, so that one lock we cannot
        take writes nothing; then create the new ones without a lock (``create_new_many``),
        and overwrite the rest, with those someone created meanwhile (import overwrites)."""
        fresh: dict[str, Envelope] = {}
        if len(states) >= FAST_IMPORT_MIN:
            seen = self.plan_listing()
            taken = set(seen.ids) | seen.locked
            fresh = {i: e for i, e in states.items() if i not in taken}
        with ExitStack() as held:
            ready = [(i, held.enter_context(self._locked(i)))
                     for i in sorted(states) if i not in fresh]
            result = self._create_new_many(fresh)
            late = sorted(result.exists + result.locked)
            ready += [(i, held.enter_context(self._locked(i))) for i in late]
            failures = {**result.failed, **self._write_durably(ready, states)}
        self.flush()
        if failures:
            written = len(states) - len(failures)
            raise BackendError(
                f"{next(iter(failures.values()))}; {written} of {len(states)} states were "
                "written (each one whole); running the same command again completes it")
        return len(states)

    def put_many_checked(self, states, expected, concurrency=8):
        """Migrate: per ID, on a thread pool (file syscalls release the GIL): lock, check
        that it still holds what was planned over, write it atomically, unlock. A thread
        holds one lock at a time, so concurrent bulk writers cannot deadlock. A state
        planned as absent takes no lock: it is created whole by ``_create_new`` (a link
        that never replaces a ``state.json``), unless its folder holds a lock by now.

        Bulk writes are renamed into place without one fsync each: ``flush`` (one
        ``syncfs``) is the durability barrier the engine runs before it verifies or deletes
        anything from the source. It costs a fraction of 10,000 fsyncs, and a crash before
        it loses nothing that the source does not still hold.
        """
        from concurrent.futures import ThreadPoolExecutor

        self._needs_flush = True

        def one(state_id: str) -> str | None:
            try:
                if expected[state_id] is None:  # planned as absent: no lock needed
                    outcome = self._create_new(state_id, states[state_id].to_json())
                    if outcome == CREATED:
                        return None
                    if outcome == EXISTS:
                        return CHANGED
                with self._locked(state_id) as directory:
                    if not self._still_holds(state_id, directory, expected[state_id]):
                        return CHANGED
                    _atomic_write(directory, states[state_id].to_json(), durable=False)
            except StateExtError as exc:
                return exc.message
            return None

        ids = sorted(states)
        # more threads only queue on the folder's lock: new IDs are all created in one folder
        workers = max(1, min(concurrency, 4, len(ids) or 1))
        with ThreadPoolExecutor(max_workers=workers) as pool:
            reasons = list(pool.map(one, ids))
        return {state_id: reason for state_id, reason in zip(ids, reasons, strict=True) if reason}

    # -- new states without the lock (file_create.py) -------------------------------------
    def plan_listing(self, pattern: str | None = None):
        from state_ext.backends import file_create

        return file_create.plan_listing(self, pattern)

    def _create_new_many(self, states: dict[str, Envelope], concurrency: int = 4):
        from state_ext.backends import file_create

        return file_create.create_new_many(self, states, concurrency)

    def _create_new(self, state_id: str, text: str) -> str:
        from state_ext.backends import file_create

        return file_create.create_new(self, state_id, text)

    @contextmanager
    def _locked(self, state_id: str):
        """Create the ID's folder, hold its lock, and remove the folder again if it was left
        without a state (a delete, a failed or refused write). Temporaries that dead
        processes left in the folder are removed first (debris.py)."""
        directory = self._path(state_id)
        try:
            _make_dir(directory)
            debris.remove_dead_temps(directory, [n for n in os.listdir(directory)
                                                 if n.startswith(".")])
        except OSError as exc:
            raise BackendError(
                f"Cannot write state for {state_id!r}: cannot create {directory}: {_describe(exc)}"
            ) from None
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
        """Atomic, fsynced writes on a few threads: fsync and rename drop the GIL."""
        from concurrent.futures import ThreadPoolExecutor

        def one(item):
            state_id, directory = item
            try:
                _atomic_write(directory, states[state_id].to_json(), durable=True)
            except BackendError as exc:
                return state_id, exc.message
            return state_id, None

        with ThreadPoolExecutor(max_workers=4) as pool:
            return {i: reason for i, reason in pool.map(one, ready) if reason}

    def flush(self) -> None:
        if self.__dict__.pop("_needs_flush", False):
            _sync_filesystem(str(self.root))

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
        directory = self._path(state_id)
        tmp = os.path.join(directory, f".lock.{_unique()}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            try:
                os.write(fd, content.encode())
                inode = os.fstat(fd).st_ino
            finally:
                os.close(fd)
            try:
                os.link(tmp, os.path.join(directory, LOCK_FILE))  # atomic create-if-absent
            except FileExistsError:
                return None
            return HeldLock(content, inode)
        except OSError as exc:
            raise BackendError(
                f"Cannot lock state {state_id!r} in {self.root}: {_describe(exc)}"
            ) from None
        finally:
            with suppress(OSError):
                os.unlink(tmp)

    def read_lock(self, state_id: str):
        path = self._path(state_id, LOCK_FILE)
        try:
            data, inode = _read_file(path)
            return data.decode("utf-8", "replace"), inode
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise BackendError(f"Cannot read lock {path}: {_describe(exc)}") from None

    def lock_location(self, state_id: str) -> str:
        return self._path(state_id, LOCK_FILE)

    def lock_modified(self, state_id: str) -> float | None:
        try:
            return os.stat(self._path(state_id, LOCK_FILE)).st_mtime
        except OSError:
            return None

    def release(self, state_id: str, held: HeldLock) -> None:
        """A lock younger than half the timeout cannot have been taken over as stale, so
        checking that it is still ours needs no folder flock (the common, fast case)."""
        age = lock_age(held.content)
        if age is not None and age < self.settings.lock_timeout_seconds / 2:
            if self.read_lock(state_id) == (held.content, held.marker):
                with suppress(FileNotFoundError):
                    os.unlink(self._path(state_id, LOCK_FILE))
            return
        self.remove_if_unchanged(state_id, held.content, held.marker)

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
        _atomic_write(str(self.directory), envelope.to_json(), durable=True)

    def delete(self) -> bool:
        try:
            (self.directory / STATE_FILE).unlink()
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise BackendError(f"Cannot delete state {self.state_id!r}: {_describe(exc)}") from None
        return True


def _atomic_write(directory: str, text: str, *, durable: bool) -> None:
    """Write ``state.json`` through a temporary file and a rename: old or new, never half.

    ``durable`` fsyncs the file and the folder before returning; bulk writers leave that
    to one ``_sync_filesystem`` barrier instead.
    """
    target = os.path.join(directory, STATE_FILE)
    tmp = os.path.join(directory, f".state.json.{_unique()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        try:
            data = memoryview(text.encode("utf-8"))
            while data:
                data = data[os.write(fd, data):]
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except OSError as exc:
        with suppress(OSError):
            os.unlink(tmp)
        raise BackendError(f"Cannot write {target}: {_describe(exc)}") from None
    if durable:
        _fsync_dir(directory)


def _sync_filesystem(path: str) -> None:
    """One durability barrier for many writes: ``syncfs`` on Linux, else ``sync``."""
    try:
        import ctypes

        fd = os.open(path, os.O_RDONLY)
    except (ImportError, OSError):
        os.sync()
        return
    try:
        syncfs = getattr(ctypes.CDLL(None, use_errno=True), "syncfs", None)
        if syncfs is None or syncfs(fd) != 0:
            os.sync()
    finally:
        os.close(fd)


def _fsync_dir(directory) -> None:
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
