"""Build the fsspec filesystem of each cloud from Meltano's settings, as Meltano resolves them.

* S3 (s3fs): ``state_backend.s3.aws_access_key_id``/``aws_secret_access_key``, else the
  URI's ``KEY:SECRET@`` user info, else the standard AWS chain (environment, shared files and
  profiles, instance roles). ``state_backend.s3.endpoint_url`` is always honoured (Meltano
  ignores it without explicit keys); without it botocore reads ``AWS_ENDPOINT_URL_S3`` and
  ``AWS_ENDPOINT_URL`` itself. The region comes from the standard chain.
* GCS (gcsfs): ``state_backend.gcs.application_credentials_json`` or
  ``application_credentials_path`` or the deprecated ``application_credentials`` (a path),
  else application default credentials (``GOOGLE_APPLICATION_CREDENTIALS``...);
  ``STORAGE_EMULATOR_HOST`` is honoured (anonymous access when no credentials are set).
* Azure (adlfs): ``state_backend.azure.storage_account_url`` with the default Azure
  credential chain (it wins, as in Meltano), else ``state_backend.azure.connection_string``,
  else ``AZURE_STORAGE_CONNECTION_STRING``.

Every client gets few retries and short timeouts, so a wrong endpoint fails in seconds. The
state-ext-only options ``state_backend.<ns>.timeout_seconds`` and ``.max_attempts`` tune them.
Every answer of a service marks its run as progressing (``aio.run`` fails a run once no
request has completed for ``stall_timeout_seconds``): botocore's ``after-call`` event for S3,
the request method for GCS, azure-core's ``raw_response_hook`` for Azure. A request that
timed out is no answer.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

from state_ext.backends.aio import mark_progress
from state_ext.errors import ConfigurationError, MissingExtraError

DEFAULT_TIMEOUT_SECONDS = 15.0
DEFAULT_MAX_ATTEMPTS = 2
GCS_SCOPES = ["https://www.googleapis.com/auth/devstorage.read_write"]


@dataclass
class Connection:
    """A filesystem plus what error messages must never show."""

    fs: Any
    secrets: list[str] = field(default_factory=list)
    endpoint: str | None = None
    timeout: float = DEFAULT_TIMEOUT_SECONDS
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    extra: dict = field(default_factory=dict)
    root: str | None = None  # any other fsspec protocol: the path its URL resolves to


def _tuning(options: dict) -> tuple[float, int]:
    try:
        timeout = float(options.get("timeout_seconds") or DEFAULT_TIMEOUT_SECONDS)
        attempts = int(float(options.get("max_attempts") or DEFAULT_MAX_ATTEMPTS))
    except (TypeError, ValueError):
        raise ConfigurationError(
            "timeout_seconds and max_attempts of the state backend must be numbers"
        ) from None
    return max(timeout, 0.1), max(attempts, 1)


# -- S3 -----------------------------------------------------------------------------------
def s3_connection(uri: str, options: dict) -> Connection:
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
    timeout, attempts = _tuning(options)
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
    fs = _s3_class(S3FileSystem)(**kwargs)
    fs.retries = attempts  # s3fs' own retry loop around each call
    shown_endpoint = endpoint or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get(
        "AWS_ENDPOINT_URL")
    return Connection(fs, [s for s in (key, secret) if s], shown_endpoint, timeout, attempts)


def _answered(**_event) -> None:
    mark_progress()  # botocore's after-call: the service answered (an error code included)


def _s3_class(base):
    class ProgressS3FileSystem(base):
        """s3fs whose client reports every answer as progress (see aio.run), through
        botocore's public event system."""

        async def set_session(self, refresh=False, kwargs={}):  # noqa: B006 - s3fs' signature
            client = await super().set_session(refresh=refresh, kwargs=kwargs)
            client.meta.events.register("after-call.s3", _answered,
                                        unique_id="state-ext-progress")
            return client

    return ProgressS3FileSystem


# -- GCS ----------------------------------------------------------------------------------
def _gcs_class():
    # gcsfs >= 2026.10 otherwise swaps in a class that makes a gRPC+TLS call per bucket
    # (about a minute against an emulator or a proxy); we never need it.
    os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
    try:
        from gcsfs.core import GCSFileSystem
        from gcsfs.retry import retry_request
    except ImportError:
        raise MissingExtraError("The gs:// state backend", "gcs") from None

    class BoundedGCSFileSystem(GCSFileSystem):
        """gcsfs with at most two attempts per request (it retries 6 times, ~30 s, otherwise)."""

        @retry_request(retries=DEFAULT_MAX_ATTEMPTS)
        async def _request(self, *args, **kwargs):
            result = await GCSFileSystem._request.__wrapped__(self, *args, **kwargs)
            mark_progress()  # an answer: the run is not stalled (see aio.run)
            return result

    return BoundedGCSFileSystem


def _gcs_credentials(options: dict, warn) -> tuple[Any, list[str]]:
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
        return _load_google_credentials(info=info, what="application_credentials_json"), secrets
    if path:
        path = os.path.expanduser(str(path))
        if not os.path.isfile(path):
            raise ConfigurationError(
                f"GCS credentials file {path!r} (state_backend.gcs.application_credentials_path) "
                "does not exist"
            )
        return _load_google_credentials(file=path, what=path), []
    if os.environ.get("STORAGE_EMULATOR_HOST") and not os.environ.get(
            "GOOGLE_APPLICATION_CREDENTIALS"):
        return "anon", []
    return "google_default", []


def _load_google_credentials(*, info: dict | None = None, file: str | None = None, what: str):
    import warnings

    from google.auth.exceptions import DefaultCredentialsError

    try:
        with warnings.catch_warnings():
            # google-auth deprecates the generic loaders because they accept any credential
            # type; the settings name a credential the user chose, as in Meltano.
            warnings.simplefilter("ignore", DeprecationWarning)
            credentials = _load(info, file)
    except (DefaultCredentialsError, ValueError, KeyError, OSError) as exc:
        message = " ".join(str(exc).split())[:200]
        raise ConfigurationError(f"Invalid GCS credentials ({what}): {message}") from None
    return credentials


def _load(info, file):
    import google.auth

    if info is not None:
        credentials, _project = google.auth.load_credentials_from_dict(info, scopes=GCS_SCOPES)
    else:
        credentials, _project = google.auth.load_credentials_from_file(file, scopes=GCS_SCOPES)
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


def gcs_connection(uri: str, options: dict, warn=lambda message: None) -> Connection:
    cls = _gcs_class()
    _quiet_gcsfs_retries()
    token, secrets = _gcs_credentials(options, warn)
    timeout, attempts = _tuning(options)
    project = options.get("project") or os.environ.get("GOOGLE_CLOUD_PROJECT") or None
    import warnings

    try:
        with warnings.catch_warnings():  # "project not set": we never list or create buckets
            warnings.simplefilter("ignore", UserWarning)
            fs = cls(token=token, project=project, skip_instance_cache=True,
                     requests_timeout=timeout)
    except Exception as exc:  # gcsfs raises bare Exceptions for credential problems
        message = " ".join(str(exc).split())[:200]
        raise ConfigurationError(f"Cannot set up GCS credentials: {message}") from None
    endpoint = os.environ.get("STORAGE_EMULATOR_HOST")
    return Connection(fs, [s for s in secrets if s], endpoint, timeout, attempts)


# -- Azure --------------------------------------------------------------------------------
def azure_connection(uri: str, options: dict) -> Connection:
    try:
        from adlfs import AzureBlobFileSystem
        from azure.storage.blob.aio import BlobServiceClient
    except ImportError:
        raise MissingExtraError("The azure:// state backend", "azure") from None
    import logging

    for noisy in ("azure", "azure.core.pipeline.policies.http_logging_policy", "azure.identity"):
        if logging.getLogger(noisy).level == logging.NOTSET:
            logging.getLogger(noisy).setLevel(logging.WARNING)
    timeout, attempts = _tuning(options)
    # azure-storage's ExponentialRetry waits 15 s, then 18 s... by default: keep it short.
    client_kwargs = {"retry_total": attempts - 1, "initial_backoff": 0.5, "increment_base": 2,
                     "connection_timeout": min(timeout, 5.0),
                     "read_timeout": timeout, "user_agent": "state-ext",
                     # every answer (a listing page included) is progress: see aio.run
                     "raw_response_hook": lambda response: mark_progress()}
    account_url = options.get("storage_account_url")
    connection_string = options.get("connection_string") or os.environ.get(
        "AZURE_STORAGE_CONNECTION_STRING")
    secrets: list[str] = []
    if account_url:
        try:
            from azure.identity.aio import DefaultAzureCredential
        except ImportError:
            raise MissingExtraError("The azure:// state backend", "azure") from None
        credential = DefaultAzureCredential()
        account_name = urlsplit(account_url).hostname or "account"
        fs = AzureBlobFileSystem(account_name=account_name.split(".")[0], credential=credential,
                                 skip_instance_cache=True)
        fs.service_client = BlobServiceClient(account_url, credential=credential, **client_kwargs)
        endpoint = account_url
    elif connection_string:
        fields = _parse_connection_string(connection_string)
        secrets = [connection_string] + [fields[k] for k in ("accountkey", "sharedaccesssignature")
                                         if fields.get(k)]
        try:
            fs = AzureBlobFileSystem(connection_string=connection_string, skip_instance_cache=True)
            fs.service_client = BlobServiceClient.from_connection_string(
                connection_string, **client_kwargs)
        except ValueError:
            raise ConfigurationError(
                "state_backend.azure.connection_string is not a valid Azure Storage connection "
                "string"
            ) from None
        endpoint = fs.service_client.url
    else:
        raise ConfigurationError(
            "The azure:// state backend needs state_backend.azure.connection_string, "
            "state_backend.azure.storage_account_url (with the default Azure credential "
            "chain) or AZURE_STORAGE_CONNECTION_STRING"
        )
    return Connection(fs, secrets, endpoint, timeout, attempts)


def _parse_connection_string(text: str) -> dict[str, str]:
    fields = {}
    for part in text.split(";"):
        name, sep, value = part.partition("=")
        if sep:
            fields[name.strip().lower()] = value.strip()
    return fields


# -- anything else fsspec knows ------------------------------------------------------------
def generic_connection(scheme: str, uri: str, options: dict) -> Connection:
    """The filesystem of ``uri`` as fsspec builds it from a URL (``fsspec.core.url_to_fs``:
    host, port, user and password from the URL), with the ``state_backend.<scheme>.*``
    settings as storage options converted to the types the filesystem declares (see
    fsspec_options.py). Building it may already connect (FTP, SFTP): any failure then is
    one line too, and the half-built filesystem's finaliser stays quiet."""
    import fsspec
    from fsspec.core import url_to_fs

    from state_ext.backends.fsspec_options import quiet_finalisers, typed_options

    try:
        cls = fsspec.get_filesystem_class(scheme)
    except ImportError as exc:
        raise ConfigurationError(
            f"The {scheme}:// state backend needs a package that is not installed: {exc}"
        ) from None
    except ValueError:
        raise ConfigurationError(f"No fsspec filesystem for scheme {scheme!r}") from None
    storage_options = typed_options(cls, scheme, {
        k: v for k, v in options.items() if k not in ("timeout_seconds", "max_attempts")})
    timeout, attempts = _tuning(options)
    secrets = [str(v) for k, v in storage_options.items()
               if any(w in k.lower() for w in ("secret", "password", "token", "key"))]
    password = urlsplit(uri).password
    if password:
        secrets += [password, unquote(password)]
    try:
        host = storage_options.get("host") or urlsplit(uri).hostname
        port = storage_options.get("port") or urlsplit(uri).port
    except ValueError:  # a port that is not a number in the URI
        raise ConfigurationError(f"Invalid state backend URI: bad port in {scheme}://") from None
    endpoint = f"{host}:{port}" if host and port else host
    failure = None
    with quiet_finalisers(cls):
        try:
            fs, root = url_to_fs(uri, **storage_options)
        except Exception as exc:  # noqa: BLE001 - every failure becomes one line below
            failure = _construction_failure(scheme, cls, exc, endpoint)
    if failure is not None:
        for secret in secrets:
            failure.message = failure.message.replace(secret, "***")
        failure.args = (failure.message,)
        raise failure
    return Connection(fs, secrets, endpoint, timeout, attempts, root=root)


def _construction_failure(scheme: str, cls, exc: BaseException, endpoint: str | None):
    """The error for a filesystem that could not be built: settings, or the server."""
    import re

    from state_ext.backends.errors_text import explain
    from state_ext.errors import BackendError

    name = cls.__name__
    twice = re.search(r"multiple values for keyword argument '(\w+)'", str(exc))
    if isinstance(exc, TypeError) and twice:
        return ConfigurationError(
            f"The {scheme}:// state backend gets {twice[1]!r} twice, from the URI and from "
            f"state_backend.{scheme}.{twice[1]}: give it once"
        )
    if isinstance(exc, TypeError):
        text = " ".join(str(exc).split())
        return ConfigurationError(
            f"The {scheme}:// state backend ({name}) does not accept its settings: {text}; "
            f"give them in the URI ({scheme}://user:password@host:port/path) or as "
            f"state_backend.{scheme}.<option> (MELTANO_STATE_BACKEND_{scheme.upper()}_<OPTION>)"
        )
    reason = explain(exc, service=scheme, bucket="", word="store", endpoint=endpoint,
                     scheme=scheme)
    return BackendError(f"Cannot open the {scheme}:// state backend ({name}): {reason}")
