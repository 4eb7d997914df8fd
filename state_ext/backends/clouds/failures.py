"""A cloud's failure as one short reason, in the user's words: what the service said, in
the words of the cloud's ``Translation`` (its error codes, credential errors and hint),
else what the connection did (refused, unresolvable, timed out, dropped), which is the
same for every cloud. The caller adds the service, the bucket and the redacted URI.
"""

from __future__ import annotations

import asyncio
import errno
import socket
from dataclasses import dataclass, field

from state_ext.errors import one_line

MISSING, REJECTED, DENIED, ELSEWHERE = "missing", "rejected", "denied", "elsewhere"


@dataclass
class Translation:
    """A cloud's words for what its service says: error codes by kind (MISSING,
    REJECTED, DENIED, ELSEWHERE), credential errors by exception name (before the
    network is looked at) and late ones (``module-root.Name``, after it), and the hint
    that says which settings hold its credentials. ``{detail}`` is the error's line."""

    hint: str = "check the credentials"
    codes: dict[str, str] = field(default_factory=dict)
    credential_errors: dict[str, str] = field(default_factory=dict)
    late_errors: dict[str, str] = field(default_factory=dict)

    def merged(self, *others: Translation) -> Translation:
        """This one's hint with everyone's codes: for a generic fsspec URL, which may be
        one of the clouds' SDKs under another scheme (s3a://, gcs://, az://)."""
        merged = Translation(self.hint, dict(self.codes), dict(self.credential_errors),
                             dict(self.late_errors))
        for other in others:
            merged.codes.update(other.codes)
            merged.credential_errors.update(other.credential_errors)
            merged.late_errors.update(other.late_errors)
        return merged


HTTP_CODES = {"401": REJECTED, "403": DENIED}


def _chain(exc: BaseException):
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def _links(exc: BaseException):
    """The chain, plus the OS error aiohttp keeps beside it (``ClientConnectorError.os_error``)."""
    for err in _chain(exc):
        yield err
        inner = getattr(err, "os_error", None)
        if isinstance(inner, BaseException):
            yield inner


REFUSED = (errno.ECONNREFUSED,)
DROPPED_NAMES = {
    "ConnectionResetError", "BrokenPipeError", "ConnectionAbortedError", "ServerDisconnectedError",
    "ClientPayloadError", "ContentLengthError", "TransferEncodingError", "ConnectionClosedError",
    "ResponseStreamingError", "IncompleteReadError", "IncompleteRead", "RemoteDisconnected",
    "ClientConnectionResetError", "ServiceResponseError", "ProtocolError", "EOFError",
}
TIMEOUT_NAMES = {"ConnectTimeoutError", "ReadTimeoutError", "ServerTimeoutError",
                 "FSTimeoutError", "OperationTimeout", "ConnectionTimeoutError",
                 "SocketTimeoutError", "timeout"}
CONNECT_NAMES = {"EndpointConnectionError", "ClientConnectorError", "ServiceRequestError",
                 "ClientOSError", "ConnectionError", "ClientConnectionError", "HTTPClientError"}


def network_failure(exc: BaseException, *, service: str, endpoint: str | None,
                    timeout_setting: str | None = None) -> str | None:
    """What happened to the connection, in the user's words, or None if it is not that.

    The whole chain is looked at before deciding, most specific first: botocore's
    ``EndpointConnectionError`` wraps aiohttp's error, which holds the refused ``OSError``.
    """
    links = list(_links(exc))
    names = {type(err).__name__ for err in links}
    where = f" {service} endpoint{f' at {endpoint}' if endpoint else ''}"
    if any(isinstance(e, ConnectionRefusedError) or getattr(e, "errno", None) in REFUSED
           for e in links) or "Connection refused" in " ".join(map(str, links[:3])):
        return f"cannot reach the{where}: connection refused (is the server running there?)"
    if any(isinstance(e, socket.gaierror) for e in links):
        return f"cannot reach the{where}: its host name does not resolve"
    if any(isinstance(e, (asyncio.TimeoutError, TimeoutError)) for e in links) or \
            names & TIMEOUT_NAMES:
        tuning_hint = f" ({timeout_setting})" if timeout_setting else ""
        return f"timed out waiting for the{where}{tuning_hint}"
    if names & DROPPED_NAMES or any(isinstance(e, (ConnectionResetError, BrokenPipeError))
                                    for e in links):
        return f"the connection to the{where} was dropped mid-request"
    connect = [e for e in links if type(e).__name__ in CONNECT_NAMES]
    if connect:
        return f"cannot reach the{where}: connection failed ({one_line(connect[-1], 160)})"
    return None


def stall_reason(exc: BaseException, *, service: str, endpoint: str | None) -> str | None:
    """A run that got no answer for the stall window (``aio.OperationTimeout``), in words:
    how long, what was still waiting, and the setting that sets the window."""
    stalled = getattr(exc, "stalled", None)
    if type(exc).__name__ != "OperationTimeout" or stalled is None:
        return None
    where = f"the {service} endpoint{f' at {endpoint}' if endpoint else ''}"
    waiting = getattr(exc, "waiting", 0)
    what = f"; {waiting:,} operations still waiting" if waiting > 1 \
        else ""
    return (f"no answer from {where} for {stalled:g} s (the server or the network is not "
            f"responding{what}; the window is stall_timeout_seconds, env "
            "STATE_EXT_STALL_TIMEOUT_SECONDS)")


def explain(exc: BaseException, words: Translation, *, service: str, word: str,
            endpoint: str | None, timeout_setting: str | None = None) -> str:
    """One short reason for ``exc``: what the service said, else what the connection did."""
    while getattr(exc, "carries_cause", False) and exc.__cause__ is not None:
        exc = exc.__cause__
    stalled = stall_reason(exc, service=service, endpoint=endpoint)
    if stalled:
        return stalled
    for err in _chain(exc):
        name = type(err).__name__
        if name == "BucketNotFound":
            return f"the {word} does not exist"
        if name in words.credential_errors:
            detail = one_line(err, 160)
            return f"{words.credential_errors[name].format(detail=detail)}: {words.hint}"
        code = error_code(err)
        if code and (not code.isdigit() or code in ("401", "403")):  # decided by the service
            return _from_code(code, err, words, word=word)
    reason = network_failure(exc, service=service, endpoint=endpoint,
                             timeout_setting=timeout_setting)
    if reason:
        return reason
    for err in _chain(exc):
        root = (type(err).__module__ or "").split(".")[0]
        late = words.late_errors.get(f"{root}.{type(err).__name__}")
        if late:
            return late.format(detail=one_line(err, 160))
        code = error_code(err)
        if code:
            return _from_code(code, err, words, word=word)
    if isinstance(exc, PermissionError) or _denied(exc):
        return f"access denied: {one_line(exc)}: {words.hint}"
    if isinstance(exc, FileNotFoundError):
        return f"not found: {one_line(exc)}"
    return f"{type(exc).__name__}: {one_line(exc)}"


DENIED_WORDS = ("permission denied", "not enough privileges", "access denied",
                "login incorrect", "authentication failed")


def _denied(exc: BaseException) -> bool:
    """A refusal that only the message tells (FTP's "530 Login incorrect", "550 Not enough
    privileges", SSH's "Authentication failed")."""
    text = str(exc).lower()
    return any(word in text for word in DENIED_WORDS) or text.startswith("530")


def error_code(err: BaseException) -> str:
    """The service's code in the shape each SDK keeps it (any of them can reach a generic
    fsspec URL: s3a:// is s3fs, az:// adlfs, gcs:// gcsfs)."""
    response = getattr(err, "response", None)
    if isinstance(response, dict):  # botocore ClientError
        return str(response.get("Error", {}).get("Code", ""))
    code = getattr(err, "error_code", None)  # azure-core HttpResponseError
    if code:
        return str(getattr(code, "value", code))
    code = getattr(err, "code", None)  # gcsfs HttpError
    if isinstance(code, int):
        return str(code)
    status = getattr(err, "status_code", None)
    return str(status) if isinstance(status, int) else ""


def _from_code(code: str, err: BaseException, words: Translation, *, word: str) -> str:
    kind = words.codes.get(code) or HTTP_CODES.get(code)
    if kind == MISSING:
        return f"the {word} does not exist"
    if kind == REJECTED:
        return f"the credentials were rejected ({code}): {words.hint}"
    if kind == DENIED:
        return f"access denied ({code}): {words.hint}"
    if kind == ELSEWHERE:
        return f"the {word} is in another region or endpoint ({code})"
    return f"{code}: {one_line(err, 160)}"
