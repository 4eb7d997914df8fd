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


class _Refusals:
    """What to do when our create finds a lock already there; one rule for both loops."""

    RETRY, TAKE_OVER, WAIT = "retry", "take over", "wait"

    def __init__(self, state_id: str, where: str, timeout: float, retry: float):
        self.state_id, self.where, self.timeout = state_id, where, timeout
        self.poll = max(retry, MIN_POLL_SECONDS)
        self.deadline = time.monotonic() + timeout + self.poll

    def next_step(self, current: tuple[str, Any] | None) -> str:
        if current is None:
            return self.RETRY  # released between our create and our read: try again at once
        age = lock_age(current[0])
        if age is not None and age > self.timeout:
            return self.TAKE_OVER
        if time.monotonic() >= self.deadline:
            shown = current[0].strip()[:40] or "an empty lock"
            raise LockTimeoutError(
                f"State ID {self.state_id!r} is locked by another process in {self.where} "
                f"(lock {shown!r}); gave up after {self.timeout + self.poll:g} s "
                "(state_backend.lock_timeout_seconds)"
            )
        return self.WAIT


@contextmanager
def hold_lock(primitives: LockPrimitives, state_id: str, *, timeout: float, retry: float,
              where: str):
    """Acquire, yield, and always release the lock of ``state_id``.

    We wait at most ``timeout`` plus one poll: any lock written before we started is
    stale by then and taken over, as Meltano would, so only a lock that keeps looking
    fresh (a clock far ahead, or an owner that keeps refreshing it) makes us give up.
    """
    refusals = _Refusals(state_id, where, timeout, retry)
    while (held := primitives.try_create(state_id, lock_content())) is None:
        current = primitives.read_lock(state_id)
        step = refusals.next_step(current)
        if step == refusals.TAKE_OVER:
            primitives.remove_if_unchanged(state_id, *current)
        elif step == refusals.WAIT:
            time.sleep(refusals.poll)
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

    refusals = _Refusals(state_id, where, timeout, retry)
    while (marker := await create(content := lock_content())) is None:
        current = await read()
        step = refusals.next_step(current)
        if step == refusals.TAKE_OVER:
            await remove(*current)
        elif step == refusals.WAIT:
            await asyncio.sleep(refusals.poll)
    try:
        yield HeldLock(content, marker)
    finally:
        await remove(content, marker)
