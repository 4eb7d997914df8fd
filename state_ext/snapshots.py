"""Point-in-time copies of state, kept in a snapshot store, to list, compare and restore.

A snapshot is one document in the format of ``meltano state export`` (byte for byte what
``state_extension export`` writes: compact JSON, IDs sorted), gzip-compressed, so that
``gunzip | meltano state import`` reads it too. Compression level 1: state compresses
about 14:1 at that level (20:1 at the default 6, four times the CPU), and a snapshot
before every run should cost as little of the run as it can. Its name is its UTC time and a label,
``20261201T061500.123456Z--pre-run.json.gz``, so names sort by time and selecting the
latest or the last one before a time needs only a listing. A small sidecar,
``<name>.meta.json``, written *after* the document, carries what ``snapshots`` shows
(state count, sizes, the source backend with secrets redacted); a snapshot whose sidecar
is missing (a process killed between the two writes) is still complete and listed.

``take_snapshot`` is the one entry point for commands that snapshot before they change
state (``restore`` here; ``clear``, ``import``, ``move``, ``migrate`` via the lead).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from state_ext import strict_json
from state_ext.errors import InvalidInputError
from state_ext.model import Envelope
from state_ext.snapshot_stores import SnapshotStore, open_store

SUFFIX = ".json.gz"
META_SUFFIX = ".meta.json"
FORMAT = "state-ext-snapshot/1"
STAMP = "%Y%m%dT%H%M%S.%fZ"
_LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_NAME = re.compile(r"(\d{8}T\d{6}\.\d{6}Z)--(.+)\.json\.gz")

__all__ = ["SnapshotInfo", "find", "list_snapshots", "load_states", "open_store", "prune",
           "take_snapshot"]


@dataclass
class SnapshotInfo:
    """One snapshot; ``states``, ``size`` and ``source`` are None when its sidecar is missing."""

    name: str
    time: datetime
    label: str
    states: int | None = None
    size: int | None = None
    source: str | None = None
    scope: str | None = None
    store: str = ""

    def to_dict(self) -> dict:
        return {"name": self.name, "time": iso(self.time), "label": self.label,
                "states": self.states, "bytes": self.size, "source": self.source,
                "scope": self.scope, "store": self.store}


def iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat(timespec="microseconds").replace(
        "+00:00", "Z")


def parse_name(name: str) -> tuple[datetime, str] | None:
    match = _NAME.fullmatch(name)
    if match is None:
        return None
    try:
        moment = datetime.strptime(match[1], STAMP).replace(tzinfo=timezone.utc)
    except ValueError:
        return None
    return moment, match[2]


def check_label(label: str) -> str:
    if not _LABEL.fullmatch(label):
        raise InvalidInputError(
            f"Invalid snapshot label {label!r}: use 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit")
    return label


# -- taking ------------------------------------------------------------------------------
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


def _states(backend, ids, pattern) -> Iterator[tuple[str, Envelope]]:
    if ids is None:
        yield from backend.iter_all(pattern)
        return
    from state_ext.state_ids import matches

    wanted = sorted({i for i in ids if matches(i, pattern)})
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


# -- listing and choosing ----------------------------------------------------------------
def list_snapshots(store: SnapshotStore, *, with_meta: bool = True) -> list[SnapshotInfo]:
    """Every snapshot, newest first; sidecars read (concurrently on object stores)."""
    names = set(store.names())
    found = []
    for name in names:
        parsed = parse_name(name)
        if parsed is not None:
            found.append(SnapshotInfo(name, parsed[0], parsed[1], store=store.label))
    found.sort(key=lambda info: info.name, reverse=True)
    if with_meta:
        metas = [i.name[:-len(SUFFIX)] + META_SUFFIX for i in found]
        present = [m for m in metas if m in names]
        texts = store.read_many(present) if present else {}
        for info, meta_name in zip(found, metas, strict=True):
            meta = _meta(texts.get(meta_name))
            info.states, info.size = meta.get("states"), meta.get("bytes")
            info.source, info.scope = meta.get("source"), meta.get("scope")
            if info.size is None:
                info.size = store.size(info.name)
    return found


def read_meta(store: SnapshotStore, info: SnapshotInfo) -> dict:
    """The sidecar of one snapshot; {} when it is missing or unreadable."""
    return _meta(store.read(info.name[:-len(SUFFIX)] + META_SUFFIX))


def _meta(data: bytes | None) -> dict:
    if not data:
        return {}
    try:
        meta = strict_json.loads(data, max_bytes=None)
    except ValueError:
        return {}
    return meta if isinstance(meta, dict) else {}


def find(store: SnapshotStore, name: str | None = None, *, latest: bool = False,
         before: datetime | None = None) -> SnapshotInfo:
    """The snapshot called ``name``, the latest one, or the latest strictly before ``before``."""
    snapshots = list_snapshots(store, with_meta=False)
    if name is not None:
        wanted = name if name.endswith(SUFFIX) else name + SUFFIX
        for info in snapshots:
            if info.name == wanted:
                return info
        raise InvalidInputError(
            f"No snapshot named {name!r} in {store.label} ({_count(snapshots)}; "
            "see `state_extension snapshots`)")
    if before is not None:
        for info in snapshots:
            if info.time < before:
                return info
        raise InvalidInputError(
            f"No snapshot before {iso(before)} in {store.label} ({_count(snapshots)}"
            + (f", the oldest is from {iso(snapshots[-1].time)})" if snapshots else ")"))
    if not snapshots:
        raise InvalidInputError(f"No snapshot in {store.label} yet: take one with "
                                "`state_extension snapshot`")
    return snapshots[0]


def _count(snapshots: list) -> str:
    return f"{len(snapshots)} snapshot(s) there"


def load_states(store: SnapshotStore, info: SnapshotInfo, *, warn=None,
                strict: bool = True) -> dict[str, Envelope]:
    """The snapshot's states; a truncated or corrupt file is one line naming it.

    ``strict`` validates every entry as ``import`` validates a document (what ``restore``
    writes back must be); without it (``guard`` only reads) a plain parse that checks the
    document's shape is several times faster.
    """
    from state_ext.model import parse_export_document

    data = store.read(info.name)
    if data is None:
        raise InvalidInputError(f"Snapshot {info.name} vanished from {store.label}")
    where = f"Snapshot {info.name} in {store.label}"
    try:
        text = gzip.decompress(data).decode("utf-8")
    except (OSError, EOFError, zlib.error, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"{where} is corrupt or truncated: "
                                f"{' '.join(str(exc).split()) or type(exc).__name__}") from None
    if not strict:
        return _shape_checked(text, where)
    try:
        return parse_export_document(text, warn=warn)
    except InvalidInputError as exc:
        raise InvalidInputError(f"{where} is not a valid state document: {exc.message}") \
            from None


def _shape_checked(text: str, where: str) -> dict[str, Envelope]:
    try:
        document = strict_json.loads(text, max_depth=strict_json.MAX_DEPTH + 2, max_bytes=None)
    except ValueError as exc:
        raise InvalidInputError(f"{where} is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise InvalidInputError(f"{where} is not a state document (not a JSON object)")
    states = {}
    for state_id, entry in document.items():
        halves = entry if isinstance(entry, dict) else None
        completed = (halves or {}).get("completed") or {}
        partial = (halves or {}).get("partial") or {}
        if halves is None or not isinstance(completed, dict) or not isinstance(partial, dict):
            raise InvalidInputError(f"{where} is not a state document: entry {state_id!r} "
                                    "is not an object with 'completed' and 'partial'")
        states[state_id] = Envelope(completed, partial)
    return states


# -- pruning -----------------------------------------------------------------------------
def prune(store: SnapshotStore, *, keep: int | None = None,
          older_than: timedelta | None = None) -> list[SnapshotInfo]:
    """Delete the snapshots beyond the ``keep`` newest and/or older than ``older_than``
    (document first, so a listing never shows a snapshot without its document)."""
    snapshots = list_snapshots(store, with_meta=False)
    doomed = []
    now = datetime.now(timezone.utc)
    for index, info in enumerate(snapshots):
        if (keep is not None and index >= keep) or (
                older_than is not None and now - info.time > older_than):
            doomed.append(info)
    for info in doomed:
        store.delete(info.name)
        store.delete(info.name[:-len(SUFFIX)] + META_SUFFIX)
    store.remove_stale_temporaries()
    return doomed


_DURATION = re.compile(r"(\d+)\s*([smhdw])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(text: str) -> timedelta:
    """``7d``, ``12h``, ``30m``, ``90s``, ``2w``, or combinations such as ``1d12h``."""
    compact = text.strip().lower()
    parts = _DURATION.findall(compact)
    if not compact or "".join(f"{n}{u}" for n, u in parts) != compact.replace(" ", ""):
        raise InvalidInputError(
            f"Invalid duration {text!r}: use a number and a unit, e.g. 7d, 12h, 30m, 90s")
    return sum((timedelta(**{_UNITS[u]: int(n)}) for n, u in parts), timedelta())


def parse_time(text: str) -> datetime:
    """An ISO-8601 time (``2026-12-01``, ``2026-12-01T06:15``, ``...Z``); naive means UTC."""
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise InvalidInputError(
            f"Invalid time {text!r}: use ISO 8601, e.g. 2026-12-01T06:15:00Z") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
