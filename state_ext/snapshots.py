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

This module names, lists, chooses, reads and prunes snapshots; ``snapshot_taking`` writes
them (``take_snapshot``, and ``auto_snapshot`` for the commands that snapshot before they
change state: ``clear``, ``import``, ``move``, ``migrate --delete-source``, ``restore``).
"""

from __future__ import annotations

import gzip
import re
import zlib
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from state_ext import strict_json
from state_ext.errors import InvalidInputError
from state_ext.model import Envelope
from state_ext.snapshot_store_base import SnapshotStore
from state_ext.snapshot_stores import open_store
from state_ext.times import iso

SUFFIX = ".json.gz"
META_SUFFIX = ".meta.json"
FORMAT = "state-ext-snapshot/1"
STAMP = "%Y%m%dT%H%M%S.%fZ"
_LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_NAME = re.compile(r"(\d{8}T\d{6}\.\d{6}Z)--(.+)\.json\.gz")

__all__ = ["SnapshotInfo", "find", "list_snapshots", "load_states", "open_store", "prune"]


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
