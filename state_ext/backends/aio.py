"""Run the object stores' coroutines so that a failure leaves nothing behind but one error.

The SDKs (aiobotocore/aiohttp, gcsfs, azure-storage) are asynchronous and run on one event
loop in a background thread. Three things would otherwise print tracebacks after the
clean error line, or keep writing after the command gave up:

* ``asyncio.gather`` returns at the first failure and leaves its other requests running;
  their later failures end as "Task exception was never retrieved". ``gather_or_cancel``
  cancels them and waits until they have unwound (locks released where the store answers).
* ``fsspec.asyn.sync`` abandons its coroutine when its timeout or a Ctrl-C ends the wait;
  ``run`` cancels it and waits for it instead.
* A frozen server (SIGSTOP, a network black hole, a stuck proxy) answers nothing and closes
  nothing. ``run`` waits by progress, not by size: every run has a ``Progress`` stamp,
  bumped whenever one of its requests gets an answer (``mark_progress``: the SDK hooks of
  cloud modules, a lock poll answered; for other stores a task of ``gather_or_cancel``
  that ends with a result), and the run fails with ``OperationTimeout`` once
  the stamp is older than the stall window (``state_ext.deadline``), whatever the size of
  the job.
* aiohttp runs each request body in a task of its own; when the server drops the
  connection that task fails too, unobserved. ``quiet_loop`` installs an exception handler
  that logs such leftovers of a failure already reported at debug level only, and keeps
  the default (loud) handling for anything else.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

CANCEL_GRACE_SECONDS = 5.0
_log = logging.getLogger("state_ext.backends")
_QUIET_LOOPS: set[int] = set()


class OperationTimeout(TimeoutError):
    """No request of the operation completed within the stall window (or its whole run
    passed an explicit bound); its requests were cancelled."""

    def __init__(self, message: str, *, stalled: float | None = None, waiting: int = 0):
        super().__init__(message)
        self.stalled, self.waiting = stalled, waiting


class Progress:
    """When a request of one run last got an answer, and how many tasks are in flight.

    Stores whose SDK reports each answer (S3, GCS, Azure: see clouds/) mark it per
    request; for the others, a task of ``gather_or_cancel`` that ends with a result (not a
    failure) is the mark. A request that timed out is no answer: a job whose requests all
    time out one by one must not look alive."""

    def __init__(self):
        self.stamp = time.monotonic()
        self.in_flight = 0
        self.completed = 0
        self.requests_seen = False

    def mark(self, *, task: bool = False) -> None:
        if task and self.requests_seen:
            return  # this store marks real answers: a finished task may be a failure
        if not task:
            self.requests_seen = True
        self.stamp = time.monotonic()
        self.completed += 1

    def idle_for(self) -> float:
        return time.monotonic() - self.stamp


_PROGRESS: contextvars.ContextVar[Progress | None] = contextvars.ContextVar(
    "state_ext_progress", default=None)


def mark_progress() -> None:
    """A request of the current run got an answer (callable from any of its coroutines)."""
    progress = _PROGRESS.get()
    if progress is not None:
        progress.mark()


def _leftover_of_a_failure(exc: BaseException | None) -> bool:
    """Connection-level errors of requests whose failure the caller already reported, also
    when carried by one of ours (``carries_cause``: gcs_requests' ``OutOfAttempts``)."""
    if exc is None:
        return False
    if getattr(exc, "carries_cause", False):
        return True  # a request's last failure (HTTP, connection or token refresh)
    module = type(exc).__module__ or ""
    return isinstance(exc, (OSError, asyncio.TimeoutError, asyncio.CancelledError)) or \
        module.split(".")[0] in ("aiohttp", "botocore", "aiobotocore", "azure", "gcsfs")


def quiet_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Route unobserved connection failures on ``loop`` to the debug log (once per loop)."""
    if id(loop) in _QUIET_LOOPS:
        return
    _QUIET_LOOPS.add(id(loop))
    previous = loop.get_exception_handler()

    def handler(the_loop, context):
        if _leftover_of_a_failure(context.get("exception")):
            _log.debug("ignored after a reported failure: %s: %r",
                       context.get("message"), context.get("exception"))
        elif previous is not None:
            previous(the_loop, context)
        else:
            the_loop.default_exception_handler(context)

    loop.set_exception_handler(handler)


def run(loop: asyncio.AbstractEventLoop, coroutine: Awaitable, timeout: float | None = None,
        *, stall: float | None = None):
    """Run ``coroutine`` on ``loop`` (another thread) and return its result.

    The wait is by progress: it fails with ``OperationTimeout`` when no request of the run
    has completed for ``stall`` seconds (default: the ``stall_timeout_seconds`` setting),
    however long the run as a whole takes. ``timeout``, if given, also bounds the whole run
    (only for calls that must end quickly, such as closing connections). On a timeout,
    Ctrl-C or any other end of the wait, the coroutine is cancelled and given
    ``CANCEL_GRACE_SECONDS`` to unwind before the exception goes on.
    """
    if stall is None:
        from state_ext.deadline import stall_timeout_seconds

        stall = stall_timeout_seconds()
    finished = threading.Event()
    progress = Progress()

    async def runner():
        _PROGRESS.set(progress)  # tasks created below inherit it
        try:
            return await coroutine
        finally:
            finished.set()

    started = time.monotonic()
    future = asyncio.run_coroutine_threadsafe(runner(), loop)
    try:
        while True:
            idle = progress.idle_for()
            left = stall - idle
            if timeout is not None:
                left = min(left, started + timeout - time.monotonic())
            if left <= 0:
                break
            concurrent.futures.wait([future], timeout=min(left, 1.0))
            if future.done():
                return future.result()
        if future.done():
            return future.result()
        if timeout is not None and time.monotonic() - started >= timeout:
            raise OperationTimeout(f"no result within {timeout:g} s")
        raise OperationTimeout(
            f"no request completed for {stall:g} s", stalled=stall, waiting=progress.in_flight)
    except BaseException:
        if not future.done():
            future.cancel()
            finished.wait(CANCEL_GRACE_SECONDS)
        raise


async def bounded_gather(limit: int, function: Callable[[Any], Awaitable], items: Iterable) -> list:
    """``function(item)`` for every item, at most ``limit`` in flight, results in order;
    at the first failure the rest is cancelled and awaited (``gather_or_cancel``). The one
    bounded fan-out of the object stores: each caller passes its own limit."""
    semaphore = asyncio.Semaphore(max(1, limit))

    async def one(item):
        async with semaphore:
            return await function(item)

    return await gather_or_cancel(one(item) for item in items)


async def gather_or_cancel(coroutines: Iterable[Awaitable]) -> list:
    """``asyncio.gather`` that, at the first failure, cancels the rest and awaits them."""
    tasks = [asyncio.ensure_future(c) for c in coroutines]
    if not tasks:
        return []
    progress = _PROGRESS.get()
    if progress is not None:
        progress.in_flight += len(tasks)

        def done_one(task) -> None:
            progress.in_flight -= 1
            if task.cancelled() or task.exception() is not None:
                return
            result = task.result()
            if not isinstance(result, (BaseException, str)):  # str: a per-item failure
                progress.mark(task=True)

        for task in tasks:
            task.add_done_callback(done_one)
    try:
        done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    except BaseException:  # we were cancelled ourselves
        await _cancel_all(tasks)
        raise
    # The failure to report is one that ended the wait, not one our cancelling caused (a
    # cancelled connect may surface as the SDK's "could not connect" error).
    failed = [t for t in tasks if t in done and not t.cancelled() and t.exception() is not None]
    if pending:
        await _cancel_all(pending)
    for task in tasks:  # retrieve every outcome, so that none is reported as "never retrieved"
        if task.done() and not task.cancelled():
            task.exception()
    if failed:
        raise failed[0].exception()
    return [task.result() for task in tasks]


async def _cancel_all(tasks) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
