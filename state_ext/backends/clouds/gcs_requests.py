"""GCS requests watched and bounded through public hooks, for gcs.py.

gcsfs retries every request 6 times (about 30 s of backoff) with no setting to lower it.
aiohttp's public trace hooks (passed through gcsfs's public ``session_kwargs``) see each
attempt: an answer marks the run as progressing (``aio.run``), and the ``ATTEMPTS``-th
failure of the same request (same method and URL, as gcsfs retries it) raises
``OutOfAttempts`` from that failure, which gcsfs does not retry. A failed refresh of
the access token (before any request is sent) is counted the same way, by wrapping
the public ``apply`` of gcsfs's credentials. So a refusing or failing GCS ends after
two attempts, with the failure's own reason, as before.
"""

from __future__ import annotations

import time

from state_ext.backends.aio import mark_progress
from state_ext.backends.clouds.base import DEFAULT_MAX_ATTEMPTS

ATTEMPTS = DEFAULT_MAX_ATTEMPTS  # per request, whatever max_attempts says (as before)
RETRIED_STATUSES = {408, 429, 500, 501, 502, 503, 504}  # what gcsfs retries


class OutOfAttempts(Exception):
    """A request failed ``ATTEMPTS`` times: raised from its last failure, and not retried
    by gcsfs. It only carries that failure: the reason the user reads is the failure's."""

    carries_cause = True


_failures: dict[tuple[str, str], tuple[int, float]] = {}  # request -> (failures, last)
FORGET_AFTER = 120.0  # seconds: a failure older than this was not of the same request


def _request_of(params) -> tuple[str, str]:
    return params.method, str(params.url)


def _failed(request) -> int:
    """Count a failure of this request (gcsfs retries it with the same method and URL;
    its attempts may run in different tasks)."""
    now = time.monotonic()
    count, last = _failures.get(request, (0, now))
    count = 1 if now - last > FORGET_AFTER else count + 1
    if count >= ATTEMPTS:
        _failures.pop(request, None)
        return ATTEMPTS
    _failures[request] = (count, now)
    return count


def _done(request) -> None:
    _failures.pop(request, None)


async def _on_end(_session, _context, params) -> None:
    """The answer's body is read here, so that a connection dropped mid-body is one more
    failure of the request (below); the status then decides."""
    response = params.response
    body = await response.read()
    if response.status not in RETRIED_STATUSES:
        _done(_request_of(params))  # an answer gcsfs takes as it is
        if response.status < 400:
            mark_progress()  # an answer: the run is not stalled (see aio.run)
    elif _failed(_request_of(params)) >= ATTEMPTS:
        from gcsfs.retry import validate_response

        try:
            validate_response(response.status, body, str(params.url))
        except Exception as exc:  # noqa: BLE001 - gcsfs's own error for this answer
            raise OutOfAttempts(str(exc)) from exc


async def _on_exception(_session, _context, params) -> None:
    if isinstance(params.exception, OutOfAttempts) or \
            not isinstance(params.exception, Exception):
        return  # raised by _on_end (counted there), or a cancellation: no failure
    if _failed(_request_of(params)) >= ATTEMPTS:
        raise OutOfAttempts(str(params.exception)) from params.exception


def trace():
    import aiohttp

    trace = aiohttp.TraceConfig()
    trace.on_request_end.append(_on_end)
    trace.on_request_exception.append(_on_exception)
    return trace


def bound_token_refresh(credentials) -> None:
    """gcsfs refreshes the access token inside each request's retried attempt: its
    ``ATTEMPTS``-th failure in a task ends the request too (``OutOfAttempts``)."""
    apply = credentials.apply

    def bounded(out):
        try:
            apply(out)
        except Exception as exc:  # google-auth's RefreshError, TransportError
            if _failed(("token", "refresh")) >= ATTEMPTS:
                raise OutOfAttempts(str(exc)) from exc
            raise
        _done(("token", "refresh"))

    credentials.apply = bounded
