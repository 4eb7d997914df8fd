"""Google Cloud Storage (``gs://bucket/prefix``): credentials, client, object operations
and words, all through gcsfs's public API.

Credentials as Meltano resolves them: ``state_backend.gcs.application_credentials_json``
or ``application_credentials_path`` or the deprecated ``application_credentials`` (a
path), else application default credentials (``GOOGLE_APPLICATION_CREDENTIALS``...);
``STORAGE_EMULATOR_HOST`` is honoured (anonymous access when no credentials are set).

Objects are reached with fsspec's documented async methods (``_find``, ``_cat_file``,
``_info``, ``_pipe_file``, ``_rm_file``), on a filesystem without a listings cache (a
cached listing would answer a lock's generation from the past). What they do not take
as an argument, a lock's generation, the filesystem takes from the path: the public
``split_path`` of ``GenerationFileSystem`` reads ``<key>#<generation>``, a form no key
of ours has (keys end in ``/state.json``, ``/lock`` or a scratch name), so IDs with
``#`` or ``?`` stay literal.

Each request is watched and its attempts bounded by gcs_requests.py.
"""

from __future__ import annotations

import contextlib
import json
import os
from typing import Any

from state_ext.backends.clouds.base import (
    JSON,
    BucketNotFound,
    Connection,
    ObjectClient,
    epoch,
    md5_of,
    tuning,
)
from state_ext.backends.clouds.failures import Translation
from state_ext.backends.clouds.gcs_requests import bound_token_refresh, responses, trace
from state_ext.errors import ConfigurationError, MissingExtraError

SCHEME, SERVICE, WORD, NAMESPACE = "gs", "GCS", "bucket", "gcs"
WORDS = Translation(
    hint="set state_backend.gcs.application_credentials_json or "
         "application_credentials_path, or GOOGLE_APPLICATION_CREDENTIALS",
    credential_errors={"DefaultCredentialsError": "no Google credentials found"},
    late_errors={"google.RefreshError": "cannot obtain a Google access token: {detail}",
                 "google.TransportError": "cannot obtain a Google access token: {detail}"},
)
SCOPES = ["https://www.googleapis.com/auth/devstorage.read_write"]
# -- the filesystem -----------------------------------------------------------------------
def _filesystem_class():
    # gcsfs >= 2026.10 otherwise swaps in a class that makes a gRPC+TLS call per bucket
    # (about a minute against an emulator or a proxy); we never need it.
    os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
    try:
        from gcsfs.core import GCSFileSystem
    except ImportError:
        raise MissingExtraError("The gs:// state backend", "gcs") from None

    class GenerationFileSystem(GCSFileSystem):
        """gcsfs where ``<bucket>/<key>#<digits>`` names one generation of the object."""

        def split_path(self, path):
            bucket, key, generation = super().split_path(path)
            base, sep, tail = key.rpartition("#")
            if sep and tail.isdigit() and generation is None:
                return bucket, base, tail
            return bucket, key, generation

    return GenerationFileSystem


def _credentials(options: dict, warn) -> tuple[Any, list[str]]:
    info_json = options.get("application_credentials_json")
    path = options.get("application_credentials_path")
    deprecated = options.get("application_credentials")
    if deprecated and not path:
        warn("state_backend.gcs.application_credentials is deprecated; "
             "use state_backend.gcs.application_credentials_path")
        path = deprecated
    if info_json and path:
        raise ConfigurationError(
            "Set only one of state_backend.gcs.application_credentials_json and "
            "state_backend.gcs.application_credentials_path"
        )
    if info_json:
        try:
            info = json.loads(info_json) if isinstance(info_json, str) else dict(info_json)
        except ValueError:
            raise ConfigurationError(
                "state_backend.gcs.application_credentials_json is not valid JSON"
            ) from None
        if not isinstance(info, dict):
            raise ConfigurationError(
                "state_backend.gcs.application_credentials_json is not a JSON object")
        secrets = [str(info.get("private_key", "")), str(info.get("private_key_id", ""))]
        return _google_credentials(info=info, what="application_credentials_json"), secrets
    if path:
        path = os.path.expanduser(str(path))
        if not os.path.isfile(path):
            raise ConfigurationError(
                f"GCS credentials file {path!r} (state_backend.gcs.application_credentials_path) "
                "does not exist"
            )
        return _google_credentials(file=path, what=path), []
    if os.environ.get("STORAGE_EMULATOR_HOST") and not os.environ.get(
            "GOOGLE_APPLICATION_CREDENTIALS"):
        return "anon", []
    return "google_default", []


def _google_credentials(*, info: dict | None = None, file: str | None = None, what: str):
    import warnings

    import google.auth
    from google.auth.exceptions import DefaultCredentialsError

    try:
        with warnings.catch_warnings():
            # google-auth deprecates the generic loaders because they accept any credential
            # type; the settings name a credential the user chose, as in Meltano.
            warnings.simplefilter("ignore", DeprecationWarning)
            if info is not None:
                credentials, _ = google.auth.load_credentials_from_dict(info, scopes=SCOPES)
            else:
                credentials, _ = google.auth.load_credentials_from_file(file, scopes=SCOPES)
    except (DefaultCredentialsError, ValueError, KeyError, OSError) as exc:
        message = " ".join(str(exc).split())[:200]
        raise ConfigurationError(f"Invalid GCS credentials ({what}): {message}") from None
    return credentials


class _ReportedByTheBackend:
    """Drops gcsfs' "<request> out of retries on exception" records: each carries a
    traceback, and the backend reports the same failure as one line."""

    @staticmethod
    def filter(record) -> bool:
        return "out of retries on exception" not in record.getMessage()


def _quiet_gcsfs_retries() -> None:
    import logging

    logger = logging.getLogger("gcsfs")
    if not any(isinstance(f, _ReportedByTheBackend) for f in logger.filters):
        logger.addFilter(_ReportedByTheBackend())


def connect(uri: str, options: dict, warn=lambda message: None) -> Connection:
    cls = _filesystem_class()
    _quiet_gcsfs_retries()
    token, secrets = _credentials(options, warn)
    timeout, attempts = tuning(options)
    project = options.get("project") or os.environ.get("GOOGLE_CLOUD_PROJECT") or None
    import warnings

    try:
        with warnings.catch_warnings():  # "project not set": we never list or create buckets
            warnings.simplefilter("ignore", UserWarning)
            fs = cls(token=token, project=project, skip_instance_cache=True,
                     requests_timeout=timeout, use_listings_cache=False,
                     session_kwargs={"trace_configs": [trace()]})
        bound_token_refresh(fs.credentials)
    except Exception as exc:  # gcsfs raises bare Exceptions for credential problems
        message = " ".join(str(exc).split())[:200]
        raise ConfigurationError(f"Cannot set up GCS credentials: {message}") from None
    endpoint = os.environ.get("STORAGE_EMULATOR_HOST")
    return Connection(fs, [s for s in secrets if s], endpoint, timeout, attempts)


# -- the object client --------------------------------------------------------------------
class GCSClient(ObjectClient):
    service = SERVICE
    checks_creates = True

    def _path(self, key: str) -> str:
        return f"{self.bucket}/{key}"

    async def list_keys(self, prefix):
        try:
            found = await self.fs._find(self._path(prefix), update_cache=False)
        except FileNotFoundError:
            raise BucketNotFound(self.bucket) from None
        start = len(self.bucket) + 1
        return [path[start:] for path in found if path[start:].startswith(prefix)]

    async def get(self, key):
        try:
            return await self.fs._cat_file(self._path(key))
        except FileNotFoundError:
            return None

    async def get_stamped(self, key):
        """One GET (``alt=media``): the bytes, and from that answer's headers their
        generation and time (gcs_requests.responses sees the answers of this task)."""
        with responses() as answers:
            try:
                data = await self.fs._cat_file(self._path(key))
            except FileNotFoundError:
                return None
        headers = answers[-1][1] if answers else {}
        return (data, headers.get("X-Goog-Generation"),
                epoch(headers.get("Last-Modified")))

    async def exists(self, key):
        return await self.get(key) is not None  # one GET: our objects are small

    async def put(self, key, data):
        try:  # fsspec's public async pipe_file: for small data, one multipart upload
            await self.fs._pipe_file(self._path(key), data, content_type=JSON)
        except FileNotFoundError:  # uploads answer 404 only for a missing bucket
            raise BucketNotFound(self.bucket) from None

    async def create_object(self, key, data) -> dict | None:
        """``pipe_file(mode="create")``: a multipart upload (the only kind on which
        emulators enforce the precondition) with ``ifGenerationMatch=0``; the object
        resource GCS answers with, or None when the key exists."""
        try:
            result = await self.fs._pipe_file(self._path(key), data, content_type=JSON,
                                              mode="create")
        except FileExistsError:
            return None
        except FileNotFoundError:
            raise BucketNotFound(self.bucket) from None
        return result if isinstance(result, dict) else {}

    async def create(self, key, data):
        result = await self.create_object(key, data)
        return None if result is None else str(result.get("generation", ""))

    async def create_checked(self, key, data):
        """The object resource GCS answers a create with carries the MD5 it computed of
        what it stored (``md5Hash``), compared with ours (gcsfs sends no checksum for the
        service to check on receipt, so a damaged body is caught here and its generation
        deleted)."""
        import base64

        result = await self.create_object(key, data)
        if result is None:
            return None
        returned = result.get("md5Hash")
        verified = None if not returned else returned == base64.b64encode(md5_of(data)).decode()
        return str(result.get("generation", "")), verified

    async def delete(self, key):
        with contextlib.suppress(FileNotFoundError):
            await self.fs._rm_file(self._path(key))

    async def delete_if(self, key, marker):
        """DELETE of generation ``marker`` only: gone or replaced, nothing is deleted
        (404); on a bucket that keeps versions a replaced one is an old version."""
        path = f"{self._path(key)}#{marker}" if marker else self._path(key)
        try:
            await self.fs._rm_file(path)
        except (FileNotFoundError, FileExistsError):
            return False
        return True

    async def check_bucket(self):
        """``_info`` of the bucket: a GET of it, and when that fails (403 or 404) a listing
        of its objects. A refused GET (403, no ``storage.buckets.get``) of a bucket that
        lists empty is the GET's own error, as when the GET was all (not a missing bucket)."""
        with responses() as answers:
            try:
                await self.fs._info(self.bucket)
                return
            except FileNotFoundError:
                pass
        if answers and answers[0][0] == 403:
            from gcsfs.retry import validate_response

            validate_response(403, answers[0][2], f"b/{self.bucket}")  # raises gcsfs's error
        raise BucketNotFound(self.bucket)


def client(connection: Connection, bucket: str) -> GCSClient:
    return GCSClient(connection.fs, bucket)
