"""Run the object stores' coroutines so that a failure leaves nothing behind but one error.

The SDKs (aiobotocore/aiohttp, gcsfs, azure-storage) are asynchronous and run on one event
loop in a background thread. Three things would otherwise print tracebacks after the
clean error line, or keep writing after the command gave up:

* ``asyncio.gather`` returns at the first failure and leaves its other requests running;
  their later failures end as "Task exception was never retrieved". ``gather_or_cancel``
  cancels them and waits until they have unwound (locks released where the store answers).
* ``fsspec.asyn.sync`` abandons its coroutine when its timeout or a Ctrl-C ends the wait;
  ``run`` cancels it and waits for it instead.
* aiohttp runs each request body in a task of its own; when the server drops the
  connection that task fails too, unobserved. ``quiet_loop`` installs an exception handler
  that logs such leftovers of a failure already reported at debug level only, and keeps
  the default (loud) handling for anything else.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Awaitable, Iterable

CANCEL_GRACE_SECONDS = 5.0
_log = logging.getLogger("state_ext.backends")
_QUIET_LOOPS: set[int] = set()


class OperationTimeout(TimeoutError):
    """The whole operation took longer than its bound; its requests were cancelled."""


def _leftover_of_a_failure(exc: BaseException | None) -> bool:
    """Connection-level errors of requests whose failure the caller already reported."""
    if exc is None:
        return False
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


def run(loop: asyncio.AbstractEventLoop, coroutine: Awaitable, timeout: float | None):
    """Run ``coroutine`` on ``loop`` (another thread) and return its result.

    On timeout, Ctrl-C or any other end of the wait, the coroutine is cancelled and given
    ``CANCEL_GRACE_SECONDS`` to unwind before the exception goes on.
    """
    finished = threading.Event()

    async def runner():
        try:
            return await coroutine
        finally:
            finished.set()

    future = asyncio.run_coroutine_threadsafe(runner(), loop)
    try:
        concurrent.futures.wait([future], timeout=timeout)
        if not future.done():
            raise OperationTimeout(f"no result within {timeout:g} s")
        return future.result()
    except BaseException:
        if not future.done():
            future.cancel()
            finished.wait(CANCEL_GRACE_SECONDS)
        raise


async def gather_or_cancel(coroutines: Iterable[Awaitable]) -> list:
    """``asyncio.gather`` that, at the first failure, cancels the rest and awaits them."""
    tasks = [asyncio.ensure_future(c) for c in coroutines]
    if not tasks:
        return []
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
