"""Object-store backends (``s3://``, ``gs://``, ``azure://`` and any fsspec protocol).

Meltano's layout exactly: bucket/container = the URI host, prefix = the URI path without
outer slashes, ``<prefix>/<state_id>/state.json`` and ``<prefix>/<state_id>/lock``
(``<state_id>/state.json`` with an empty prefix), raw IDs, ``Content-Type:
application/json``. Differences, all in the safe direction:

* ``list`` is one paginated listing of ``<prefix>/`` (never of sibling prefixes such as
  ``state-other/``) and returns full IDs, including IDs that contain ``/``;
* locks are created with a server-side conditional create, taken over only if unchanged,
  and deleted only by their owner (see locks.py and stores.py);
* reads of many states (``export``, ``list`` colours) and bulk writes (``import``,
  ``clear --all``) run concurrently;
* every failure is one line naming the service, the bucket and the URI (secrets hidden),
  and saying what happened (connection refused or dropped, timed out, access denied, bucket
  missing); a bulk write that fails says how many states it wrote first (see aio.py for how
  the requests still in flight are cancelled and awaited);
* prefixes with ``.``, ``..`` or empty segments, or ending in ``lock``/``state.json``, are
  refused: Meltano stores them literally (``../x/<id>/state.json``), a layout no other tool
  finds.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from urllib.parse import urlsplit

from state_ext.backends import aio
from state_ext.backends.base import CHANGED, StateBackend, StateSlot
from state_ext.backends.locks import HeldLock, LockPrimitives, hold_lock, hold_lock_async
from state_ext.backends.stores import AsyncStore, BucketNotFound
from state_ext.errors import BackendError, ConfigurationError, StateExtError
from state_ext.model import Envelope
from state_ext.settings import redact_uri
from state_ext.state_ids import matches, state_id_problem, validate_state_id

STATE_FILE = "state.json"
LOCK_FILE = "lock"
READ_CONCURRENCY = 64
WRITE_CONCURRENCY = 16
READ_CHUNK = 1000
FAST_IMPORT_MIN = 20  # states in an import from which one listing pays for itself
SERVICE_NAMES = {"s3": "S3", "gs": "GCS", "azure": "Azure Blob"}
BUCKET_WORD = {"azure": "container"}


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


class ObjectStoreBackend(StateBackend, LockPrimitives):
    def __init__(self, settings, *, warn=None, connection=None, store: AsyncStore | None = None):
        super().__init__(settings, warn=warn)
        self.scheme = settings.scheme
        self.bucket, self.prefix = split_uri(settings.uri)
        word = BUCKET_WORD.get(self.scheme, "bucket")
        if not self.bucket and self.scheme in SERVICE_NAMES:
            raise ConfigurationError(
                f"Invalid state backend URI {redact_uri(settings.uri)!r}: it names no {word}; "
                f"expected {self.scheme}://<{word}>/<prefix>"
            )
        self.service = SERVICE_NAMES.get(self.scheme, self.scheme)
        if connection is None:
            if self.scheme in SERVICE_NAMES:
                check_prefix(settings.uri, self.prefix)
            connection = _connect(self.scheme, settings.uri, settings.options, self.warn)
        self.connection = connection
        if connection.root is not None:  # any other fsspec protocol: the path it resolved
            self.bucket, self.prefix = "", connection.root.strip("/")
            check_prefix(settings.uri, self.prefix)
        self.fs = connection.fs
        self.store = store or _store_for(self.scheme, connection, self.bucket)
        self._secrets = sorted({s for s in connection.secrets if s and len(s) >= 4},
                               key=len, reverse=True)
        self._bucket_checked = False
        self._loop = getattr(self.fs, "loop", None)
        if self._loop is None:
            from fsspec.asyn import get_loop

            self._loop = get_loop()
        aio.quiet_loop(self._loop)

    @property
    def location(self):
        endpoint = self.connection.endpoint or ""
        return (self.scheme, f"{endpoint}|{self.bucket}", self.prefix)

    # -- layout -------------------------------------------------------------------------
    @property
    def list_prefix(self) -> str:
        return f"{self.prefix}/" if self.prefix else ""

    def key(self, state_id: str, name: str = STATE_FILE) -> str:
        return f"{self.list_prefix}{state_id}/{name}"

    # -- running and errors -------------------------------------------------------------
    def run(self, what: str, coroutine_function, *args, timeout: float | None = None):
        """Run a coroutine on the store's loop; any failure is one ``BackendError`` line.

        The wait is by progress (``aio.run``): it fails once no request has completed for
        the stall window (``stall_timeout_seconds``), whatever the size of the job;
        ``timeout`` additionally bounds the whole call (closing connections)."""
        try:
            return aio.run(self._loop, coroutine_function(*args), timeout)
        except StateExtError:
            raise
        except Exception as exc:
            raise BackendError(self.describe_failure(what, exc)) from None

    def describe_failure(self, what: str, exc: BaseException) -> str:
        from state_ext.backends.errors_text import explain

        word = BUCKET_WORD.get(self.scheme, "bucket")
        cloud = self.scheme in SERVICE_NAMES
        namespace = {"gs": "gcs"}.get(self.scheme, self.scheme)
        reason = explain(exc, service=self.service, bucket=self.bucket, word=word,
                         endpoint=self.connection.endpoint, scheme=self.scheme,
                         timeout_setting=f"state_backend.{namespace}.timeout_seconds"
                         if cloud else None)
        where = f"{self.service} {word} {self.bucket!r} ({self.label})" if cloud else \
            f"{self.service}:// store {self.label}"
        return self._redact(f"{where}: cannot {what}: {reason}")

    def _redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        text = re.sub(r"(?i)(AccountKey|SharedAccessSignature|sig)=[^;&\s]+", r"\1=***", text)
        return " ".join(text.split())

    # -- reads --------------------------------------------------------------------------
    def list_ids(self, pattern: str | None = None) -> list[str]:
        prefix = self.list_prefix
        keys = self.run("list state", self._list_keys, prefix)
        found = []
        suffix = "/" + STATE_FILE
        for key in keys:
            if not key.startswith(prefix) or not key.endswith(suffix):
                continue
            state_id = key[len(prefix):-len(suffix)]
            if state_id_problem(state_id) is None and matches(state_id, pattern):
                found.append(state_id)
        return sorted(set(found))

    async def _list_keys(self, prefix):
        keys = await self.store.list_keys(prefix)
        self._bucket_checked = True
        return keys

    def get(self, state_id: str) -> Envelope | None:
        validate_state_id(state_id)
        data = self.run(f"read state {state_id!r}", self._get_checked, self.key(state_id))
        return self._parse(state_id, data)

    async def _get_checked(self, key):
        data = await self.store.get(key)
        if data is None and not self._bucket_checked:
            await self.store.check_bucket()
        self._bucket_checked = True
        return data

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

    def _one_state_timeout(self) -> float:
        """The most one locked write may take: lock, write and unlock requests, plus the
        lock wait. Bulk writes bound each state by it: a request can hang past the SDK's
        own timeouts (aiohttp waits for "100 Continue" from a frozen server forever)."""
        per = self.connection.timeout * (self.connection.max_attempts + 1)
        return per * 3 + self.settings.lock_timeout_seconds + self.settings.lock_retry_seconds

    async def _get_many(self, keys: list[str]) -> list[bytes | None]:
        semaphore = asyncio.Semaphore(READ_CONCURRENCY)

        async def one(key):
            async with semaphore:
                return await self.store.get(key)

        results = await aio.gather_or_cancel(one(k) for k in keys)
        if keys and not self._bucket_checked and all(r is None for r in results):
            await self.store.check_bucket()
        self._bucket_checked = True
        return results

    async def _put_raw_many(self, blobs: dict[str, bytes]) -> None:
        """Write many objects concurrently, without locks (seeding, benchmarks)."""
        semaphore = asyncio.Semaphore(READ_CONCURRENCY)

        async def one(key, data):
            async with semaphore:
                await self.store.put(key, data)

        await aio.gather_or_cancel(one(k, v) for k, v in blobs.items())

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

    def put_many_checked(self, states, expected, concurrency=8):
        """Migrate: per ID, lock, write, unlock, all on the event loop (``concurrency`` IDs
        in flight). An ID planned as absent is written with a conditional create, one
        request that is both the check and the write, so a new state costs three requests:
        lock, create, unlock."""
        ids = [validate_state_id(state_id) for state_id in states]
        if not ids:
            return {}
        reasons = self.run("write states", self._put_checked_many, states, expected,
                            max(1, concurrency))
        return {state_id: reason for state_id, reason in zip(ids, reasons, strict=True)
                if reason}

    async def _put_checked_many(self, states, expected, concurrency: int) -> list[str | None]:
        semaphore = asyncio.Semaphore(concurrency)

        async def one(state_id: str) -> str | None:
            async with semaphore:
                try:
                    return await asyncio.wait_for(
                        self._put_checked(state_id, states[state_id], expected[state_id]),
                        self._one_state_timeout())
                except StateExtError as exc:
                    return exc.message
                except Exception as exc:  # noqa: BLE001 - reported per ID, as one line
                    return self.describe_failure(f"write state {state_id!r}", exc)

        return await aio.gather_or_cancel(one(state_id) for state_id in states)

    async def _put_checked(self, state_id: str, envelope: Envelope,
                           expected: str | None) -> str | None:
        from state_ext.backends.base import digest

        key = self.key(state_id)
        data = envelope.to_json().encode("utf-8")

        async with self._lock_async(state_id):
            if expected is None:
                written = await self.store.create(key, data) is not None
            else:
                written = digest(self._parse(state_id, await self.store.get(key))) == expected
                if written:
                    await self.store.put(key, data)
        return None if written else CHANGED

    # -- new states in one request each (see fast_create.py) ------------------------------
    def plan_listing(self, pattern: str | None = None):
        """States and lock objects from one listing; scratch objects that a killed run of
        this host left behind are deleted on the way (see debris.py)."""
        from state_ext.backends import debris, fast_create

        seen = fast_create.listing(self, pattern)
        if seen.scratch:
            self.run("delete leftovers", debris.delete_dead_scratch, self, seen.scratch)
        return seen

    @property
    def fast_create_problem(self) -> str | None:
        from state_ext.backends import fast_create

        return fast_create.unsupported_reason(self)

    def create_new_many(self, states: dict[str, Envelope], concurrency: int = 64):
        from state_ext.backends import fast_create

        for state_id in states:
            validate_state_id(state_id)
        return fast_create.create_many(self, states, concurrency)

    def check_writable(self) -> None:
        """One scratch object beside the states, created then deleted: a bucket without
        write or delete permission fails here, in one line, before any state is written.
        Its key (``<prefix>/.state-ext-write-check.<host>.<pid>...``) is no state's:
        neither Meltano (which lists ``*/state.json`` keys) nor state-ext lists it, and the
        next run on this host deletes it if a crash left it behind."""
        from state_ext.backends import debris

        key = f"{self.list_prefix}{debris.scratch_name()}"

        async def probe() -> None:
            await self.store.put(key, b"")
            await self.store.delete(key)

        try:
            self.run("write a scratch object", probe)
        except BackendError as exc:
            raise BackendError(
                f"{self.label} does not accept writes, so nothing was written: {exc.message}"
            ) from None

    def put_many(self, states: dict[str, Envelope]) -> int:
        """Import: states the listing shows absent (and unlocked) by one conditional
        create each (fast_create.py); the rest, and any that someone created meanwhile
        (import overwrites), under their lock, ``WRITE_CONCURRENCY`` in flight. Small
        imports skip the listing: it could cost more requests than it saves."""
        from state_ext.backends import fast_create

        for state_id in states:
            validate_state_id(state_id)
        created: list[str] = []
        if len(states) >= FAST_IMPORT_MIN and self.fast_create_problem is None:
            seen = self.plan_listing()
            taken = set(seen.ids) | seen.locked
            fresh = {i: e for i, e in states.items() if i not in taken}
            try:
                result = fast_create.create_many(self, fresh, WRITE_CONCURRENCY, created)
            except StateExtError as exc:
                raise type(exc)(
                    f"{exc.message}; {len(created)} of {len(states)} states were written "
                    "before the failure (each one whole); running the same command again "
                    "completes it") from None
            created = result.created
            if result.failed:
                state_id, reason = next(iter(result.failed.items()))
                raise BackendError(
                    f"State {state_id!r}: {reason}; {len(created)} of {len(states)} states "
                    "were written (each one whole); running the same command again "
                    "completes it")

        async def one(state_id: str, done: list) -> None:
            data = states[state_id].to_json().encode("utf-8")
            async with self._lock_async(state_id):
                await self.store.put(self.key(state_id), data)
                done.append(state_id)

        done = set(created)
        self._bulk("write states", [i for i in states if i not in done], one, "written",
                   already=len(done))
        return len(states)

    def delete_many(self, state_ids: Iterable[str]) -> int:
        """``clear --all``: every state under its lock; returns how many existed."""
        async def one(state_id: str, done: list) -> None:
            key = self.key(state_id)
            async with self._lock_async(state_id):
                if await self.store.exists(key):
                    await self.store.delete(key)
                    done.append(state_id)

        return len(self._bulk("delete states", list(state_ids), one, "cleared"))

    def _bulk(self, what: str, ids: list[str], one, verb: str, already: int = 0) -> list[str]:
        """Run ``one(state_id, done)`` for every ID on the loop. On the first failure the
        rest is cancelled and awaited, and the error says how many were done before it
        (counting the ``already`` done by an earlier step of the same command)."""
        for state_id in ids:
            validate_state_id(state_id)
        done: list[str] = []

        async def every() -> None:
            semaphore = asyncio.Semaphore(WRITE_CONCURRENCY)

            async def limited(state_id: str) -> None:
                async with semaphore:
                    await asyncio.wait_for(one(state_id, done), self._one_state_timeout())

            await aio.gather_or_cancel(limited(state_id) for state_id in ids)

        try:
            self.run(what, every)
        except StateExtError as exc:
            total = already + len(ids)
            if total < 2:
                raise
            raise type(exc)(
                f"{exc.message}; {already + len(done)} of {total} states were {verb} before "
                "the failure (each one whole); running the same command again completes it"
            ) from None
        return done

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

    def remove_if_unchanged(self, state_id: str, content: str, marker) -> None:
        self.run(f"unlock state {state_id!r}", self.store.delete_if,
                  self.key(state_id, LOCK_FILE), marker)

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


def _connect(scheme: str, uri: str, options: dict, warn):
    from state_ext.backends import credentials

    if scheme == "s3":
        return credentials.s3_connection(uri, options)
    if scheme == "gs":
        return credentials.gcs_connection(uri, options, warn)
    if scheme == "azure":
        return credentials.azure_connection(uri, options)
    return credentials.generic_connection(scheme, uri, options)


def _store_for(scheme: str, connection, bucket: str) -> AsyncStore:
    from state_ext.backends import stores

    if scheme == "s3":
        return stores.S3Store(connection.fs, bucket)
    if scheme == "gs":
        return stores.GCSStore(connection.fs, bucket)
    if scheme == "azure":
        per_call = {"retry_total": connection.max_attempts - 1}
        return stores.AzureStore(connection.fs, bucket, per_call=per_call)
    return stores.FsspecStore(connection.fs, "/" if connection.root.startswith("/") else "")


__all__ = ["BucketNotFound", "ObjectStoreBackend", "split_uri"]
