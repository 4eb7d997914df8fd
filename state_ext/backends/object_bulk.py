"""Bulk writes of the object-store backend: ``import`` (put_many), ``clear --all``
(delete_many) and the transfer engine's checked writes (put_many_checked), with their
concurrency, on the store's event loop.

Each state is written under its own lock (locks.py), except new states that the planning
listing shows absent: those take one conditional create each (fast_create.py). A failure
cancels the requests still in flight (aio.bounded_gather) and says how many states were
done before it; each state is bounded by ``_one_state_timeout``.

A mixin of ``ObjectStoreBackend`` (objectstore.py), which holds the layout (``key``), the
lock (``_lock_async``), the object client (``store``) and ``run``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from state_ext.backends import aio
from state_ext.backends.base import CHANGED, FAST_IMPORT_MIN, digest
from state_ext.errors import StateExtError
from state_ext.model import Envelope
from state_ext.state_ids import validate_state_id

# Requests in flight, applied by aio.bounded_gather: locked writes hold a lock per state
# (three requests each), hence fewer than reads (objectstore.READ_CONCURRENCY). The
# transfer engine's put_many_checked and create_new_many take its ``concurrency``.
WRITE_CONCURRENCY = 16


class BulkWrites:
    def _one_state_timeout(self) -> float:
        """The most one locked write may take: lock, write and unlock requests, plus the
        lock wait. Bulk writes bound each state by it: a request can hang past the SDK's
        own timeouts (aiohttp waits for "100 Continue" from a frozen server forever)."""
        per = self.connection.timeout * (self.connection.max_attempts + 1)
        return per * 3 + self.settings.lock_timeout_seconds + self.settings.lock_retry_seconds

    def put_many_checked(self, states, expected, concurrency=8):
        """Migrate: per ID, lock, write, unlock, all on the event loop (``concurrency`` IDs
        in flight). An ID planned as absent is written with a conditional create, one
        request that is both the check and the write, so a new state costs three requests:
        lock, create, unlock."""
        ids = [validate_state_id(state_id) for state_id in states]
        if not ids:
            return {}

        async def one(state_id: str) -> str | None:
            try:
                return await asyncio.wait_for(
                    self._put_checked(state_id, states[state_id], expected[state_id]),
                    self._one_state_timeout())
            except StateExtError as exc:
                return exc.message
            except Exception as exc:  # noqa: BLE001 - reported per ID, as one line
                return self.describe_failure(f"write state {state_id!r}", exc)

        reasons = self.run("write states", aio.bounded_gather, concurrency, one, ids)
        return {state_id: reason for state_id, reason in zip(ids, reasons, strict=True)
                if reason}

    async def _put_checked(self, state_id: str, envelope: Envelope,
                           expected: str | None) -> str | None:
        key = self.key(state_id)
        data = envelope.to_json().encode("utf-8")
        async with self._lock_async(state_id):
            if expected is None:
                written = await self.store.create(key, data) is not None
            else:
                written = digest(self._parse(state_id, await self.store.get(key))) == expected
                if written:
                    await self.store.put(key, data)
        return None if written else CHANGED

    # -- new states in one request each (see fast_create.py) ------------------------------
    def plan_listing(self, pattern: str | None = None):
        """States and lock objects from one listing; scratch objects that a killed run of
        this host left behind are deleted on the way (see debris.py)."""
        from state_ext.backends import debris, fast_create

        seen = fast_create.listing(self, pattern)
        if seen.scratch:
            self.run("delete leftovers", debris.delete_dead_scratch, self, seen.scratch)
        return seen

    @property
    def fast_create_problem(self) -> str | None:
        from state_ext.backends import fast_create

        return fast_create.unsupported_reason(self)

    def create_new_many(self, states: dict[str, Envelope], concurrency: int = 64):
        from state_ext.backends import fast_create

        for state_id in states:
            validate_state_id(state_id)
        return fast_create.create_many(self, states, concurrency)

    def check_writable(self) -> None:
        from state_ext.backends import fast_create

        fast_create.check_writable(self)

    def put_many(self, states: dict[str, Envelope]) -> int:
        """Import: states the listing shows absent (and unlocked) by one conditional
        create each (fast_create.py); the rest, and any that someone created meanwhile
        (import overwrites), under their lock, ``WRITE_CONCURRENCY`` in flight."""
        from state_ext.backends import fast_create

        for state_id in states:
            validate_state_id(state_id)
        created = fast_create.create_absent(self, states, FAST_IMPORT_MIN, WRITE_CONCURRENCY)

        async def one(state_id: str, done: list) -> None:
            data = states[state_id].to_json().encode("utf-8")
            async with self._lock_async(state_id):
                await self.store.put(self.key(state_id), data)
                done.append(state_id)

        done = set(created)
        self._bulk("write states", [i for i in states if i not in done], one, "written",
                   already=len(done))
        return len(states)

    def delete_many(self, state_ids: Iterable[str]) -> int:
        """``clear --all``: every state under its lock; returns how many existed."""
        async def one(state_id: str, done: list) -> None:
            key = self.key(state_id)
            async with self._lock_async(state_id):
                if await self.store.exists(key):
                    await self.store.delete(key)
                    done.append(state_id)

        return len(self._bulk("delete states", list(state_ids), one, "cleared"))

    def _bulk(self, what: str, ids: list[str], one, verb: str, already: int = 0) -> list[str]:
        """Run ``one(state_id, done)`` for every ID on the loop. On the first failure the
        rest is cancelled and awaited, and the error says how many were done before it
        (counting the ``already`` done by an earlier step of the same command)."""
        for state_id in ids:
            validate_state_id(state_id)
        done: list[str] = []

        def bounded(state_id: str):
            return asyncio.wait_for(one(state_id, done), self._one_state_timeout())

        try:
            self.run(what, aio.bounded_gather, WRITE_CONCURRENCY, bounded, ids)
        except StateExtError as exc:
            total = already + len(ids)
            if total < 2:
                raise
            raise type(exc)(
                f"{exc.message}; {already + len(done)} of {total} states were {verb} before "
                "the failure (each one whole); running the same command again completes it"
            ) from None
        return done
