"""The versions of one state over time, from every record that keeps them.

Meltano keeps no history of state, but three things do:

* the snapshots (each holds the state as it was when taken);
* Meltano's system database ``runs`` table: every ``meltano run`` and every ``meltano
  state set/merge/copy...`` writes a row with the payload it stored (``payload_flags`` 1:
  a complete write, 2: merged into the partial half), whatever the state backend is.
  Replaying the rows of a state ID in order gives the state after each row. (Writes that
  did not go through Meltano, such as state-ext's own, leave no row);
* S3 object versions, when the bucket has versioning enabled.

Every observation becomes (time, source, effective state); consecutive observations of
the same state collapse into one version, seen first at its earliest time.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from state_ext import strict_json
from state_ext.guard import bookmarks, effective
from state_ext.model import Envelope, canonical_json, deep_merge


@dataclass
class Version:
    time: datetime
    ref: str  # what `restore --version` takes: run:<id>, s3:<version id>, <snapshot name>
    source: str
    state: dict | None  # None: the state was deleted
    seen_in: list[str] = field(default_factory=list)
    seen_refs: list[str] = field(default_factory=list)
    summary: str = ""
    seq: int = 0  # order among records of one source with the same time (S3: whole seconds)

    def to_dict(self) -> dict:
        from state_ext.times import iso

        return {"time": iso(self.time), "ref": self.ref, "source": self.source,
                "summary": self.summary, "also_seen_in": self.seen_in, "state": self.state}


@dataclass
class History:
    state_id: str
    versions: list[Version]  # newest first
    sources: dict[str, str]  # source -> "read (N records)" or why not

    def to_dict(self) -> dict:
        return {"state_id": self.state_id, "sources": self.sources,
                "versions": [v.to_dict() for v in self.versions]}


# -- sources -------------------------------------------------------------------------------
def from_snapshots(store, state_id: str, warn) -> list[Version]:
    from state_ext.snapshots import list_snapshots

    found = []
    for info in list_snapshots(store, with_meta=False):
        data = store.read(info.name)
        try:
            document = strict_json.loads(gzip.decompress(data or b""),
                                         max_depth=strict_json.MAX_DEPTH + 2, max_bytes=None)
            entry = document.get(state_id) if isinstance(document, dict) else None
        except (OSError, EOFError, ValueError):
            warn(f"Snapshot {info.name} is corrupt or truncated; skipped")
            continue
        if isinstance(entry, dict):
            envelope = Envelope(entry.get("completed") or {}, entry.get("partial") or {})
            found.append(Version(info.time, info.name, f"snapshot {info.name}",
                                 effective(envelope)))
    return found


RUNS_QUERY = ("SELECT id, state, started_at, ended_at, payload, payload_flags, trigger "
              "FROM runs WHERE job_name = :state_id ORDER BY id")


def from_runs(project_settings, state_id: str) -> list[Version]:
    """Replay the ``runs`` rows of ``state_id`` (complete writes replace, partial ones
    merge), one version per row that carried a payload."""
    from sqlalchemy import text

    from state_ext.backends.systemdb import SystemDbBackend

    backend = SystemDbBackend(project_settings.backend_settings("systemdb"))
    try:
        with backend.engine.connect() as conn:
            rows = conn.execute(text(RUNS_QUERY), {"state_id": state_id}).fetchall()
    finally:
        backend.engine.dispose()
    found, current = [], Envelope()
    for run_id, status, started, ended, payload, flags, trigger in rows:
        if not payload or not flags:
            continue
        try:
            if isinstance(payload, str):
                value = strict_json.loads(payload)
            else:
                strict_json.check_value(payload)
                value = payload
        except ValueError:
            continue
        if not isinstance(value, dict):
            continue
        if flags & 1:
            current = Envelope.complete(value)
        else:
            current = Envelope(current.completed, deep_merge(value, current.partial))
        moment = _utc(ended or started)
        kind = "edit" if str(status).endswith("STATE_EDIT") else f"run {str(status).split('.')[-1]}"
        found.append(Version(moment, f"run:{run_id}",
                             f"runs row {run_id} ({kind}, trigger {trigger or '?'})",
                             current.effective(), seq=run_id))
    return found


def _utc(value) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value is None:
        return datetime.min.replace(tzinfo=timezone.utc)
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def from_s3_versions(backend, state_id: str) -> tuple[list[Version], bool]:
    """Every version of ``<prefix>/<id>/state.json`` (and delete markers); the flag says
    whether the bucket keeps versions at all."""
    key = backend.key(state_id)
    s3, bucket = backend.store, backend.bucket  # clouds/s3.py's client

    async def listing():
        client = await s3.client()  # the aiobotocore client s3fs hands out
        kwargs, versions, markers = {"Bucket": bucket, "Prefix": key}, [], []
        while True:
            page = await client.list_object_versions(**kwargs)
            versions += [v for v in page.get("Versions", ()) if v["Key"] == key]
            markers += [m for m in page.get("DeleteMarkers", ()) if m["Key"] == key]
            if not page.get("IsTruncated"):
                return versions, markers
            kwargs.update(KeyMarker=page["NextKeyMarker"],
                          VersionIdMarker=page["NextVersionIdMarker"])

    async def body(version_id):
        client = await s3.client()
        response = await client.get_object(Bucket=bucket, Key=key, VersionId=version_id)
        async with response["Body"] as stream:
            return await stream.read()

    versions, markers = backend.run("list object versions", listing)
    keeps = any(v.get("VersionId") not in (None, "null") for v in versions + markers)
    found = []
    for newer, item in enumerate(versions):  # S3 lists a key's versions newest first
        data = backend.run("read an object version", body, item["VersionId"])
        envelope = Envelope.from_stored_json(data, where=f"{key} version {item['VersionId']}")
        found.append(Version(_utc(item["LastModified"]), f"s3:{item['VersionId']}",
                             f"S3 object version {item['VersionId']}", effective(envelope),
                             seq=-newer))
    for newer, item in enumerate(markers):
        found.append(Version(_utc(item["LastModified"]), f"s3:{item['VersionId']}",
                             f"S3 delete marker {item['VersionId']}", None, seq=-newer))
    return found, keeps


def collect(state_id: str, *, backend, project_settings, store, stream: str | None = None,
            limit: int | None = None, warn=lambda message: None,
            keep_all: bool = False) -> History:
    """Read every source that is available; say for each whether it was read and why not.
    The backend's current state is the newest observation (``ref`` ``current``)."""
    from state_ext.errors import StateExtError

    observations: list[Version] = []
    sources: dict[str, str] = {}

    def read(name: str, reader) -> None:
        try:
            found = reader()
        except StateExtError as exc:
            sources[name] = f"not read: {exc.message}"
            return
        except Exception as exc:  # noqa: BLE001 - SQLAlchemy, SDKs: one line, go on
            sources[name] = f"not read: {' '.join(str(exc).split())[:200]}"
            return
        observations.extend(found)
        sources[name] = f"read: {len(found)} record(s)"

    read("snapshots", lambda: from_snapshots(store, state_id, warn))
    read("runs table", lambda: from_runs(project_settings, state_id))
    if getattr(backend, "scheme", None) == "s3":
        def s3_versions():
            found, keeps = from_s3_versions(backend, state_id)
            if not keeps:
                raise RuntimeError("the bucket keeps no object versions (versioning is off)")
            return found
        read("s3 versions", s3_versions)
    else:
        sources["s3 versions"] = "not applicable (the state backend is not s3://)"
    now = backend.get(state_id)
    if now is not None or observations:
        observations.append(Version(datetime.now(timezone.utc), "current",
                                    f"current state in {backend.label}",
                                    None if now is None else effective(now)))
    result = assemble(state_id, observations, sources, stream, None if keep_all else limit)
    return result


def version_state(state_id: str, ref: str, *, backend, project_settings, store, warn) -> dict:
    """The effective state that version ``ref`` (``run:ID``, ``s3:VERSION``, a snapshot
    name) of ``state_id`` holds: what ``restore --run``/``--version`` puts back."""
    from state_ext.errors import InvalidInputError

    found = collect(state_id, backend=backend, project_settings=project_settings, store=store,
                    warn=warn, keep_all=True)
    for item in found.versions:
        if item.ref == ref or ref in item.seen_refs:
            if item.state is None:
                raise InvalidInputError(f"Version {ref} of {state_id!r} is a deletion: use "
                                        "clear to get there")
            return item.state
    raise InvalidInputError(f"No version {ref!r} in the history of {state_id!r} (see "
                            f"`state_extension history {state_id}`)")


# -- assembling ---------------------------------------------------------------------------
def assemble(state_id: str, observations: list[Version], sources: dict[str, str],
             stream: str | None = None, limit: int | None = None) -> History:
    """Collapse repeated states into versions, summarise each against the one before."""
    observations.sort(key=lambda v: (v.time, v.seq, v.ref))
    versions: list[Version] = []
    last_key = object()
    for seen in observations:
        key = _key(seen.state, stream)
        if versions and key == last_key:
            versions[-1].seen_in.append(seen.source)
            versions[-1].seen_refs.append(seen.ref)
            continue
        seen.summary = summarize(versions[-1].state if versions else None, seen.state,
                                 stream, first=not versions)
        versions.append(seen)
        last_key = key
    versions.reverse()
    return History(state_id, versions[:limit] if limit else versions, sources)


def _key(state: dict | None, stream: str | None) -> str | None:
    if state is None:
        return None
    if stream is not None:
        return canonical_json((bookmarks(state) or {}).get(stream))
    return canonical_json(state)


def summarize(before: dict | None, after: dict | None, stream: str | None = None, *,
              first: bool = False) -> str:
    if after is None:
        return "state deleted"
    old_marks = bookmarks(before) if before else {}
    new_marks = bookmarks(after)
    if new_marks is None or old_marks is None:  # another layout: opaque keys
        keys = sorted(k for k in set(before or {}) | set(after)
                      if (before or {}).get(k) != after.get(k))
        return ("first seen: " if first else "changed keys: ") + ", ".join(keys or ["-"])
    if stream is not None:
        old_marks = {k: v for k, v in old_marks.items() if k == stream}
        new_marks = {k: v for k, v in new_marks.items() if k == stream}
    parts = [f"+{s}" for s in sorted(set(new_marks) - set(old_marks))]
    parts += [f"-{s}" for s in sorted(set(old_marks) - set(new_marks))]
    for name in sorted(set(old_marks) & set(new_marks)):
        change = _mark_change(old_marks[name], new_marks[name])
        if change:
            parts.append(f"{name}: {change}")
    if not parts:
        return "no bookmarks" if not new_marks else "same bookmarks"
    return ("first seen: " if first else "") + "; ".join(parts)


def _mark_change(old: Any, new: Any) -> str:
    if old == new:
        return ""
    if not isinstance(old, dict) or not isinstance(new, dict):
        return "changed"
    key = "replication_key_value"
    if (key in old or key in new) and old.get(key) != new.get(key):
        return f"{_short(old.get(key))} → {_short(new.get(key))}"
    changed = [k for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
    return ", ".join(f"{k} {_short(old.get(k))} → {_short(new.get(k))}" for k in changed)


def _short(value: Any) -> str:
    if value is None:
        return "(none)"
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    return text if len(text) <= 40 else text[:37] + "..."
