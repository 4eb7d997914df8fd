"""Files written so that a reader never sees half of one, and the POSIX calls behind that.

A document is written to a temporary name in its final folder, flushed and fsynced; the
caller then renames it (replacing) or links it (refusing a taken name) into place, and
unlinks the temporary name. The temporary name starts with a dot (and the caller's
prefix), so folder listings that skip hidden files never show it.

The ``file://`` backend writes thousands of small files per command, so its helpers are
plain ``os`` calls (``open()`` would add seeks and a tty check to every file), and bulk
writes skip the per-file fsync for one ``sync_filesystem`` barrier at the end.
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Callable, Sequence
from contextlib import suppress
from pathlib import Path
from typing import BinaryIO


def write_temporary(folder: Path, prefix: str, write: Callable[[BinaryIO], None],
                    suffix: str = "") -> str:
    """Create ``folder`` if missing and write a durable temporary file there with
    ``write(handle)``; returns its path. On any failure nothing is left behind and the
    error (``OSError`` included) is raised as it came."""
    import tempfile  # only exports and snapshots need it: state writes stay lighter

    folder.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=folder)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        with suppress(OSError):
            os.unlink(temporary)
        raise
    return temporary


def describe(exc: OSError) -> str:
    """The system's words for an ``OSError`` (``strerror``), without the errno and path
    that ``str()`` adds, since the caller's message names the path already."""
    return exc.strerror or str(exc)


def read_with_inode(path: str) -> tuple[bytes, int]:
    """Contents and inode with four syscalls; the inode tells one version of a file from
    the next (a lock is replaced by a new file, never rewritten)."""
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


def make_dir(directory: str) -> None:
    """``directory`` exists afterwards (its parents too); one ``mkdir`` in the common case."""
    try:
        os.mkdir(directory)
    except FileExistsError:
        if not os.path.isdir(directory):
            raise NotADirectoryError(errno.ENOTDIR, "Not a directory", directory) from None
    except FileNotFoundError:  # a nested ID whose parents do not exist yet
        os.makedirs(directory, exist_ok=True)


def write_new(path: str, text: str, *, fsync: bool = False) -> None:
    """A new file holding ``text`` (``O_EXCL``: never an existing one), fsynced if asked."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        data = memoryview(text.encode("utf-8"))
        while data:
            data = data[os.write(fd, data):]
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)


def replace_atomically(target: str, temporary: str, text: str, *, durable: bool) -> None:
    """Write ``text`` to the new file ``temporary`` and rename it over ``target``: a reader
    sees the old or the new file, never half. ``durable`` fsyncs the file first. On an
    ``OSError`` the temporary file is removed and the error raised as it came."""
    try:
        write_new(temporary, text, fsync=durable)
        os.replace(temporary, target)
    except OSError:
        with suppress(OSError):
            os.unlink(temporary)
        raise


# What ``syncfs`` answers when data written since the last barrier could not be stored
# (Linux >= 5.8 reports write-back errors here): an OSError, never a silent ``sync``.
WRITE_BACK_ERRORS = (errno.EIO, errno.ENOSPC, errno.EDQUOT)


def sync_filesystem(path: str) -> None:
    """One durability barrier for many writes: ``syncfs`` on Linux, else ``sync``. A
    write-back error (the disk failed or filled up after ``write`` accepted the bytes) is
    raised as ``OSError``: bulk writers check their files by this barrier, not by reading
    them back from the page cache that the write itself filled."""
    try:
        import ctypes

        fd = os.open(path, os.O_RDONLY)
    except (ImportError, OSError):
        os.sync()
        return
    try:
        syncfs = getattr(ctypes.CDLL(None, use_errno=True), "syncfs", None)
        if syncfs is None or syncfs(fd) != 0:
            failure = ctypes.get_errno() if syncfs is not None else 0
            if failure in WRITE_BACK_ERRORS:
                raise OSError(failure, os.strerror(failure))
            os.sync()
    finally:
        os.close(fd)


def fsync_dir(directory) -> None:
    """Make a rename or link in ``directory`` durable; a folder that cannot be opened, or a
    filesystem that refuses to fsync folders, is left as it is."""
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


# ``map_file_calls``: threads pay only when each call waits long enough. Every system call
# drops the GIL and takes it back, and with a second thread waiting that is a thread switch
# per call: 10,000 new states on tmpfs take 0.24 s in one thread, 0.52 s on two and 0.74 s
# on four (a thread pool per state, 0.9 s); on a local disk a create takes 30-45 us and
# gains nothing either. When calls take far longer (a disk busy writing back: 450 us;
# NFS: a network round trip per call), threads overlap them (on the busy disk: 4.7 s in one
# thread, 3.5 s on two), and so do lock waits. So calls run in the caller's thread, timed
# sixteen at a time, and once most of sixteen took long (the disk got busy, locks were
# waited for) the rest go to threads: the median, not the mean, so that one pause (a
# collection, a reader thread holding the GIL for its 5 ms turn) does not count. More
# than four threads only queue on the folder the states are created in.
PROBE_CALLS = 16
THREADS_ABOVE_S = 200e-6  # a call's wall time beyond which threads overlap calls
MAX_FILE_THREADS = 4


def map_file_calls(call: Callable, items: Sequence, workers: int) -> list:
    """``[call(item) for item in items]``, spread over up to ``workers`` (at most four)
    threads once calls show that the filesystem makes each one wait. An exception from
    ``call`` ends the work (after every thread has stopped) and reaches the caller."""
    results: list = []
    workers = min(workers, MAX_FILE_THREADS)
    clock = time.perf_counter
    done = 0
    while done < len(items):
        took = []
        for item in items[done:done + PROBE_CALLS]:
            started = clock()
            results.append(call(item))
            took.append(clock() - started)
        done += len(took)
        if workers > 1 and sorted(took)[len(took) // 2] > THREADS_ABOVE_S:
            break  # most calls waited: not one pause (a collection, another thread's turn)
    rest = items[done:]
    workers = min(workers, len(rest))
    if workers <= 1:
        return results + [call(item) for item in rest]
    from concurrent.futures import ThreadPoolExecutor

    def run(part: Sequence) -> list:
        return [call(item) for item in part]

    ordered: list = [None] * len(rest)
    with ThreadPoolExecutor(max_workers=workers) as pool:  # joined even on an error
        parts = list(pool.map(run, [rest[i::workers] for i in range(workers)]))
    for i, part in enumerate(parts):
        ordered[i::workers] = part
    return results + ordered
