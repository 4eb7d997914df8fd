"""GCS requests watched and bounded through public hooks, for gcs.py.

gcsfs retries every request 6 times (about 30 s of backoff) with no setting to lower it.
aiohttp's public trace hooks (passed through gcsfs's public ``session_kwargs``) see each
attempt: an answer marks the run as progressing (``aio.run``), and the ``ATTEMPTS``-th
failure that gcsfs would retry (``gcsfs.retry.is_retriable`` of the error gcsfs makes of
it) of the same request (same method and URL, in the same task, as gcsfs retries it)
raises ``OutOfAttempts`` from that failure, which gcsfs does not retry. A failed refresh
of the access token (before any request is sent) is counted the same way, per
credentials object, by wrapping the public ``apply`` of gcsfs's credentials. So a
refusing or failing GCS ends after two attempts, with the failure's own reason, as before.

The hooks run in the task that awaits the request (gcsfs's retry loop awaits each attempt
in place), so ``responses()`` hands its caller the answers to its own requests: one GET
gives an object's bytes and, from the answer's headers, its generation.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import time
import weakref

from state_ext.backends.aio import mark_progress
from state_ext.backends.clouds.base import DEFAULT_MAX_ATTEMPTS

ATTEMPTS = DEFAULT_MAX_ATTEMPTS  # per request, whatever max_attempts says (as before)
FORGET_AFTER = 120.0  # seconds: a failure older than this was not of the same request


class OutOfAttempts(Exception):
    """A request failed ``ATTEMPTS`` times: raised from its last failure, and not retried
    by gcsfs. It only carries that failure: the reason the user reads is the failure's."""

    carries_cause = True


class _Outside:
    """The owner of failures counted outside any task."""


_OUTSIDE = _Outside()


class Failures:
    """Failures of each request, per task: gcsfs retries a request in the task that sent
    it, so a task that ends (or is cancelled mid-backoff) takes its counts with it."""

    def __init__(self):
        self._by_task: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def _table(self, create: bool = True) -> dict:
        try:
            owner = asyncio.current_task() or _OUTSIDE
        except RuntimeError:  # no running loop
            owner = _OUTSIDE
        return self._by_task.setdefault(owner, {}) if create else self._by_task.get(owner, {})

    def failed(self, request) -> int:
        """Count a failure of ``request``; its count (``ATTEMPTS`` ends the request)."""
        now = time.monotonic()
        table = self._table()
        for old in [r for r, (_, last) in table.items() if now - last > FORGET_AFTER]:
            del table[old]
        count = table.get(request, (0, now))[0] + 1
        if count >= ATTEMPTS:
            table.pop(request, None)
            return ATTEMPTS
        table[request] = (count, now)
        return count

    def done(self, request) -> None:
        self._table(create=False).pop(request, None)


_requests = Failures()
_ANSWERS: contextvars.ContextVar[list | None] = contextvars.ContextVar(
    "state_ext_gcs_answers", default=None)


@contextlib.contextmanager
def responses():
    """The answers (status, headers, body) to the requests awaited inside, in order."""
    answers: list = []
    token = _ANSWERS.set(answers)
    try:
        yield answers
    finally:
        _ANSWERS.reset(token)


def _request_of(params) -> tuple[str, str]:
    return params.method, str(params.url)


def _retried(exc: BaseException) -> bool:
    from gcsfs.retry import is_retriable

    return is_retriable(exc)


async def _on_end(_session, _context, params) -> None:
    """The answer's body is read here, so that a connection dropped mid-body is one more
    failure of the request (below); the status then decides, as gcsfs decides it."""
    response = params.response
    body = await response.read()
    answers = _ANSWERS.get()
    if answers is not None:
        answers.append((response.status, response.headers, body))
    request = _request_of(params)
    if response.status < 400:
        _requests.done(request)
        mark_progress()  # an answer: the run is not stalled (see aio.run)
        return
    from gcsfs.retry import validate_response

    try:
        validate_response(response.status, body, str(params.url))
    except Exception as exc:  # noqa: BLE001 - gcsfs's own error for this answer
        if not _retried(exc):
            _requests.done(request)  # an answer gcsfs takes as it is
        elif _requests.failed(request) >= ATTEMPTS:
            raise OutOfAttempts(str(exc)) from exc
    else:  # 499: gcsfs takes it as it is
        _requests.done(request)


async def _on_exception(_session, _context, params) -> None:
    exc = params.exception
    if isinstance(exc, OutOfAttempts) or not isinstance(exc, Exception):
        return  # raised by _on_end (counted there), or a cancellation: no failure
    if not _retried(exc):
        _requests.done(_request_of(params))  # gcsfs gives up on it at once
    elif _requests.failed(_request_of(params)) >= ATTEMPTS:
        raise OutOfAttempts(str(exc)) from exc


def trace():
    import aiohttp

    trace = aiohttp.TraceConfig()
    trace.on_request_end.append(_on_end)
    trace.on_request_exception.append(_on_exception)
    return trace


def bound_token_refresh(credentials) -> None:
    """gcsfs refreshes the access token inside each request's retried attempt: its
    ``ATTEMPTS``-th failure in a task ends the request too (``OutOfAttempts``). Counted
    per credentials object."""
    apply = credentials.apply
    refreshes = Failures()

    def bounded(out):
        try:
            apply(out)
        except Exception as exc:  # google-auth's RefreshError, TransportError
            if _retried(exc) and refreshes.failed("refresh") >= ATTEMPTS:
                raise OutOfAttempts(str(exc)) from exc
            raise
        refreshes.done("refresh")

    credentials.apply = bounded
