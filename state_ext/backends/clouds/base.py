"""What every cloud module shares: the object client's interface, the connection, and the
words for a failure of the network or of the service.

Keys are passed raw to each service (never through fsspec's URL parsing, which reads
``?``, ``#`` or globs in a key as syntax), so a state ID is exactly its object key, as in
Meltano. Each cloud module (s3.py, gcs.py, azure.py, fsspec_generic.py) implements
``ObjectClient`` with what its service enforces on the server:

======  =========================  ===========================  ============================
cloud   create if absent           version marker               delete only that version
======  =========================  ===========================  ============================
S3      PutObject If-None-Match:*  ETag                         DeleteObject If-Match
GCS     upload ifGenerationMatch=0 generation                   DELETE of that generation
Azure   upload If-None-Match:*     ETag                         delete If-Match
other   pipe_file(mode="create")   the content                  re-read, compare, delete
======  =========================  ===========================  ============================

A failure becomes one line in failures.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from state_ext.errors import ConfigurationError

JSON = "application/json"
DEFAULT_TIMEOUT_SECONDS = 15.0
DEFAULT_MAX_ATTEMPTS = 2


class BucketNotFound(Exception):
    """The bucket or container does not exist."""


@dataclass
class Connection:
    """A filesystem plus what error messages must never show."""

    fs: Any
    secrets: list[str] = field(default_factory=list)
    endpoint: str | None = None
    timeout: float = DEFAULT_TIMEOUT_SECONDS
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    root: str | None = None  # any other fsspec protocol: the path its URL resolves to


def tuning(options: dict) -> tuple[float, int]:
    """(timeout, attempts) from the state-ext-only ``timeout_seconds``/``max_attempts``."""
    try:
        timeout = float(options.get("timeout_seconds") or DEFAULT_TIMEOUT_SECONDS)
        attempts = int(float(options.get("max_attempts") or DEFAULT_MAX_ATTEMPTS))
    except (TypeError, ValueError):
        raise ConfigurationError(
            "timeout_seconds and max_attempts of the state backend must be numbers"
        ) from None
    return max(timeout, 0.1), max(attempts, 1)


class ObjectClient:
    """The few async operations on one bucket of one service that the backend needs."""

    service = "object store"
    page_size = 1000  # keys per listing request (the services' maximum for S3 and GCS)
    checks_creates = False  # create_checked: one create verified by the service's checksum
    # delete_if's answer is the service's: it deleted that version (True), or refused
    # because the object is another version or gone (False). Not where a service may
    # ignore the condition, or where an old version of a versioned object still deletes.
    delete_tells = False

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

    async def create_checked(self, key: str, data: bytes) -> tuple[Any, bool | None] | None:
        """A create that carries our checksum (see fast_create.py): None when the key
        exists, else (marker, verified); verified is None when the service gave no
        checksum to compare (the caller then reads back)."""
        raise NotImplementedError

    async def exists(self, key: str) -> bool:
        return await self.get_versioned(key) is not None

    async def delete(self, key: str) -> None:
        raise NotImplementedError

    async def delete_if(self, key: str, marker: Any) -> bool | None:
        """Delete only if the object still is version ``marker``; whether it was deleted
        (trustworthy where ``delete_tells``), None when the service could not say."""
        raise NotImplementedError

    async def check_bucket(self) -> None:
        """Raise if the bucket is missing (used to tell 'no state' from 'no bucket')."""


def epoch(value) -> float | None:
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


def md5_of(data: bytes) -> bytes:
    import hashlib

    return hashlib.md5(data, usedforsecurity=False).digest()
