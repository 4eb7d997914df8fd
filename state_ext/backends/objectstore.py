"""Object-store backends (``s3://``, ``gs://``, ``azure://`` and any fsspec protocol).

Meltano's layout exactly: bucket/container = the URI host, prefix = the URI path without
outer slashes, ``<prefix>/<state_id>/state.json`` and ``<prefix>/<state_id>/lock``
(``<state_id>/state.json`` with an empty prefix), raw IDs, ``Content-Type:
application/json``. What each service does is in its cloud module (clouds/); this module
keeps the layout, the locking and the bulk concurrency. Differences, all in the safe
direction:

* ``list`` is one paginated listing of ``<prefix>/`` (never of sibling prefixes such as
  ``state-other/``) and returns full IDs, including IDs that contain ``/``;
* locks are created with a server-side conditional create, taken over only if unchanged,
  and deleted only by their owner (see locks.py and clouds/base.py);
* reads of many states (``export``, ``list`` colours) and bulk writes (``import``,
  ``clear --all``) run concurrently (``aio.bounded_gather``);
* every failure is one line naming the service, the bucket and the URI (secrets hidden),
  and saying what happened (connection refused or dropped, timed out, access denied, bucket
  missing); a bulk write that fails says how many states it wrote first (see aio.py for how
  the requests still in flight are cancelled and awaited);
* prefixes with ``.``, ``..`` or empty segments, or ending in ``lock``/``state.json``, are
  refused: Meltano stores them literally (``../x/<id>/state.json``), a layout no other tool
  finds.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from urllib.parse import urlsplit

from state_ext.backends import aio, clouds
from state_ext.backends.base import LOCK_FILE, STATE_FILE, StateBackend, StateSlot
from state_ext.backends.clouds import BucketNotFound
from state_ext.backends.locks import HeldLock, LockPrimitives, hold_lock, hold_lock_async
from state_ext.backends.object_bulk import BulkWrites
from state_ext.errors import ConfigurationError, StateExtError
from state_ext.model import Envelope
from state_ext.redact import redact_uri
from state_ext.state_ids import matches, state_id_problem, validate_state_id

# Requests in flight for reads of many states (export, list colours) and unlocked writes,
# applied by aio.bounded_gather in _get_many; bulk writes: object_bulk.WRITE_CONCURRENCY.
READ_CONCURRENCY = 64
READ_CHUNK = 1000


def split_uri(uri: str) -> tuple[str, str]:
    """(bucket, prefix) exactly as Meltano derives them: host (lower-cased), path stripped."""
    parts = urlsplit(uri)
    try:
        bucket = parts.hostname or ""
    except ValueError:
        bucket = ""
    return bucket, parts.path.strip("/")


def prefix_problem(prefix: str) -> str | None:
    """Why a prefix (outer slashes stripped) cannot be used, or None."""
    if not prefix:
        return None
    segments = prefix.split("/")
    if "" in segments:
        return "an empty path segment ('//')"
    for segment in segments:
        if segment in (".", ".."):
            return f"a {segment!r} path segment"
    if segments[-1] in (STATE_FILE, LOCK_FILE):
        return f"a last segment {segments[-1]!r}, the name of a state's own object"
    return None


def check_prefix(uri: str, prefix: str) -> None:
    problem = prefix_problem(prefix)
    if problem:
        raise ConfigurationError(
            f"Invalid state backend URI {redact_uri(uri)!r}: its prefix {prefix!r} has {problem}; "
            "Meltano would use it literally in every key, where no other tool finds the "
            "states: choose a prefix without it"
        )


class ObjectStoreBackend(BulkWrites, StateBackend, LockPrimitives):
    def __init__(self, settings, *, warn=None):
        super().__init__(settings, warn=warn)
        self.scheme = settings.scheme
        self.bucket, self.prefix = split_uri(settings.uri)
        cloud = clouds.cloud_for(self.scheme)  # None: any other fsspec protocol
        if cloud is not None:
            if not self.bucket:
                raise ConfigurationError(
                    f"Invalid state backend URI {redact_uri(settings.uri)!r}: it names no "
                    f"{cloud.WORD}; expected {self.scheme}://<{cloud.WORD}>/<prefix>")
            check_prefix(settings.uri, self.prefix)
        self.session = clouds.Session(self.scheme, settings.uri, settings.options, self.bucket,
                                      self.label, self.warn)
        self.connection, self.service = self.session.connection, self.session.service
        if self.connection.root is not None:  # any other fsspec protocol: the path it resolved
            self.bucket, self.prefix = "", self.connection.root.strip("/")
            check_prefix(settings.uri, self.prefix)
        self.fs = self.connection.fs
        self.store = self.session.client(self.bucket)
        self.run, self.describe_failure = self.session.run, self.session.describe_failure
        self._bucket_checked = False

    @property
    def location(self):
        return (self.scheme, f"{self.connection.endpoint or ''}|{self.bucket}", self.prefix)

    # -- layout -------------------------------------------------------------------------
    @property
    def list_prefix(self) -> str:
        return f"{self.prefix}/" if self.prefix else ""

    def key(self, state_id: str, name: str = STATE_FILE) -> str:
        return f"{self.list_prefix}{state_id}/{name}"

    # -- reads --------------------------------------------------------------------------
    def list_ids(self, pattern: str | None = None) -> list[str]:
        prefix, suffix = self.list_prefix, "/" + STATE_FILE
        found = set()
        for key in self.run("list state", self._list_keys, prefix):
            if key.startswith(prefix) and key.endswith(suffix):
                state_id = key[len(prefix):-len(suffix)]
                if state_id_problem(state_id) is None and matches(state_id, pattern):
                    found.add(state_id)
        return sorted(found)

    async def _list_keys(self, prefix):
        keys = await self.store.list_keys(prefix)
        self._bucket_checked = True
        return keys

    def get(self, state_id: str) -> Envelope | None:
        validate_state_id(state_id)
        blobs = self.run(f"read state {state_id!r}", self._get_many, [self.key(state_id)])
        return self._parse(state_id, blobs[0])

    def _parse(self, state_id: str, data: bytes | None) -> Envelope | None:
        if data is None:
            return None
        where = f"{self.label} {self.key(state_id)}"
        return Envelope.from_stored_json(data, where=where, warn=self.warn)

    def iter_states(self, state_ids: Iterable[str]) -> Iterator[tuple[str, Envelope | None]]:
        ids = [validate_state_id(s) for s in state_ids]
        for start in range(0, len(ids), READ_CHUNK):
            chunk = ids[start:start + READ_CHUNK]
            blobs = self.run("read states", self._get_many, [self.key(s) for s in chunk])
            for state_id, data in zip(chunk, blobs, strict=True):
                yield state_id, self._parse(state_id, data)

    async def _get_many(self, keys: list[str]) -> list[bytes | None]:
        """The objects (None where absent); when all are absent and the bucket was never
        seen, one bucket check tells "no state" from "no bucket"."""
        results = await aio.bounded_gather(READ_CONCURRENCY, self.store.get, keys)
        if keys and not self._bucket_checked and all(r is None for r in results):
            await self.store.check_bucket()
        self._bucket_checked = True
        return results

    # -- writes -------------------------------------------------------------------------
    @contextmanager
    def transaction(self, state_id: str):
        validate_state_id(state_id)
        with hold_lock(self, state_id, timeout=self.settings.lock_timeout_seconds,
                       retry=self.settings.lock_retry_seconds, where=self.label, warn=self.warn):
            yield _ObjectSlot(self, state_id)

    def _lock_async(self, state_id: str):
        """The lock of ``state_id`` for coroutines (bulk writes on the event loop)."""
        lock_key = self.key(state_id, LOCK_FILE)
        return hold_lock_async(
            lambda content: self.store.create(lock_key, content.encode()),
            lambda: self._current_lock(lock_key),
            lambda content, marker: self.store.delete_if(lock_key, marker),
            modified=lambda: self._lock_modified(lock_key),
            state_id=state_id, timeout=self.settings.lock_timeout_seconds,
            retry=self.settings.lock_retry_seconds, where=self.label,
            location=self.lock_location(state_id), warn=self.warn,
        )

    # -- lock primitives ------------------------------------------------------------------
    def try_create(self, state_id: str, content: str) -> HeldLock | None:
        marker = self.run(f"lock state {state_id!r}", self.store.create,
                           self.key(state_id, LOCK_FILE), content.encode())
        return None if marker is None else HeldLock(content, marker)

    def read_lock(self, state_id: str):
        return self.run(f"read the lock of {state_id!r}", self._current_lock,
                         self.key(state_id, LOCK_FILE))

    def lock_location(self, state_id: str) -> str:
        return f"{self.label.rstrip('/')}/{state_id}/{LOCK_FILE}"

    def lock_modified(self, state_id: str) -> float | None:
        return self.run(f"read the lock of {state_id!r}", self._lock_modified,
                         self.key(state_id, LOCK_FILE))

    async def _lock_modified(self, lock_key: str) -> float | None:
        found = await self.store.get_stamped(lock_key)
        return None if found is None else found[2]

    async def _current_lock(self, lock_key: str):
        """(content, version marker) of the lock object, or None when there is none."""
        found = await self.store.get_versioned(lock_key)
        return None if found is None else (found[0].decode("utf-8", "replace"), found[1])

    def remove_if_unchanged(self, state_id: str, content: str, marker) -> bool | None:
        return self.run(f"unlock state {state_id!r}", self.store.delete_if,
                        self.key(state_id, LOCK_FILE), marker)

    def release_telling(self, state_id: str, held: HeldLock) -> bool | None:
        if not self.store.delete_tells:
            return None
        return self.remove_if_unchanged(state_id, held.content, held.marker)

    def close(self) -> None:
        closer = getattr(self.store, "close", None)
        if closer is not None:
            with suppress(StateExtError):
                self.run("close", closer, timeout=5)


class _ObjectSlot(StateSlot):
    def __init__(self, backend: ObjectStoreBackend, state_id: str):
        self.backend, self.state_id = backend, state_id

    def read(self) -> Envelope | None:
        return self.backend.get(self.state_id)

    def write(self, envelope: Envelope) -> None:
        b = self.backend
        b.run(f"write state {self.state_id!r}", b.store.put, b.key(self.state_id),
               envelope.to_json().encode("utf-8"))

    def delete(self) -> bool:
        b = self.backend
        key = b.key(self.state_id)
        existed = b.run(f"read state {self.state_id!r}", b.store.exists, key)
        if existed:
            b.run(f"delete state {self.state_id!r}", b.store.delete, key)
        return existed


__all__ = ["BucketNotFound", "ObjectStoreBackend", "split_uri"]
