"""Turn an SDK exception (botocore, gcsfs/google-auth, azure-core, aiohttp) into one short reason.

The caller adds the service, the bucket and the redacted URI, and redacts secrets.
"""

from __future__ import annotations

import asyncio


def _chain(exc: BaseException):
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def _one_line(exc: BaseException, limit: int = 240) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


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


def explain(exc: BaseException, *, service: str, bucket: str, word: str, endpoint: str | None,
            scheme: str) -> str:
    where = f" at {endpoint}" if endpoint else ""
    for err in _chain(exc):
        name = type(err).__name__
        module = type(err).__module__ or ""
        if name == "BucketNotFound":
            return f"the {word} does not exist"
        if name in ("NoCredentialsError", "PartialCredentialsError"):
            return f"no AWS credentials found: {_credential_hint(scheme)}"
        if name in ("DefaultCredentialsError",):
            return f"no Google credentials found: {_credential_hint(scheme)}"
        if name in ("RefreshError", "TransportError") and module.startswith("google"):
            return f"cannot obtain a Google access token: {_one_line(err, 160)}"
        if name in ("CredentialUnavailableError", "ClientAuthenticationError"):
            return f"authentication failed ({_one_line(err, 160)}): {_credential_hint(scheme)}"
        if name in ("EndpointConnectionError", "ConnectTimeoutError", "ConnectionClosedError",
                    "ClientConnectorError", "ServerDisconnectedError", "ServiceRequestError",
                    "ClientOSError", "ConnectionRefusedError", "ServerTimeoutError",
                    "ReadTimeoutError", "ServiceResponseError", "ConnectionResetError"):
            return f"cannot reach the {service} endpoint{where} ({name})"
        if isinstance(err, (asyncio.TimeoutError, TimeoutError)) or name == "FSTimeoutError":
            return f"no answer from the {service} endpoint{where} in time"
        code = _code(err)
        if code:
            reason = _from_code(code, err, service=service, word=word, scheme=scheme)
            if reason:
                return reason
    last = exc
    if isinstance(last, PermissionError):
        return f"access denied: {_one_line(last)}: {_credential_hint(scheme)}"
    return f"{type(last).__name__}: {_one_line(last)}"


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
    return f"{code}: {_one_line(err, 160)}"
