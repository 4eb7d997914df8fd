"""Meltano's lock protocol, made safe between state-ext processes.

Meltano (file and object stores) marks a state ID as locked by a ``lock`` object next to
``state.json`` holding ``str(datetime.now(timezone.utc).timestamp())``; a lock older than
``lock_timeout_seconds`` is stale and may be taken over; waiters poll. Meltano checks
then writes, so two writers can both "win". We keep the same content and timing rules so
that Meltano still sees our locks, but create the lock with an exclusive create (O_EXCL
link, or a conditional put), take over a stale lock only if it is still the one we saw,
and delete only a lock we own.

A wait never goes unexplained: once it has lasted a second with more than a second to go,
it is logged once (``warn``) with what the lock holds (a time and its age, "empty",
"unreadable content", a date in the future) and when we give up (brief contention between
writers, and waits that end within two seconds, stay silent: the final error says it all);
giving up names the lock's path or key, to delete by hand if no run holds it.
``_LockWait`` says which locks are stale.

Meltano's lock is check-then-write: a Meltano writer can overwrite our lock while we hold it
(and then write a state based on a read older than our write), or delete it when it
finishes. ``hold_lock`` therefore looks at the lock once more after the body (the state
written) and before releasing it, and reports to a ``watching()`` caller on the same
thread whether the lock was still ours and whether we had to wait for another writer;
``operations.merge_state`` uses that to confirm its merge survived (see there). Where the
store's conditional delete answers whether it deleted (``release_telling``), that one
request is the look and the release.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from state_ext.errors import LockTimeoutError

MIN_POLL_SECONDS = 0.05
WARN_AFTER_SECONDS = 1.0  # brief contention stays silent; a wait longer than this is said
MODIFIED_PRECISION_SECONDS = 1.0  # Last-Modified headers drop the fraction of a second


@dataclass(frozen=True)
class HeldLock:
    """What we wrote, plus whatever the store uses to recognise it (inode, etag...)."""

    content: str
    marker: Any = None


@dataclass
class LockReport:
    """What the locks taken on one thread inside ``watching()`` saw."""

    contended: bool = False  # another writer's lock was there when we tried to create ours
    lost: bool = False  # after the body, the lock was no longer ours (overwritten or deleted)


_watch = threading.local()


@contextmanager
def watching():
    """Collect a ``LockReport`` of the (synchronous) locks held on this thread."""
    report = LockReport()
    previous = getattr(_watch, "report", None)
    _watch.report = report
    try:
        yield report
    finally:
        _watch.report = previous


def lock_content() -> str:
    """Exactly what Meltano writes: a float UTC epoch."""
    return str(datetime.now(timezone.utc).timestamp())


def lock_age(content: str) -> float | None:
    """Seconds since the lock was written, or None when it is not a timestamp."""
    try:
        return time.time() - float(content.strip())
    except ValueError:
        return None


def describe_lock(content: str, modified: float | None = None) -> str:
    """What a lock holds, in words: its time and age, or why it cannot be one of Meltano's."""
    text = content.strip()
    age = lock_age(text)
    if age is not None:
        try:
            at = datetime.fromtimestamp(float(text), timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
        except (OverflowError, OSError, ValueError):
            at = text[:40]
        if age < 0:
            return f"dated {at} UTC, {-age:.0f} s in the future (a clock ahead?)"
        return f"written at {at} UTC, {age:.1f} s ago"
    what = "empty" if not text else f"unreadable content {text[:40]!r}"
    if modified is not None:
        what += f", last modified {max(0.0, time.time() - modified):.1f} s ago"
    return what


class LockPrimitives(ABC):
    """The three atomic operations a store must offer for the protocol."""

    @abstractmethod
    def try_create(self, state_id: str, content: str) -> HeldLock | None:
        """Create the lock if absent; None when one exists already."""

    @abstractmethod
    def read_lock(self, state_id: str) -> tuple[str, Any] | None:
        """The lock's content and a version marker, or None when there is no lock."""

    @abstractmethod
    def remove_if_unchanged(self, state_id: str, content: str, marker: Any) -> None:
        """Delete the lock only if it still is the version we read."""

    def release(self, state_id: str, held: HeldLock) -> None:
        self.remove_if_unchanged(state_id, held.content, held.marker)

    def release_telling(self, state_id: str, held: HeldLock) -> bool | None:
        """Where the store's conditional delete says whether it deleted (S3 on AWS, Azure):
        release the lock if it is still ours and return whether it was, in one request.
        None where the delete cannot tell (nothing is known): the caller reads the lock.
        A DELETE whose first answer was lost and whose SDK retry finds the lock gone says
        False: the merge then looks at the state again, as when a writer took the lock."""
        return None

    def lock_modified(self, state_id: str) -> float | None:
        """When the lock was last written (epoch seconds), if the store can tell.

        Only asked for locks whose content is not a timestamp, to judge their age."""
        return None

    def lock_location(self, state_id: str) -> str:
        """The path or key a user deletes to clear a lock left behind."""
        return f"the lock of {state_id!r}"


class _LockWait:
    """What to do when our create finds a lock already there; one rule for both loops.

    A lock holding a timestamp is stale once older than the timeout (Meltano's rule). A
    lock that is empty or holds anything else was not written by Meltano or state-ext
    (Meltano cannot even read it: its ``float()`` fails), except for the instant in which
    Meltano's ``file://`` writer has created the file but not yet written it. Such a lock
    is stale if, when we first see it, the store's modification time is older than the
    timeout (plus one second: HTTP dates are whole seconds); a younger one (or one on a
    store that keeps no modification time) is waited for like a fresh lock, then reported.
    A lock dated in the future stays fresh, as for Meltano. Every lock that ends the wait
    is reported with what it holds and the path or key to delete.
    """

    RETRY, TAKE_OVER, WAIT = "retry", "take over", "wait"

    def __init__(self, state_id: str, where: str, timeout: float, retry: float,
                 location: str = "", warn: Callable[[str], None] | None = None):
        self.state_id, self.where, self.timeout = state_id, where, timeout
        self.location, self.warn = location or f"the lock of {state_id!r}", warn
        self.poll = max(retry, MIN_POLL_SECONDS)
        self.started = time.monotonic()
        self.deadline = self.started + timeout + self.poll
        self.seen: dict[tuple, float | None] = {}  # unreadable lock -> its modified time
        self.warned = False

    def needs_modified(self, current: tuple[str, Any] | None) -> bool:
        """Only an unreadable lock seen for the first time is judged by its modified time."""
        return current is not None and lock_age(current[0]) is None and \
            (current[0], current[1]) not in self.seen

    def next_step(self, current: tuple[str, Any] | None, modified: float | None = None) -> str:
        if current is None:
            return self.RETRY  # released between our create and our read: try again at once
        age = lock_age(current[0])
        if age is None:  # empty or unreadable
            version = (current[0], current[1])
            first_sight = version not in self.seen
            modified = self.seen.setdefault(version, modified)
            if first_sight and modified is not None:  # HTTP dates are whole seconds
                age = time.time() - modified - MODIFIED_PRECISION_SECONDS
        if age is not None and age > self.timeout:
            return self.TAKE_OVER
        shown = describe_lock(current[0], modified)
        waited = self.timeout + self.poll
        if time.monotonic() >= self.deadline:
            raise LockTimeoutError(
                f"State ID {self.state_id!r} is locked by another process in {self.where} "
                f"(lock {shown}); gave up after {waited:g} s "
                "(state_backend.lock_timeout_seconds). If no Meltano or state-ext run is "
                f"writing this state ID, delete {self.location} and run again"
            )
        remaining = self.deadline - time.monotonic()
        if not self.warned and self.warn is not None and remaining >= WARN_AFTER_SECONDS and \
                time.monotonic() - self.started >= WARN_AFTER_SECONDS:
            self.warned = True
            until = datetime.fromtimestamp(time.time() + remaining, timezone.utc)
            self.warn(
                f"Waiting for the lock of state ID {self.state_id!r} in {self.where} "
                f"({self.location}: {shown}); giving up at {until:%H:%M:%S} UTC, in "
                f"{remaining:.0f} s, unless it is released or turns stale"
            )
        return self.WAIT


def _ours(current: tuple[str, Any] | None, content: str) -> bool:
    """The lock found is the one we just tried to create: the SDK retried a create whose
    first attempt landed but whose answer was lost (a dropped connection), and the retry
    was refused because the object exists. Our content is a microsecond timestamp of this
    attempt, so no other writer's lock holds it."""
    return current is not None and current[0] == content


@contextmanager
def hold_lock(primitives: LockPrimitives, state_id: str, *, timeout: float, retry: float,
              where: str, warn: Callable[[str], None] | None = None):
    """Acquire, yield, and always release the lock of ``state_id``.

    We wait at most ``timeout`` plus one poll: any lock written before we started is
    stale by then and taken over, as Meltano would, so only a lock that keeps looking
    fresh (a clock far ahead, or an owner that keeps refreshing it) makes us give up.
    The first wait is logged once through ``warn``.
    """
    wait = _LockWait(state_id, where, timeout, retry,
                     primitives.lock_location(state_id), warn)
    report: LockReport | None = getattr(_watch, "report", None)
    while (held := primitives.try_create(state_id, content := lock_content())) is None:
        current = primitives.read_lock(state_id)
        if _ours(current, content):
            held = HeldLock(content, current[1])
            break
        if report is not None:
            report.contended = True
        modified = primitives.lock_modified(state_id) if wait.needs_modified(current) \
            else None
        step = wait.next_step(current, modified)
        if step == wait.TAKE_OVER:
            primitives.remove_if_unchanged(state_id, *current)
        elif step == wait.WAIT:
            time.sleep(wait.poll)
    mine = True
    try:
        yield held
        if report is not None:
            told = primitives.release_telling(state_id, held)
            if told is not None:  # released if ours; else left to the writer that took it
                mine = False
                report.lost = report.lost or not told
            elif not _ours(primitives.read_lock(state_id), held.content):
                report.lost = True  # a check-then-write writer took it while we held it
                mine = False  # nothing of ours to release: leave the other writer's lock be
    finally:
        if mine:
            primitives.release(state_id, held)


@asynccontextmanager
async def hold_lock_async(create, read, remove, *, state_id: str, timeout: float, retry: float,
                          where: str, modified=None, location: str = "",
                          warn: Callable[[str], None] | None = None):
    """``hold_lock`` for coroutines, so that thousands of locked writes share one event loop.

    ``create(content)`` returns a marker or None, ``read()`` returns (content, marker) or
    None, ``remove(content, marker)`` deletes the lock only if it is still that version,
    ``modified()`` (optional) returns the lock's modification time or None.
    """
    import asyncio

    from state_ext.backends.aio import mark_progress  # bulk writes only: reads skip it

    wait = _LockWait(state_id, where, timeout, retry, location, warn)
    while (marker := await create(content := lock_content())) is None:
        mark_progress()  # the store answered: a lock wait is not a stall
        current = await read()
        mark_progress()
        if _ours(current, content):
            marker = current[1]
            break
        when = await modified() if modified is not None and wait.needs_modified(current) \
            else None
        step = wait.next_step(current, when)
        if step == wait.TAKE_OVER:
            await remove(*current)
        elif step == wait.WAIT:
            await asyncio.sleep(wait.poll)
    try:
        yield HeldLock(content, marker)
    finally:
        await remove(content, marker)
