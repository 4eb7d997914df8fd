"""New ``file://`` states created by one link each, checked without a read-back (issue #13).

The engine reads back what it wrote under a lock, but not a state it created: on
``file://`` the write's byte count, the link that never replaces, and ``flush``'s one
``syncfs`` (which raises a write-back error) are the check. Reads are counted by wrapping
the real backend's ``iter_states``; the write-back error is injected at ``syncfs`` itself.
"""

from __future__ import annotations

import ctypes
import errno

import pytest

from state_ext.backends import open_backend
from state_ext.errors import BackendError
from state_ext.model import Envelope
from state_ext.settings import BackendSettings
from state_ext.transfer import transfer
from tests.support.project import seed_file_store
from tests.test_fast_path import envelopes, file_tree


def open_pair(tmp_path, states):
    source = open_backend(BackendSettings(seed_file_store(tmp_path / "src", states), 2, 0.05, {}))
    destination = open_backend(BackendSettings((tmp_path / "dst").as_uri(), 2, 0.05, {}))
    return source, destination


def count_reads(backend) -> list[str]:
    """The IDs the engine reads from ``backend`` (every bulk read goes through
    ``iter_states``)."""
    seen: list[str] = []
    real = backend.iter_states

    def spying(ids):
        ids = list(ids)
        seen.extend(ids)
        return real(ids)

    backend.iter_states = spying
    return seen


@pytest.mark.parametrize("verify", ["checksum", "read-back"])
def test_new_file_states_are_created_by_a_link_and_read_back_only_when_asked(tmp_path, verify):
    states = envelopes(30)
    existing = "dev:tap-003-to-target"
    source, destination = open_pair(tmp_path, states)
    old = Envelope.complete({"singer_state": {"old": 1}})
    destination.put(existing, old)
    read = count_reads(destination)
    try:
        report = transfer(source, destination, on_conflict="overwrite", verify=verify)
        new = len(states) - 1
        assert report.ok and report.copied == new and report.overwritten == 1, report
        assert report.created_unlocked == new and report.write_path is None
        if verify == "checksum":  # planned over (read), then read back after its locked write
            assert sorted(read) == [existing, existing], read
        else:
            assert sorted(read) == sorted([existing, *states]), read
        dst = tmp_path / "dst"
        assert file_tree(dst) == {f"{i}/state.json": states[i].to_json().encode() for i in states}
    finally:
        source.close(), destination.close()


class _FailingLibc:
    """``syncfs`` failing as Linux reports a write-back error (EIO)."""

    def __init__(self, *args, **kwargs):
        pass

    @staticmethod
    def syncfs(fd):
        ctypes.set_errno(errno.EIO)
        return -1


def test_a_write_back_error_at_the_barrier_fails_the_move_before_the_source_is_touched(
        tmp_path, monkeypatch):
    states = envelopes(12)
    source, destination = open_pair(tmp_path, states)
    before = file_tree(tmp_path / "src")
    monkeypatch.setattr(ctypes, "CDLL", _FailingLibc)
    try:
        with pytest.raises(BackendError) as failed:
            transfer(source, destination, delete_source=True)
        message = failed.value.message
        assert "Cannot make the states written to" in message, message
        assert "Input/output error" in message and "running the same command again" in message
        assert file_tree(tmp_path / "src") == before  # nothing left the source
    finally:
        source.close(), destination.close()


# -- posix_io.map_file_calls: threads only when the filesystem makes each call wait -------

def test_quick_file_calls_stay_in_the_callers_thread_in_order(monkeypatch):
    """On tmpfs or a local disk a create takes 20-45 us: a thread switch at every system
    call would cost more than it overlaps (posix_io's paragraph), so none is started.
    (The bar is raised to 10 ms a call so that a loaded machine pausing the test cannot
    make trivial calls look slow.)"""
    import threading

    from state_ext import posix_io

    monkeypatch.setattr(posix_io, "THREADS_ABOVE_S", 0.01)

    threads = set()

    def call(n):
        threads.add(threading.get_ident())
        return n * 2

    assert posix_io.map_file_calls(call, list(range(500)), workers=4) == [n * 2 for n in range(500)]
    assert threads == {threading.get_ident()}


def test_slow_file_calls_go_to_threads_in_order_and_errors_surface():
    """Calls that wait (1 ms each: NFS, a disk busy writing back) are spread over at most
    four threads after the first ones; results keep the items' order, and an unexpected
    error reaches the caller after every thread has ended."""
    import threading
    import time

    from state_ext import posix_io

    seen: dict[int, int] = {}

    def call(n):
        time.sleep(0.001)
        seen[n] = threading.get_ident()
        return -n

    items = list(range(100))
    assert posix_io.map_file_calls(call, items, workers=8) == [-n for n in items]
    probe, rest = items[:posix_io.PROBE_CALLS], items[posix_io.PROBE_CALLS:]
    assert {seen[n] for n in probe} == {threading.get_ident()}
    workers = {seen[n] for n in rest}
    assert threading.get_ident() not in workers and 1 < len(workers) <= 4

    # calls that turn slow later (the disk got busy, a lock was waited for): the next
    # sixteen are timed too, and after them the rest goes to threads
    seen.clear()

    def slow_later(n):
        if n >= 40:
            time.sleep(0.001)
        seen[n] = threading.get_ident()
        return n

    assert posix_io.map_file_calls(slow_later, items, workers=4) == items
    assert {seen[n] for n in items[:48]} == {threading.get_ident()}
    assert threading.get_ident() not in {seen[n] for n in items[48:]}

    # one long pause among quick calls (a collection, a reader thread's 5 ms turn with the
    # GIL) is not a slow filesystem: the mean of its sixteen would say so, the median not
    seen.clear()

    def one_pause(n):
        if n == 5:
            time.sleep(0.02)
        seen[n] = threading.get_ident()
        return n

    assert posix_io.map_file_calls(one_pause, items, workers=4) == items
    assert set(seen.values()) == {threading.get_ident()}
    assert posix_io.map_file_calls(call, items, workers=1) == [-n for n in items]
    assert {seen[n] for n in items} == {threading.get_ident()}  # one worker: no thread

    def failing(n):
        time.sleep(0.001)
        if n == 60:
            raise RuntimeError("disk on fire")
        return n

    before = threading.active_count()
    with pytest.raises(RuntimeError, match="disk on fire"):
        posix_io.map_file_calls(failing, items, workers=4)
    assert threading.active_count() == before
