"""Turn an SDK exception (botocore, gcsfs/google-auth, azure-core, aiohttp) into one short reason.

The caller adds the service, the bucket and the redacted URI, and redacts secrets.
"""

from __future__ import annotations

import asyncio
import errno
import socket

from state_ext.errors import one_line


def _chain(exc: BaseException):
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__




def _credential_hint(scheme: str) -> str:
    return {
        "s3": "set state_backend.s3.aws_access_key_id and aws_secret_access_key, use "
              "s3://KEY:SECRET@bucket/prefix, or configure the AWS chain (AWS_ACCESS_KEY_ID, "
              "AWS_PROFILE, an instance role)",
        "gs": "set state_backend.gcs.application_credentials_json or "
              "application_credentials_path, or GOOGLE_APPLICATION_CREDENTIALS",
        "azure": "set state_backend.azure.connection_string, or storage_account_url with a "
                 "working Azure credential (environment, managed identity, az login)",
    }.get(scheme, "check the credentials")


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
        tuning = f" ({timeout_setting})" if timeout_setting else ""
        return f"timed out waiting for the{where}{tuning}"
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


def explain(exc: BaseException, *, service: str, bucket: str, word: str, endpoint: str | None,
            scheme: str, timeout_setting: str | None = None) -> str:
    """One short reason for ``exc``: what the service said, else what the connection did."""
    stalled = stall_reason(exc, service=service, endpoint=endpoint)
    if stalled:
        return stalled
    for err in _chain(exc):
        name = type(err).__name__
        if name == "BucketNotFound":
            return f"the {word} does not exist"
        if name in ("NoCredentialsError", "PartialCredentialsError"):
            return f"no AWS credentials found: {_credential_hint(scheme)}"
        if name in ("DefaultCredentialsError",):
            return f"no Google credentials found: {_credential_hint(scheme)}"
        if name in ("CredentialUnavailableError", "ClientAuthenticationError"):
            return f"authentication failed ({one_line(err, 160)}): {_credential_hint(scheme)}"
        code = _code(err)
        if code and (not code.isdigit() or code in ("401", "403")):  # decided by the service
            return _from_code(code, err, service=service, word=word, scheme=scheme)
    reason = network_failure(exc, service=service, endpoint=endpoint,
                             timeout_setting=timeout_setting)
    if reason:
        return reason
    for err in _chain(exc):
        module = type(err).__module__ or ""
        if type(err).__name__ in ("RefreshError", "TransportError") and \
                module.startswith("google"):
            return f"cannot obtain a Google access token: {one_line(err, 160)}"
        code = _code(err)
        if code:
            return _from_code(code, err, service=service, word=word, scheme=scheme)
    if isinstance(exc, PermissionError) or _denied(exc):
        return f"access denied: {one_line(exc)}: {_credential_hint(scheme)}"
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


def _code(err: BaseException) -> str:
    response = getattr(err, "response", None)
    if isinstance(response, dict):  # botocore ClientError
        return str(response.get("Error", {}).get("Code", ""))
    error_code = getattr(err, "error_code", None)  # azure-core HttpResponseError
    if error_code:
        return str(getattr(error_code, "value", error_code))
    code = getattr(err, "code", None)  # gcsfs HttpError
    if isinstance(code, int):
        return str(code)
    status = getattr(err, "status_code", None)
    return str(status) if isinstance(status, int) else ""


def _from_code(code: str, err: BaseException, *, service: str, word: str, scheme: str):
    if code in ("NoSuchBucket", "ContainerNotFound"):
        return f"the {word} does not exist"
    if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AuthenticationFailed",
                "InvalidAuthenticationInfo", "ExpiredToken", "InvalidToken", "401"):
        return f"the credentials were rejected ({code}): {_credential_hint(scheme)}"
    if code in ("AccessDenied", "AuthorizationFailure", "AuthorizationPermissionMismatch",
                "403", "AllAccessDisabled"):
        return f"access denied ({code}): {_credential_hint(scheme)}"
    if code in ("PermanentRedirect", "AuthorizationHeaderMalformed", "IllegalLocationConstraint"):
        return f"the {word} is in another region or endpoint ({code})"
    return f"{code}: {one_line(err, 160)}"
