"""The few object operations the object-store backend needs, per service, all async.

Keys are passed raw to each service's API (never through fsspec path parsing, which reads
``?``, ``#`` or globs in a key as syntax), so a state ID is exactly its object key, as in
Meltano. Conditional operations use what each service enforces on the server:

======  =========================  ===========================  ============================
store   create if absent           version marker               delete only that version
======  =========================  ===========================  ============================
S3      PutObject If-None-Match:*  ETag                         DeleteObject If-Match
GCS     multipart upload,          generation                   DELETE ifGenerationMatch
        ifGenerationMatch=0
Azure   upload If-None-Match:*     ETag                         delete If-Match
other   pipe_file(mode="create")   the content                  re-read, compare, delete
======  =========================  ===========================  ============================
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

JSON = "application/json"


class BucketNotFound(Exception):
    """The bucket or container does not exist."""


class AsyncStore:
    """One bucket of one service."""

    service = "object store"
    page_size = 1000  # keys per listing request (the services' maximum for S3 and GCS)

    def __init__(self, fs, bucket: str):
        self.fs, self.bucket = fs, bucket

    async def list_keys(self, prefix: str) -> list[str]:
        raise NotImplementedError

    async def get(self, key: str) -> bytes | None:
        found = await self.get_versioned(key)
        return None if found is None else found[0]

    async def get_versioned(self, key: str) -> tuple[bytes, Any] | None:
        """(data, version marker), or None when the key does not exist."""
        found = await self.get_stamped(key)
        return None if found is None else found[:2]

    async def get_stamped(self, key: str) -> tuple[bytes, Any, float | None] | None:
        """(data, version marker, last-modified epoch or None), or None when absent."""
        raise NotImplementedError

    async def put(self, key: str, data: bytes) -> None:
        raise NotImplementedError

    async def create(self, key: str, data: bytes) -> Any | None:
        """Write only if absent: the new version marker, or None when the key exists."""
        raise NotImplementedError

    async def exists(self, key: str) -> bool:
        return await self.get_versioned(key) is not None

    async def delete(self, key: str) -> None:
        raise NotImplementedError

    async def delete_if(self, key: str, marker: Any) -> None:
        """Delete only if the object still is version ``marker`` (silently no-op otherwise)."""
        raise NotImplementedError

    async def check_bucket(self) -> None:
        """Raise if the bucket is missing (used to tell 'no state' from 'no bucket')."""


def _epoch(value) -> float | None:
    """A last-modified time (datetime or HTTP date) as epoch seconds; None if absent."""
    if value is None:
        return None
    if isinstance(value, str):
        from email.utils import parsedate_to_datetime

        try:
            value = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
    try:
        return value.timestamp()
    except (AttributeError, OverflowError, ValueError):
        return None


# -- S3 ------------------------------------------------------------------------------------
def _s3_code(exc: BaseException) -> str:
    seen = exc
    while seen is not None:
        response = getattr(seen, "response", None)
        if isinstance(response, dict):
            error = response.get("Error", {})
            return str(error.get("Code", "")) or str(
                response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
        seen = seen.__cause__ or seen.__context__
    return ""


class S3Store(AsyncStore):
    service = "S3"
    _client_ready = False

    async def _call(self, method: str, **kwargs):
        """One S3 call on the aiobotocore client s3fs hands out (``set_session``: public),
        with the bucket; errors stay botocore's (``_s3_code`` reads their code)."""
        if not self._client_ready:
            await self._without_expect_continue()
        client = await self.fs.set_session()
        return await getattr(client, method)(Bucket=self.bucket, **kwargs)

    async def _without_expect_continue(self) -> None:
        """botocore sends every PutObject with "Expect: 100-continue"; aiohttp then waits
        for the "100 Continue" with no timeout at all, so a frozen endpoint would hold a
        write forever. Our bodies are a few kilobytes: send them at once, and the read
        timeout bounds the request."""
        from botocore.handlers import add_expect_header

        client = await self.fs.set_session()
        client.meta.events.unregister("before-call.s3", add_expect_header)
        self._client_ready = True

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
            if _s3_code(exc) in ("NoSuchKey", "404"):
                return None
            raise
        async with response["Body"] as body:
            data = await body.read()
        return data, response.get("ETag"), _epoch(response.get("LastModified"))

    async def put(self, key, data):
        await self._call("put_object", Key=key, Body=data, ContentType=JSON)

    async def create(self, key, data):
        try:
            response = await self._call("put_object", Key=key, Body=data, ContentType=JSON,
                                        IfNoneMatch="*")
        except Exception as exc:  # botocore ClientError, or a connection error
            # 412 PreconditionFailed: it exists; 409 ConditionalRequestConflict: a racing
            # create or delete is in flight. Either way the caller re-reads and retries.
            if _s3_code(exc) in (
                    "PreconditionFailed", "412", "ConditionalRequestConflict", "409"):
                return None
            raise
        return response.get("ETag")

    async def delete(self, key):
        await self._call("delete_object", Key=key)

    async def delete_if(self, key, marker):
        try:
            await self._call("delete_object", Key=key, IfMatch=marker)
        except Exception as exc:  # botocore ClientError, or a connection error
            if _s3_code(exc) in ("PreconditionFailed", "412", "NoSuchKey", "404",
                                 "ConditionalRequestConflict", "409"):
                return
            raise

    async def check_bucket(self):
        try:
            await self._call("head_bucket")
        except Exception as exc:  # botocore ClientError, or a connection error
            if _s3_code(exc) in ("NoSuchBucket", "404"):
                raise BucketNotFound(self.bucket) from None
            raise


# -- GCS -----------------------------------------------------------------------------------
class GCSStore(AsyncStore):
    service = "GCS"

    async def list_keys(self, prefix):
        keys: list[str] = []
        params: dict[str, Any] = {"prefix": prefix, "maxResults": self.page_size,
                                  "fields": "items(name),nextPageToken"}
        while True:
            try:
                page = await self.fs._call("GET", "b/{}/o", self.bucket, json_out=True, **params)
            except FileNotFoundError:
                raise BucketNotFound(self.bucket) from None
            keys.extend(item["name"] for item in page.get("items", ()))
            token = page.get("nextPageToken")
            if not token:
                return keys
            params["pageToken"] = token

    async def get_stamped(self, key):
        try:
            headers, data = await self.fs._call("GET", "b/{}/o/{}", self.bucket, key,
                                                alt="media")
        except FileNotFoundError:
            return None
        return data, headers.get("X-Goog-Generation"), _epoch(headers.get("Last-Modified"))

    async def put(self, key, data):
        try:  # fsspec's public async pipe_file: for small data, one multipart upload
            await self.fs._pipe_file(f"{self.bucket}/{key}", data, content_type=JSON)
        except FileNotFoundError:  # uploads answer 404 only for a missing bucket
            raise BucketNotFound(self.bucket) from None

    async def create_object(self, key, data) -> dict | None:
        """A multipart upload (the only kind on which emulators enforce the precondition)
        with ``ifGenerationMatch=0``: the object resource GCS answers with, or None when
        the key exists."""
        try:
            result = await self.fs._pipe_file(f"{self.bucket}/{key}", data, content_type=JSON,
                                              mode="create")
        except FileExistsError:
            return None
        except FileNotFoundError:
            raise BucketNotFound(self.bucket) from None
        return result if isinstance(result, dict) else {}

    async def create(self, key, data):
        result = await self.create_object(key, data)
        return None if result is None else str(result.get("generation", ""))

    async def delete(self, key):
        with contextlib.suppress(FileNotFoundError):
            await self.fs._call("DELETE", "b/{}/o/{}", self.bucket, key)

    async def delete_if(self, key, marker):
        kwargs = {"ifGenerationMatch": marker} if marker else {}
        # FileNotFoundError: gone; FileExistsError: 412, another generation is there now.
        with contextlib.suppress(FileNotFoundError, FileExistsError):
            await self.fs._call("DELETE", "b/{}/o/{}", self.bucket, key, **kwargs)

    async def check_bucket(self):
        try:
            await self.fs._call("GET", "b/{}", self.bucket, json_out=True, fields="name")
        except FileNotFoundError:
            raise BucketNotFound(self.bucket) from None


# -- Azure Blob ----------------------------------------------------------------------------
class AzureStore(AsyncStore):
    service = "Azure Blob"
    page_size = 5000

    def __init__(self, fs, bucket, *, per_call: dict | None = None):
        super().__init__(fs, bucket)
        self.container = fs.service_client.get_container_client(bucket)
        self.per_call = per_call or {}

    def _blob(self, key):
        return self.container.get_blob_client(key)

    async def list_keys(self, prefix):
        return [name async for name in self.container.list_blob_names(
            name_starts_with=prefix or None, results_per_page=self.page_size, **self.per_call)]

    async def get_stamped(self, key):
        from azure.core.exceptions import ResourceNotFoundError

        try:
            downloader = await self._blob(key).download_blob(**self.per_call)
            data = await downloader.readall()
        except ResourceNotFoundError as exc:
            if getattr(exc, "error_code", None) == "ContainerNotFound":
                raise
            return None
        properties = downloader.properties
        return data, properties.etag, _epoch(properties.last_modified)

    def _settings(self):
        from azure.storage.blob import ContentSettings

        return ContentSettings(content_type=JSON)

    async def put(self, key, data):
        await self._blob(key).upload_blob(data, overwrite=True, content_settings=self._settings(),
                                          **self.per_call)

    async def create(self, key, data):
        from azure.core.exceptions import ResourceExistsError

        try:
            result = await self._blob(key).upload_blob(
                data, overwrite=False, content_settings=self._settings(), **self.per_call)
        except ResourceExistsError:
            return None
        return result.get("etag")

    async def delete(self, key):
        from azure.core.exceptions import ResourceNotFoundError

        try:
            await self._blob(key).delete_blob(**self.per_call)
        except ResourceNotFoundError as exc:
            if getattr(exc, "error_code", None) == "ContainerNotFound":
                raise

    async def delete_if(self, key, marker):
        from azure.core import MatchConditions
        from azure.core.exceptions import ResourceModifiedError, ResourceNotFoundError

        with contextlib.suppress(ResourceModifiedError, ResourceNotFoundError):
            await self._blob(key).delete_blob(
                etag=marker, match_condition=MatchConditions.IfNotModified, **self.per_call)

    async def check_bucket(self):
        await self.container.get_container_properties(**self.per_call)

    async def close(self):
        await self.fs.service_client.close()
        credential = getattr(self.fs, "credential", None)
        if credential is not None and hasattr(credential, "close"):
            await credential.close()


# -- any other fsspec filesystem -----------------------------------------------------------
class FsspecStore(AsyncStore):
    """Through the public fsspec API; sync filesystems (FTP, SFTP...) too.

    ``root`` is ``"/"`` when the URI's path was absolute (``ftp://host/state``), else empty;
    a key is then the path ``root + key``, exactly where fsspec's URL parsing points. On
    filesystems with real folders a write creates the ID's folder when it is missing, and
    the release of a lock removes the folder again when nothing else is in it, so the
    layout is that of Meltano's ``file://`` backend. Exclusive lock creation is only as
    atomic as the filesystem's ``pipe_file(mode="create")`` (a check, then a write, on FTP).
    """

    def __init__(self, fs, root: str = ""):
        from state_ext.deadline import Worker

        super().__init__(fs, "")
        self.root = root
        self._lock = asyncio.Lock()
        self._worker = Worker("state-ext-fsspec")

    def _path(self, key):
        return self.root + key

    async def _run(self, name, *args, **kwargs):
        """A sync filesystem (FTP, SFTP) blocks in its own sockets: its calls run, one at a
        time as before, on one daemon thread, so that the event loop stays free to give up
        on a frozen server when the stall window passes (``aio.run``) and the stuck call
        cannot hold the process at exit."""
        if getattr(self.fs, "async_impl", False):
            return await getattr(self.fs, "_" + name)(*args, **kwargs)
        return await asyncio.wrap_future(
            self._worker.submit(getattr(self.fs, name), *args, **kwargs))

    async def close(self):
        self._worker.stop()

    async def list_keys(self, prefix):
        try:
            found = await self._run("find", self._path(prefix.rstrip("/")))
        except FileNotFoundError:
            return []
        # find() answers with the filesystem's own spelling of each path: maybe a protocol,
        # maybe a leading "/" (our keys never start with one).
        keys = (path.split("://", 1)[-1].lstrip("/") for path in found)
        return [key for key in keys if key.startswith(prefix)]

    async def get_stamped(self, key):
        try:
            data = await self._run("cat_file", self._path(key))
        except FileNotFoundError:
            return None
        return data, data, None  # the content is the version: compared before a delete

    async def _pipe(self, key, data, **kwargs):
        path = self._path(key)
        try:
            await self._run("pipe_file", path, data, **kwargs)
        except (FileExistsError, TypeError, NotImplementedError):
            raise
        except Exception:  # noqa: BLE001 - a missing folder: FTP says "550", others OSError
            parent = path.rpartition("/")[0]
            if not parent or await self._run("exists", parent):
                raise
            await self._run("makedirs", parent, exist_ok=True)
            await self._run("pipe_file", path, data, **kwargs)

    async def put(self, key, data):
        await self._pipe(key, data)

    async def create(self, key, data):
        async with self._lock:
            try:
                await self._pipe(key, data, mode="create")
            except FileExistsError:
                return None
            except (TypeError, NotImplementedError):  # no exclusive create: best effort
                if await self.exists(key):
                    return None
                await self.put(key, data)
        return data

    async def delete(self, key):
        with contextlib.suppress(FileNotFoundError):
            await self._run("rm_file", self._path(key))

    async def delete_if(self, key, marker):
        async with self._lock:
            current = await self.get_versioned(key)
            if current is not None and current[1] == marker:
                await self.delete(key)
                parent = self._path(key).rpartition("/")[0]
                if parent and not getattr(self.fs, "async_impl", False):
                    with contextlib.suppress(Exception):  # not empty, or no folders at all
                        await self._run("rmdir", parent)


# -- one-request creates of new states, checked by the service's own checksum -------------
def md5_of(data: bytes) -> bytes:
    import hashlib

    return hashlib.md5(data, usedforsecurity=False).digest()


async def s3_create_checked(store: S3Store, key: str, data: bytes):
    """PutObject with ``If-None-Match: *`` and ``Content-MD5`` (S3 refuses a body whose MD5
    differs, with BadDigest), through the aiobotocore client. Returns None when the key
    exists, else (ETag, verified): verified is True when the ETag is the MD5 of our bytes,
    None when it cannot say (an SSE-KMS ETag is no MD5; the caller then reads back)."""
    import base64

    from botocore.exceptions import ClientError

    if not store._client_ready:
        await store._without_expect_continue()
    client = await store.fs.set_session()
    digest = md5_of(data)
    try:
        response = await client.put_object(
            Bucket=store.bucket, Key=key, Body=data, ContentType=JSON, IfNoneMatch="*",
            ContentMD5=base64.b64encode(digest).decode())
    except ClientError as exc:
        if _s3_code(exc) in ("PreconditionFailed", "412", "ConditionalRequestConflict", "409"):
            return None
        raise
    etag = response.get("ETag")
    verified = True if (etag or "").strip('"') == digest.hex() else None
    return etag, verified


async def gcs_create_checked(store: GCSStore, key: str, data: bytes):
    """A multipart upload with ``ifGenerationMatch=0`` (gcsfs's ``pipe_file(mode="create")``);
    the object resource GCS answers with carries the MD5 it computed of what it stored
    (``md5Hash``), compared with ours (gcsfs sends no checksum for the service to check on
    receipt, so a damaged body is caught here and its generation deleted). Returns None
    when the key exists, else (generation, verified)."""
    import base64

    result = await store.create_object(key, data)
    if result is None:
        return None
    generation = str(result.get("generation", ""))
    returned = result.get("md5Hash")
    verified = None if not returned else returned == base64.b64encode(md5_of(data)).decode()
    return generation, verified


async def azure_create_checked(store: AzureStore, key: str, data: bytes):
    """Put Blob with ``If-None-Match: *`` and a transactional ``Content-MD5`` header that
    the service checks on receipt (``validate_content``); the blob's stored Content-MD5
    is set to ours too and the one the service answers with is compared. Returns None when
    the blob exists, else (ETag, verified)."""
    from azure.core.exceptions import ResourceExistsError
    from azure.storage.blob import ContentSettings

    digest = md5_of(data)
    try:
        result = await store._blob(key).upload_blob(
            data, overwrite=False, validate_content=True,
            content_settings=ContentSettings(content_type=JSON, content_md5=bytearray(digest)),
            **store.per_call)
    except ResourceExistsError:
        return None
    returned = result.get("content_md5")
    verified = None if not returned else bytes(returned) == digest
    return result.get("etag"), verified


CHECKED_CREATES = {S3Store: s3_create_checked, GCSStore: gcs_create_checked,
                   AzureStore: azure_create_checked}
