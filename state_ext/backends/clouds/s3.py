"""S3 (``s3://bucket/prefix``): credentials, client, object operations and words.

Credentials as Meltano resolves them: ``state_backend.s3.aws_access_key_id`` and
``aws_secret_access_key``, else the URI's ``KEY:SECRET@`` user info, else the standard AWS
chain (environment, shared files and profiles, instance roles).
``state_backend.s3.endpoint_url`` is always honoured (Meltano ignores it without explicit
keys); without it botocore reads ``AWS_ENDPOINT_URL_S3`` and ``AWS_ENDPOINT_URL`` itself.
The region comes from the standard chain.

Requests go through the aiobotocore client s3fs hands out (``set_session``, public), with
few retries and short timeouts; botocore's ``after-call`` event marks each answer as
progress (``aio.run``). Errors stay botocore's, read by ``code``.
"""

from __future__ import annotations

import os
import re
from typing import Any
from urllib.parse import unquote, urlsplit

from state_ext.backends.aio import mark_progress
from state_ext.backends.clouds.base import (
    JSON,
    BucketNotFound,
    Connection,
    ObjectClient,
    epoch,
    md5_of,
    tuning,
)
from state_ext.backends.clouds.failures import DENIED, ELSEWHERE, MISSING, REJECTED, Translation
from state_ext.errors import ConfigurationError, MissingExtraError

SCHEME, SERVICE, WORD, NAMESPACE = "s3", "S3", "bucket", "s3"
WORDS = Translation(
    hint="set state_backend.s3.aws_access_key_id and aws_secret_access_key, use "
         "s3://KEY:SECRET@bucket/prefix, or configure the AWS chain (AWS_ACCESS_KEY_ID, "
         "AWS_PROFILE, an instance role)",
    codes={"NoSuchBucket": MISSING, "InvalidAccessKeyId": REJECTED,
           "SignatureDoesNotMatch": REJECTED, "ExpiredToken": REJECTED,
           "InvalidToken": REJECTED, "AccessDenied": DENIED, "AllAccessDisabled": DENIED,
           "PermanentRedirect": ELSEWHERE, "AuthorizationHeaderMalformed": ELSEWHERE,
           "IllegalLocationConstraint": ELSEWHERE},
    credential_errors={"NoCredentialsError": "no AWS credentials found",
                       "PartialCredentialsError": "no AWS credentials found"},
)
EXISTS = ("PreconditionFailed", "412", "ConditionalRequestConflict", "409")


def connect(uri: str, options: dict, warn=None) -> Connection:
    try:
        from s3fs import S3FileSystem
    except ImportError:
        raise MissingExtraError("The s3:// state backend", "s3") from None
    parts = urlsplit(uri)
    key = options.get("aws_access_key_id") or (unquote(parts.username) if parts.username else None)
    secret = options.get("aws_secret_access_key") or (
        unquote(parts.password) if parts.password else None
    )
    if bool(key) != bool(secret):
        raise ConfigurationError(
            "The s3:// state backend needs both state_backend.s3.aws_access_key_id and "
            "state_backend.s3.aws_secret_access_key (or s3://KEY:SECRET@bucket/prefix), "
            "or neither to use the AWS credential chain"
        )
    endpoint = options.get("endpoint_url") or None
    timeout, attempts = tuning(options)
    kwargs: dict[str, Any] = {
        "config_kwargs": {
            "connect_timeout": min(timeout, 5.0),
            "read_timeout": timeout,
            "retries": {"max_attempts": attempts, "mode": "standard"},
            "user_agent_extra": "state-ext",
            # Bulk reads and creates keep up to 64 requests in flight; botocore's pool of
            # 10 connections would queue the rest, each waiting a round trip.
            "max_pool_connections": 64,
        },
        # Fresh instance: fsspec would otherwise share one across settings changes.
        "skip_instance_cache": True,
    }
    if key:
        kwargs.update(key=key, secret=secret)
    if endpoint:
        kwargs["endpoint_url"] = endpoint
    profile = options.get("profile")
    if profile:
        kwargs["profile"] = profile
    fs = _progress_class(S3FileSystem)(**kwargs)
    fs.retries = attempts  # s3fs' own retry loop around each call
    shown_endpoint = endpoint or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get(
        "AWS_ENDPOINT_URL")
    return Connection(fs, [s for s in (key, secret) if s], shown_endpoint, timeout, attempts)


def _answered(**_event) -> None:
    mark_progress()  # botocore's after-call: the service answered (an error code included)


def _progress_class(base):
    class ProgressS3FileSystem(base):
        """s3fs whose client reports every answer as progress (see aio.run), through
        botocore's public event system."""

        async def set_session(self, refresh=False, kwargs={}):  # noqa: B006 - s3fs' signature
            client = await super().set_session(refresh=refresh, kwargs=kwargs)
            client.meta.events.register("after-call.s3", _answered,
                                        unique_id="state-ext-progress")
            return client

    return ProgressS3FileSystem


def code(exc: BaseException) -> str:
    """The S3 error code (or HTTP status) of a botocore error anywhere in the chain."""
    seen = exc
    while seen is not None:
        response = getattr(seen, "response", None)
        if isinstance(response, dict):
            error = response.get("Error", {})
            return str(error.get("Code", "")) or str(
                response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
        seen = seen.__cause__ or seen.__context__
    return ""


class S3Client(ObjectClient):
    service = SERVICE
    checks_creates = True
    _client_ready = False

    async def client(self):
        """The aiobotocore client s3fs hands out (``set_session``: public), without
        "Expect: 100-continue" (see ``_without_expect_continue``). Whether a conditional
        DELETE's answer can be trusted is read from the endpoint it really talks to (a
        setting, an environment variable or a profile's ``endpoint_url``): see ``on_aws``."""
        client = await self.fs.set_session()
        if not self._client_ready:
            self._without_expect_continue(client)
            self.delete_tells = on_aws(client.meta.endpoint_url)
        return client

    def _without_expect_continue(self, client) -> None:
        """botocore sends every PutObject with "Expect: 100-continue"; aiohttp then waits
        for the "100 Continue" with no timeout at all, so a frozen endpoint would hold a
        write forever. Our bodies are a few kilobytes: send them at once, and the read
        timeout bounds the request."""
        from botocore.handlers import add_expect_header

        client.meta.events.unregister("before-call.s3", add_expect_header)
        self._client_ready = True

    async def _call(self, method: str, **kwargs):
        client = await self.client()
        return await getattr(client, method)(Bucket=self.bucket, **kwargs)

    async def list_keys(self, prefix: str) -> list[str]:
        keys: list[str] = []
        kwargs: dict[str, Any] = {"Prefix": prefix, "MaxKeys": self.page_size}
        while True:
            page = await self._call("list_objects_v2", **kwargs)
            keys.extend(item["Key"] for item in page.get("Contents", ()))
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return keys
            kwargs["ContinuationToken"] = token

    async def get_stamped(self, key):
        try:
            response = await self._call("get_object", Key=key)
        except Exception as exc:  # botocore ClientError, or a connection error
            if code(exc) in ("NoSuchKey", "404"):
                return None
            raise
        async with response["Body"] as body:
            data = await body.read()
        return data, response.get("ETag"), epoch(response.get("LastModified"))

    async def put(self, key, data):
        await self._call("put_object", Key=key, Body=data, ContentType=JSON)

    async def create(self, key, data):
        try:
            response = await self._call("put_object", Key=key, Body=data, ContentType=JSON,
                                        IfNoneMatch="*")
        except Exception as exc:  # botocore ClientError, or a connection error
            # 412 PreconditionFailed: it exists; 409 ConditionalRequestConflict: a racing
            # create or delete is in flight. Either way the caller re-reads and retries.
            if code(exc) in EXISTS:
                return None
            raise
        return response.get("ETag")

    async def create_checked(self, key, data):
        """PutObject with ``If-None-Match: *`` and ``Content-MD5`` (S3 refuses a body whose
        MD5 differs, with BadDigest). Verified when the ETag is the MD5 of our bytes; None
        when it cannot say (an SSE-KMS ETag is no MD5)."""
        import base64

        from botocore.exceptions import ClientError

        digest = md5_of(data)
        try:
            response = await self._call(
                "put_object", Key=key, Body=data, ContentType=JSON, IfNoneMatch="*",
                ContentMD5=base64.b64encode(digest).decode())
        except ClientError as exc:
            if code(exc) in EXISTS:
                return None
            raise
        etag = response.get("ETag")
        verified = True if (etag or "").strip('"') == digest.hex() else None
        return etag, verified

    async def delete(self, key):
        await self._call("delete_object", Key=key)

    async def delete_if(self, key, marker):
        try:
            await self._call("delete_object", Key=key, IfMatch=marker)
        except Exception as exc:  # botocore ClientError, or a connection error
            if code(exc) in ("PreconditionFailed", "412", "NoSuchKey", "404"):
                return False
            if code(exc) in ("ConditionalRequestConflict", "409"):
                return None  # a concurrent request on the key: nothing is known
            raise
        return True

    async def check_bucket(self):
        try:
            await self._call("head_bucket")
        except Exception as exc:  # botocore ClientError, or a connection error
            if code(exc) in ("NoSuchBucket", "404"):
                raise BucketNotFound(self.bucket) from None
            raise


def client(connection: Connection, bucket: str) -> S3Client:
    return S3Client(connection.fs, bucket)


# An S3 service host of AWS: s3.amazonaws.com, [bucket.]s3[-fips|-accesspoint|-external-1]
# [.dualstack][.region][.vpce].amazonaws.com[.cn], S3 Express; not EC2 or ELB host names.
AWS_S3_HOST = re.compile(r"^(?:[^.]+\.)*s3(?:express)?(?:-[a-z0-9-]+)?(?:\.dualstack)?"
                         r"(?:\.[a-z0-9-]+)?(?:\.vpce)?\.amazonaws\.com(?:\.cn)?$")


def on_aws(endpoint: str | None) -> bool:
    """AWS S3 honours ``If-Match`` on DeleteObject (since September 2025: 412 for another
    version, 404 when gone). Some S3-compatible servers accept the header and delete
    anyway, so another endpoint's delete is not taken as an answer (``delete_tells``)."""
    if not endpoint:
        return False
    host = (urlsplit(endpoint if "//" in endpoint else f"//{endpoint}").hostname or "").lower()
    return AWS_S3_HOST.match(host) is not None
