"""The lock protocol's three atomic operations (``LockPrimitives``) on ``file://`` lock files.

A lock is created whole or not at all: its content goes to a temporary file that is then
hard-linked to ``lock`` (``link`` fails if the name exists). The inode is the lock's
version: a lock taken over by another writer is a new file, so content and inode together
tell whether the lock is still the one we read. Removing a lock that may be stale is
serialised among state-ext processes with a ``flock`` on the state's folder.
"""

from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager, suppress

from state_ext import posix_io
from state_ext.backends.base import LOCK_FILE
from state_ext.backends.locks import HeldLock, LockPrimitives, lock_age
from state_ext.errors import BackendError


class FileLockPrimitives(LockPrimitives):
    """``LockPrimitives`` for a backend that has ``root``, ``settings`` and
    ``_path(state_id, name)`` (``FileBackend``)."""

    def try_create(self, state_id: str, content: str) -> HeldLock | None:
        from state_ext.backends.debris import temp_suffix  # writers only (see file.py)

        directory = self._path(state_id)
        tmp = os.path.join(directory, f".lock.{temp_suffix()}.tmp")
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
                f"Cannot lock state {state_id!r} in {self.root}: {posix_io.describe(exc)}"
            ) from None
        finally:
            with suppress(OSError):
                os.unlink(tmp)

    def read_lock(self, state_id: str):
        path = self._path(state_id, LOCK_FILE)
        try:
            data, inode = posix_io.read_with_inode(path)
            return data.decode("utf-8", "replace"), inode
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise BackendError(f"Cannot read lock {path}: {posix_io.describe(exc)}") from None

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
        directory = self._path(state_id)
        with _folder_flock(directory):
            current = self.read_lock(state_id)
            if current is not None and current == (content, marker):
                with suppress(FileNotFoundError):
                    os.unlink(os.path.join(directory, LOCK_FILE))


@contextmanager
def _folder_flock(directory: str):
    """Serialise lock take-over and release among state-ext processes (flock on the folder)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
