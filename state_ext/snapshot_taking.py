"""Taking a snapshot: every state (or those asked for) of a backend, into the snapshot store.

The document is ``state_extension export``'s, written through a gzip stream that counts
and hashes its bytes on the way (for the sidecar), to a temporary name that becomes final
only once complete (``SnapshotStore.create``); the sidecar follows. ``auto_snapshot`` is
the safety snapshot the destructive commands take of exactly what they are about to
change. Naming, listing, reading and pruning live in ``snapshots``.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

from state_ext.model import Envelope
from state_ext.snapshot_store_base import SnapshotStore
from state_ext.snapshot_stores import open_store
from state_ext.snapshots import (
    FORMAT,
    META_SUFFIX,
    STAMP,
    SUFFIX,
    SnapshotInfo,
    check_label,
    parse_name,
    prune,
)


class _NothingToSave(Exception):
    """Raised from inside a write to abandon it: the temporary goes, no name is taken."""


def take_snapshot(backend, project_settings, *, label: str, ids: list[str] | None = None,
                  pattern: str | None = None, store: SnapshotStore | None = None,
                  keep: int | None = None, skip_empty: bool = False) -> SnapshotInfo | None:
    """Snapshot ``backend``'s states (all, those matching ``pattern``, or exactly ``ids``:
    an ID without state is left out) into the store of ``snapshot_uri``.

    The document is complete under its final name or absent; the sidecar follows. With
    ``keep``, the oldest snapshots beyond ``keep`` are deleted afterwards. Returns the new
    snapshot (its ``name`` is what a command summary should print), or None with
    ``skip_empty`` when there was no state to save (nothing is written then).
    """
    from state_ext import exports

    check_label(label)
    own = store is None
    store = store or open_store(project_settings)
    try:
        started = datetime.now(timezone.utc)
        counted = {"states": 0, "bytes": 0}
        digest = hashlib.sha256()

        def write(handle) -> None:
            with gzip.GzipFile(fileobj=handle, mode="wb", mtime=0, compresslevel=1) as gz:
                text = _CountingText(gz, digest, counted)
                counted["states"] = exports.write_compact(_states(backend, ids, pattern), text)
            if skip_empty and not counted["states"]:
                raise _NothingToSave
            counted["size"] = handle.tell()

        moments = _moments(started)
        try:
            name = store.create(lambda: f"{next(moments).strftime(STAMP)}--{label}{SUFFIX}",
                                write)
        except _NothingToSave:
            return None
        moment, _ = parse_name(name)
        info = SnapshotInfo(name, moment, label, counted["states"], counted["size"], backend.label,
                            _scope(ids, pattern), store.label)
        meta = {"format": FORMAT, **info.to_dict(), "document_bytes": counted["bytes"],
                "document_sha256": digest.hexdigest(), "pattern": pattern,
                "ids": None if ids is None else len(ids)}
        store.replace(name[:-len(SUFFIX)] + META_SUFFIX,
                      json.dumps(meta, indent=1, sort_keys=True).encode())
        if keep is not None:
            prune(store, keep=keep)
        return info
    finally:
        if own:
            store.close()


AUTO_SNAPSHOT_ENV = "STATE_EXT_AUTO_SNAPSHOT"


def auto_snapshot_enabled(project_settings, no_snapshot: bool = False) -> bool:
    """False with ``--no-snapshot`` or the plugin setting ``auto_snapshot: false``
    (``STATE_EXT_AUTO_SNAPSHOT``, from the environment or the project's ``.env``)."""
    if no_snapshot:
        return False
    value = project_settings.env.get(AUTO_SNAPSHOT_ENV) or project_settings.dotenv.get(
        AUTO_SNAPSHOT_ENV) or ""
    return value.strip().lower() not in ("false", "0", "no", "off")


def auto_snapshot(backend, project_settings, *, label: str, ids: list[str] | None = None,
                  pattern: str | None = None, no_snapshot: bool = False,
                  store: SnapshotStore | None = None) -> SnapshotInfo | None:
    """The safety snapshot a command takes of exactly what it is about to overwrite or
    delete (``ids``, or all/``pattern``); None when disabled or when none of them holds
    state (nothing to save: no snapshot is written). A failure raises before the caller
    has written anything."""
    if not auto_snapshot_enabled(project_settings, no_snapshot) or ids == []:
        return None
    return take_snapshot(backend, project_settings, label=label, ids=ids, pattern=pattern,
                         store=store, skip_empty=True)


def _moments(last: datetime) -> Iterator[datetime]:
    yield last
    while True:  # a name was taken (two snapshots in one microsecond): a later one
        last = max(datetime.now(timezone.utc), last + timedelta(microseconds=1))
        yield last


def _scope(ids, pattern) -> str:
    if ids is not None:
        return f"{len(ids)} listed state ID(s)" + (f" matching {pattern}" if pattern else "")
    return f"pattern {pattern}" if pattern else "all"


LISTING_PAYS = 20  # IDs to snapshot beyond which one listing first is the cheaper way


def _states(backend, ids, pattern) -> Iterator[tuple[str, Envelope]]:
    if ids is None:
        yield from backend.iter_all(pattern)
        return
    from state_ext.state_ids import matches

    wanted = sorted({i for i in ids if matches(i, pattern)})
    if len(wanted) > LISTING_PAYS:
        # An import of new states names IDs that have none: one listing (a request per
        # thousand keys on an object store) costs less than reading each absent ID.
        present = set(backend.list_ids(pattern))
        wanted = [i for i in wanted if i in present]
    for state_id, envelope in backend.iter_states(wanted):
        if envelope is not None:
            yield state_id, envelope


class _CountingText(io.TextIOBase):
    """A text sink over the gzip stream that counts and hashes the document's bytes."""

    def __init__(self, raw, digest, counted):
        self.raw, self.digest, self.counted = raw, digest, counted

    def write(self, text: str) -> int:
        data = text.encode("utf-8")
        self.digest.update(data)
        self.counted["bytes"] += len(data)
        self.raw.write(data)
        return len(text)
