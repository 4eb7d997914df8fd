"""New states on object stores in one request each: a conditional create, checked by the
service's own checksum.

Meltano's per-ID lock exists to order read-modify-writes of a state that exists. A state
that the planning listing shows absent, with no lock object beside it, has nothing to
order against: one create that the service performs only if the key is still absent (S3
``If-None-Match: *``, GCS ``ifGenerationMatch=0``, Azure ``If-None-Match: *``) is both the
check and the write, so it can never replace a state someone else created after the
listing: that create fails, and the ID is handed back as a conflict. Lock, create and
unlock cost three requests; this costs one.

The write is verified without reading it back: the request carries the MD5 of our bytes
(S3 and Azure reject a body that does not match it), and the service answers with the
checksum of what it stored (S3 ETag, GCS ``md5Hash``, Azure ``Content-MD5``), compared
with ours. If the service gives no comparable checksum (an SSE-KMS ETag is no MD5), the
object is read back. A mismatch deletes that version of the object (conditionally: only
if it still is the one we created), so nothing wrong is left under the state's name.

Any other fsspec store keeps the locked path: fsspec's ``pipe_file(mode="create")`` is a
check then a write on most of them (FTP, SFTP), which would be no exclusion at all.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from state_ext.backends import aio
from state_ext.backends.base import LOCK_FILE, STATE_FILE
from state_ext.errors import BackendError, StateExtError

CREATED, EXISTS = "created", "exists"
MISMATCH = ("the store's checksum of the upload differs from ours (damaged in transit); "
            "nothing was left under its name; running the same command again retries it")


REFUSED = ("the store refused the upload: the bytes it received do not match their checksum "
           "(damaged in transit); nothing was written under its name; running the same "
           "command again retries it")
CHECKSUM_CODES = {"BadDigest", "InvalidDigest", "XAmzContentChecksumMismatch",
                  "XAmzContentSHA256Mismatch", "Md5Mismatch", "Crc64Mismatch"}


def refused_checksum(exc: BaseException) -> bool:
    """The service rejected a request because our checksum did not match its body
    (S3 BadDigest, Azure Md5Mismatch or Azurite's 'contentMD5 doesn't match')."""
    response = getattr(exc, "response", None)
    code = response.get("Error", {}).get("Code", "") if isinstance(response, dict) else ""
    code = code or getattr(exc, "error_code", "") or ""
    text = str(exc).lower()
    return code in CHECKSUM_CODES or ("md5" in text and "match" in text)


@dataclass
class Listing:
    """One listing of the destination: the states, and the IDs with a lock object."""

    ids: list[str]
    locked: set[str] = field(default_factory=set)
    scratch: list[str] = field(default_factory=list)  # keys of dead writability checks


@dataclass
class NewWrites:
    """What became of the states planned as new."""

    created: list[str] = field(default_factory=list)  # written and checked by checksum
    exists: list[str] = field(default_factory=list)  # someone created it meanwhile: conflict
    locked: list[str] = field(default_factory=list)  # a lock appeared: take the locked path
    failed: dict[str, str] = field(default_factory=dict)


def listing(backend, pattern: str | None = None) -> Listing:
    """States and lock objects from one listing of the prefix."""
    from state_ext.backends import debris
    from state_ext.state_ids import matches, state_id_problem

    prefix = backend.list_prefix
    keys = backend.run("list state", backend._list_keys, prefix)
    ids, locked, scratch = set(), set(), []
    for key in keys:
        if not key.startswith(prefix):
            continue
        state_id, _, name = key[len(prefix):].rpartition("/")
        if not state_id and debris.dead_scratch(name):
            scratch.append(key)
            continue
        if not state_id or state_id_problem(state_id) is not None:
            continue
        if name == STATE_FILE and matches(state_id, pattern):
            ids.add(state_id)
        elif name == LOCK_FILE:
            locked.add(state_id)
    return Listing(sorted(ids), locked, scratch)


def unsupported_reason(backend) -> str | None:
    """Why this store keeps the locked path for new states, or None."""
    if backend.store.checks_creates:
        return None
    return (f"{backend.scheme}:// offers no atomic conditional create through fsspec, so new "
            "states were written under the lock (3 requests each)")


async def create_one(backend, state_id: str, data: bytes) -> str:
    """CREATED or EXISTS; raises StateExtError with MISMATCH when the checksum differs."""
    store, key = backend.store, backend.key(state_id)
    try:
        answer = await store.create_checked(key, data)
    except Exception as exc:
        if refused_checksum(exc):  # the service checked our MD5 and stored nothing
            raise StateExtError(REFUSED) from None
        raise
    if answer is None:
        return EXISTS
    marker, verified = answer
    if verified is None:  # no comparable checksum: read it back
        try:
            found = await store.get_versioned(key)
        except Exception:  # noqa: BLE001 - e.g. the SDK's own checksum of the read fails
            found = False
        if found is None:  # deleted meanwhile by someone else: nothing of ours is left
            raise StateExtError(f"state {state_id!r} was deleted by another process right "
                                "after it was created; running the same command again "
                                "writes it")
        verified = bool(found) and found[0] == data
    if not verified:
        await store.delete_if(key, marker)
        raise StateExtError(MISMATCH)
    return CREATED


def create_many(backend, states: dict, concurrency: int, done: list | None = None) -> NewWrites:
    """Create every state of ``states`` (ID -> envelope), ``concurrency`` in flight.

    A state whose upload was damaged is a failure of that state; a failure of the store
    itself (unreachable, access denied) ends the whole batch with one ``BackendError``, as
    on the locked path, the requests in flight cancelled. ``done`` (if given) receives each
    ID as its create is confirmed, so the caller can say how many landed before it."""
    result = NewWrites()
    done = [] if done is None else done
    if not states:
        return result

    async def one(state_id: str):
        try:
            outcome = await create_one(backend, state_id,
                                       states[state_id].to_json().encode("utf-8"))
        except StateExtError as exc:
            return exc
        if outcome == CREATED:
            done.append(state_id)
        return outcome

    outcomes = backend.run("write states", aio.bounded_gather, concurrency, one, list(states))
    for state_id, outcome in zip(states, outcomes, strict=True):
        if outcome == CREATED:
            result.created.append(state_id)
        elif outcome == EXISTS:
            result.exists.append(state_id)
        else:
            result.failed[state_id] = outcome.message
    return result


def create_absent(backend, states: dict, minimum: int, concurrency: int) -> list[str]:
    """Import's first step: the states one listing shows absent and unlocked, created
    here; returns their IDs (the caller writes the rest under their locks). Imports of
    fewer than ``minimum`` states skip it: the listing could cost more requests than it
    saves. A failure says how many states were written before it."""
    if len(states) < minimum or unsupported_reason(backend) is not None:
        return []
    seen = backend.plan_listing()
    taken = set(seen.ids) | seen.locked
    fresh = {i: e for i, e in states.items() if i not in taken}
    created: list[str] = []
    try:
        result = create_many(backend, fresh, concurrency, created)
    except StateExtError as exc:
        raise type(exc)(
            f"{exc.message}; {len(created)} of {len(states)} states were written "
            "before the failure (each one whole); running the same command again "
            "completes it") from None
    if result.failed:
        state_id, reason = next(iter(result.failed.items()))
        raise BackendError(
            f"State {state_id!r}: {reason}; {len(result.created)} of {len(states)} states "
            "were written (each one whole); running the same command again "
            "completes it")
    return result.created


def check_writable(backend) -> None:
    """One scratch object beside the states, created then deleted: a bucket without
    write or delete permission fails here, in one line, before any state is written.
    Its key (``<prefix>/.state-ext-write-check.<host>.<pid>...``) is no state's:
    neither Meltano (which lists ``*/state.json`` keys) nor state-ext lists it, and the
    next run on this host deletes it if a crash left it behind (debris.py)."""
    from state_ext.backends import debris

    key = f"{backend.list_prefix}{debris.scratch_name()}"

    async def probe() -> None:
        await backend.store.put(key, b"")
        await backend.store.delete(key)

    try:
        backend.run("write a scratch object", probe)
    except BackendError as exc:
        raise BackendError(
            f"{backend.label} does not accept writes, so nothing was written: {exc.message}"
        ) from None
