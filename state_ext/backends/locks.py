"""Meltano's lock protocol, made safe between state-ext processes.

Meltano (file and object stores) marks a state ID as locked by a ``lock`` object next to
``state.json`` holding ``str(datetime.now(timezone.utc).timestamp())``; a lock older than
``lock_timeout_seconds`` is stale and may be taken over; waiters poll. Meltano checks
then writes, so two writers can both "win". We keep the same content and timing rules so
that Meltano still sees our locks, but create the lock with an exclusive create (O_EXCL
link, or a conditional put), take over a stale lock only if it is still the one we saw,
and delete only a lock we own.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from state_ext.errors import LockTimeoutError

MIN_POLL_SECONDS = 0.05


@dataclass(frozen=True)
class HeldLock:
    """What we wrote, plus whatever the store uses to recognise it (inode, etag...)."""

    content: str
    marker: Any = None


def lock_content() -> str:
    """Exactly what Meltano writes: a float UTC epoch."""
    return str(datetime.now(timezone.utc).timestamp())


def lock_age(content: str) -> float | None:
    """Seconds since the lock was written, or None when it is not a timestamp."""
    try:
        return time.time() - float(content.strip())
    except ValueError:
        return None


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


@contextmanager
def hold_lock(primitives: LockPrimitives, state_id: str, *, timeout: float, retry: float,
              where: str):
    """Acquire, yield, and always release the lock of ``state_id``.

    We wait at most ``timeout`` plus one poll: any lock written before we started is
    stale by then and taken over, as Meltano would, so only a lock that keeps looking
    fresh (a clock far ahead, or an owner that keeps refreshing it) makes us give up.
    """
    poll = max(retry, MIN_POLL_SECONDS)
    deadline = time.monotonic() + timeout + poll
    while True:
        held = primitives.try_create(state_id, lock_content())
        if held is not None:
            break
        current = primitives.read_lock(state_id)
        if current is None:
            continue  # released between our create and our read: try again at once
        content, marker = current
        age = lock_age(content)
        if age is not None and age > timeout:
            primitives.remove_if_unchanged(state_id, content, marker)
            continue
        if time.monotonic() >= deadline:
            raise _timed_out(state_id, where, content, timeout + poll)
        time.sleep(poll)
    try:
        yield held
    finally:
        primitives.release(state_id, held)


@asynccontextmanager
async def hold_lock_async(create, read, remove, *, state_id: str, timeout: float, retry: float,
                          where: str):
    """``hold_lock`` for coroutines, so that thousands of locked writes share one event loop.

    ``create(content)`` returns a marker or None, ``read()`` returns (content, marker) or
    None, ``remove(content, marker)`` deletes the lock only if it is still that version.
    """
    import asyncio

    poll = max(retry, MIN_POLL_SECONDS)
    deadline = time.monotonic() + timeout + poll
    while True:
        content = lock_content()
        marker = await create(content)
        if marker is not None:
            break
        current = await read()
        if current is None:
            continue
        found, found_marker = current
        age = lock_age(found)
        if age is not None and age > timeout:
            await remove(found, found_marker)
            continue
        if time.monotonic() >= deadline:
            raise _timed_out(state_id, where, found, timeout + poll)
        await asyncio.sleep(poll)
    try:
        yield HeldLock(content, marker)
    finally:
        await remove(content, marker)


def _timed_out(state_id: str, where: str, content: str, waited: float) -> LockTimeoutError:
    shown = content.strip()[:40] or "an empty lock"
    return LockTimeoutError(
        f"State ID {state_id!r} is locked by another process in {where} "
        f"(lock {shown!r}); gave up after {waited:g} s (state_backend.lock_timeout_seconds)"
    )
