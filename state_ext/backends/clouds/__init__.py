"""The registry of clouds: URI scheme -> the module that knows that service.

A cloud module (s3.py, gcs.py, azure.py) holds everything about one service and offers
``SCHEME``, ``SERVICE`` (its name in messages), ``WORD`` ("bucket", "container"),
``NAMESPACE`` (of its ``state_backend.<namespace>.*`` settings), ``WORDS`` (its error
codes and credential hint), ``connect(uri, options, warn)`` and ``client(connection,
bucket)``. Any other scheme goes to fsspec_generic.py. Adding a cloud is one module and
one line in ``CLOUDS``. The modules import their SDKs only when a backend connects.
"""

from __future__ import annotations

from types import ModuleType

from state_ext.backends.clouds import azure, fsspec_generic, gcs, s3
from state_ext.backends.clouds.base import BucketNotFound, Connection, ObjectClient

CLOUDS: dict[str, ModuleType] = {m.SCHEME: m for m in (s3, gcs, azure)}

__all__ = ["CLOUDS", "BucketNotFound", "Connection", "ObjectClient", "Session", "cloud_for",
           "connect", "words_for"]


def cloud_for(scheme: str) -> ModuleType | None:
    """The cloud module of ``scheme``, or None for any other fsspec protocol."""
    return CLOUDS.get(scheme)


def words_for(scheme: str):
    cloud = CLOUDS.get(scheme)
    if cloud is not None:
        return cloud.WORDS
    return fsspec_generic.WORDS.merged(*(c.WORDS for c in CLOUDS.values()))


def connect(scheme: str, uri: str, options: dict, warn) -> Connection:
    cloud = CLOUDS.get(scheme)
    if cloud is not None:
        return cloud.connect(uri, options, warn)
    return fsspec_generic.connect(scheme, uri, options, words_for(scheme))


class Session:
    """One bucket of one service, reached with the backend's settings: the connection, the
    object client, the event loop it runs on, and any failure as one line in the cloud's
    words, naming the service, the bucket and the (redacted) URI, secrets hidden."""

    def __init__(self, scheme: str, uri: str, options: dict, bucket: str, label: str, warn):
        from state_ext.backends import aio

        self.scheme, self.bucket, self.label = scheme, bucket, label
        self.cloud = CLOUDS.get(scheme)  # None: any other fsspec protocol
        self.word = self.cloud.WORD if self.cloud else "bucket"
        self.service = self.cloud.SERVICE if self.cloud else scheme
        self.connection = connect(scheme, uri, options, warn)
        self.secrets = sorted({s for s in self.connection.secrets if s and len(s) >= 4},
                              key=len, reverse=True)
        self.loop = getattr(self.connection.fs, "loop", None)
        if self.loop is None:
            from fsspec.asyn import get_loop

            self.loop = get_loop()
        aio.quiet_loop(self.loop)

    def client(self, bucket: str) -> ObjectClient:
        self.bucket = bucket
        return (self.cloud or fsspec_generic).client(self.connection, bucket)

    def run(self, what: str, coroutine_function, *args, timeout: float | None = None):
        """Run a coroutine on the store's loop; any failure is one ``BackendError`` line.

        The wait is by progress (``aio.run``): it fails once no request has completed for
        the stall window (``stall_timeout_seconds``), whatever the size of the job;
        ``timeout`` additionally bounds the whole call (closing connections)."""
        from state_ext.backends import aio
        from state_ext.errors import BackendError, StateExtError

        try:
            return aio.run(self.loop, coroutine_function(*args), timeout)
        except StateExtError:
            raise
        except Exception as exc:
            raise BackendError(self.describe_failure(what, exc)) from None

    def describe_failure(self, what: str, exc: BaseException) -> str:
        from state_ext.backends.clouds.failures import explain
        from state_ext.redact import hide_secrets

        cloud = self.cloud
        reason = explain(exc, words_for(self.scheme), service=self.service, word=self.word,
                         endpoint=self.connection.endpoint,
                         timeout_setting=f"state_backend.{cloud.NAMESPACE}.timeout_seconds"
                         if cloud else None)
        where = f"{self.service} {self.word} {self.bucket!r} ({self.label})" if cloud \
            else f"{self.service}:// store {self.label}"
        return hide_secrets(f"{where}: cannot {what}: {reason}", self.secrets)
