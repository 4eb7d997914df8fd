"""Stream-level views and surgery on one state, in the Singer SDK layout.

A tap receives the *effective* state (partial merged onto completed), so that is what
``streams`` shows; each row says which half its value comes from. The SDK keeps a
stream's bookmark under ``singer_state.bookmarks.<stream>`` (``replication_key``,
``replication_key_value``) and, for partitioned streams, one such bookmark per
``partitions[]`` entry, matched by its ``context``. Anything else (``currently_syncing``,
``version``, log positions, a legacy tap's own keys) is shown as opaque keys and kept
untouched.

Surgery (``reset``, ``bookmark``) changes only the named streams, and in *both* halves:
removing a stream from completed alone would let the partial half bring it back. Where
a value is set, the stream's effective bookmark is folded into the completed half and
dropped from the partial one, so the effective state differs from before by exactly the
change shown (Meltano's merge replaces lists wholesale, so a partial ``partitions`` list
would otherwise hide the completed one).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from state_ext.errors import InvalidInputError
from state_ext.guard import (  # guard's spelling, and its kinds of values
    NONE,
    bookmarks,
    coerce_value,
    compact,
    shown,
)
from state_ext.model import Envelope, canonical_json, copy_json

IN_FLIGHT = ("progress_markers", "replication_key_signpost", "starting_replication_value")
SDK_KEYS = ("replication_key", "replication_key_value", "partitions", "context", *IN_FLIGHT)


@dataclass
class StreamRow:
    """One stream of the effective state, as ``streams`` shows it."""

    stream: str
    replication_key: Any = None
    replication_key_value: Any = None
    partitions: list = field(default_factory=list)
    in_flight: dict = field(default_factory=dict)
    source: str = "-"
    other: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"stream": self.stream, "replication_key": self.replication_key,
                "replication_key_value": self.replication_key_value,
                "partition_count": len(self.partitions), "partitions": self.partitions,
                "in_flight": self.in_flight, "from": self.source, "other_keys": self.other}

    def cells(self) -> tuple[str, ...]:
        """This row in ``streams``' text table."""
        return (self.stream, _cell(self.replication_key), _cell(self.replication_key_value),
                str(len(self.partitions)), ",".join(self.in_flight) or "-", self.source,
                compact(self.other) if self.other else "-")


def _cell(value: Any) -> str:
    return "-" if value is None else shown(value)


def stream_marks(state: dict) -> dict:
    """``bookmarks`` of a state in the SDK layout, only the streams whose bookmark is an
    object; ``{}`` for any other layout (never an error: that is ``check``'s job)."""
    marks = bookmarks(state)
    if not marks:
        return {}
    return {name: mark for name, mark in marks.items() if isinstance(mark, dict)}


def rows(envelope: Envelope) -> tuple[list[StreamRow], dict]:
    """The streams of the effective state, and its opaque (non-SDK) values by path."""
    state = envelope.effective()
    singer = state.get("singer_state")
    opaque: dict = {}  # path in the state -> value
    if isinstance(singer, dict):
        opaque = {f"singer_state.{k}": v for k, v in singer.items() if k != "bookmarks"}
        marks = singer.get("bookmarks")
        if isinstance(marks, dict):
            opaque.update({f"singer_state.bookmarks.{k}": v for k, v in marks.items()
                           if not isinstance(v, dict)})
        elif marks is not None:
            opaque["singer_state.bookmarks"] = marks
    elif singer is not None:
        opaque["singer_state"] = singer
    elif "singer_state" not in state and state:
        opaque["(no singer_state)"] = state
    completed, partial = stream_marks(envelope.completed), stream_marks(envelope.partial)
    found = []
    for name, mark in stream_marks(state).items():
        parts = mark.get("partitions")
        found.append(StreamRow(
            stream=name,
            replication_key=mark.get("replication_key"),
            replication_key_value=mark.get("replication_key_value"),
            partitions=[_partition(p) for p in parts] if isinstance(parts, list) else [],
            in_flight={k: mark[k] for k in IN_FLIGHT if k in mark},
            source=_source(partial.get(name), completed.get(name)),
            other={k: v for k, v in mark.items() if k not in SDK_KEYS},
        ))
    return found, opaque


def _partition(part: Any) -> dict:
    if not isinstance(part, dict):
        return {"context": None, "opaque": part}
    row = {"context": part.get("context"), "replication_key": part.get("replication_key"),
           "replication_key_value": part.get("replication_key_value")}
    markers = {k: part[k] for k in IN_FLIGHT if k in part}
    if markers:
        row["in_flight"] = markers
    return row


def _source(partial: dict | None, completed: dict | None) -> str:
    """Which half the stream's value (or partitions) comes from in the effective state."""
    for half, mark in (("partial", partial), ("completed", completed)):
        if mark and ("replication_key_value" in mark or "partitions" in mark):
            return half
    if partial:
        return "partial"
    return "completed" if completed else "-"


# -- arguments ---------------------------------------------------------------------------
def parse_partition(text: str | None) -> dict | None:
    """``--partition``: a JSON object, the ``context`` of one partition."""
    if text is None:
        return None
    from state_ext import strict_json

    try:
        value = strict_json.loads(text)
    except strict_json.JsonRefused as exc:
        raise InvalidInputError(f"Invalid value for --partition: {exc.message}") from None
    if not isinstance(value, dict):
        raise InvalidInputError(
            f"Invalid value for --partition: expected a JSON object (a partition's context), "
            f"got {shown(value)}")
    return value


def require_streams(state_id: str, envelope: Envelope | None, names: list[str]) -> list[str]:
    """The named streams, each present in the effective state, else one error naming the
    unknown ones and the known ones (never a silent no-op)."""
    if envelope is None:
        raise InvalidInputError(f"No state found for state ID {state_id!r}")
    known = list(stream_marks(envelope.effective()))
    unknown = [n for n in names if n not in known]
    if unknown:
        listing = ", ".join(known) if known else "none in the Singer SDK layout"
        raise InvalidInputError(
            f"Unknown stream(s) {', '.join(repr(n) for n in unknown)} in state {state_id!r}; "
            f"known streams: {listing}")
    return list(dict.fromkeys(names))


def find_partition(state_id: str, stream: str, mark: dict, context: dict) -> int:
    """Index of the partition whose context is ``context``, else an error listing them."""
    parts = mark.get("partitions")
    parts = parts if isinstance(parts, list) else []
    wanted = canonical_json(context)
    for index, part in enumerate(parts):
        if isinstance(part, dict) and canonical_json(part.get("context")) == wanted:
            return index
    listing = "; ".join(compact(p.get("context")) for p in parts if isinstance(p, dict))
    raise InvalidInputError(
        f"No partition {compact(context)} in stream {stream!r} of state {state_id!r}; "
        f"its partitions: {listing or 'none'}")


# -- the commands' plans: every check first, then the changed envelope ------------------
def plan_reset(state_id: str, envelope: Envelope | None, names: list[str], all_streams: bool,
               partition: dict | None) -> tuple[list[str], Envelope]:
    """``reset``: the streams (all of them with ``all_streams``) and the envelope without
    their bookmarks (or without that partition of each)."""
    if all_streams:
        names = list(stream_marks(envelope.effective())) if envelope else []
    names = require_streams(state_id, envelope, names)
    if partition is not None:
        marks = stream_marks(envelope.effective())
        for name in names:
            find_partition(state_id, name, marks[name], partition)
    return names, reset(envelope, names, partition)


def plan_bookmark(state_id: str, envelope: Envelope | None, stream: str, text: str,
                  key: str | None, partition: dict | None, any_type: bool) -> Envelope:
    """``bookmark``: the envelope with the stream's (or partition's) value set from
    ``text``, once the stream, the partition, the key and the value's type all check out."""
    require_streams(state_id, envelope, [stream])
    mark = stream_marks(envelope.effective())[stream]
    parts = mark.get("partitions")
    target = mark
    if partition is not None:
        target = parts[find_partition(state_id, stream, mark, partition)]
    elif isinstance(parts, list) and parts and "replication_key_value" not in mark:
        raise InvalidInputError(
            f"Stream {stream!r} of state {state_id!r} has {len(parts)} partition(s): "
            "give --partition with the context of one")
    if key is None and "replication_key" not in target:
        raise InvalidInputError(
            f"Stream {stream!r} of state {state_id!r} has no replication_key: give --key")
    new = coerce_value(text, target.get("replication_key_value"), any_type)
    return set_value(state_id, envelope, stream, new, key, partition)


# -- changes -------------------------------------------------------------------------------
def _halves_marks(envelope: Envelope) -> list[dict]:
    """Each half's ``bookmarks`` object, when that half has one (to change in place)."""
    found = []
    for half in (envelope.completed, envelope.partial):
        singer = half.get("singer_state")
        if isinstance(singer, dict) and isinstance(singer.get("bookmarks"), dict):
            found.append(singer["bookmarks"])
    return found


def reset(envelope: Envelope, streams: list[str], partition: dict | None = None) -> Envelope:
    """Remove the streams' bookmarks (or one partition of each) from both halves."""
    result = Envelope(copy_json(envelope.completed), copy_json(envelope.partial))
    wanted = None if partition is None else canonical_json(partition)
    for marks in _halves_marks(result):
        for stream in streams:
            if stream not in marks:
                continue
            if wanted is None:
                del marks[stream]
                continue
            parts = marks[stream].get("partitions") if isinstance(marks[stream], dict) else None
            if isinstance(parts, list):
                marks[stream]["partitions"] = [
                    p for p in parts
                    if not (isinstance(p, dict) and canonical_json(p.get("context")) == wanted)]
    return result


def set_value(state_id: str, envelope: Envelope, stream: str, value: Any, key: str | None,
              partition: dict | None) -> Envelope:
    """The stream's effective bookmark, with the new value, in completed; gone from partial."""
    result = Envelope(copy_json(envelope.completed), copy_json(envelope.partial))
    mark = copy_json(stream_marks(envelope.effective())[stream])
    target = mark
    if partition is not None:
        target = mark["partitions"][find_partition(state_id, stream, mark, partition)]
    target["replication_key_value"] = value
    if key is not None:
        target["replication_key"] = key
    singer = result.completed.get("singer_state")
    if not isinstance(singer, dict):
        singer = result.completed["singer_state"] = {}
    if not isinstance(singer.get("bookmarks"), dict):
        singer["bookmarks"] = {}
    singer["bookmarks"][stream] = mark
    partial_singer = result.partial.get("singer_state")
    if isinstance(partial_singer, dict) and isinstance(partial_singer.get("bookmarks"), dict):
        partial_singer["bookmarks"].pop(stream, None)
    return result


def change_lines(state_id: str, before: Envelope, after: Envelope, streams: list[str]) -> list[str]:
    """``ID: stream 'x': <before> → <after>`` for each stream (and partition) that changes."""
    old, new = stream_marks(before.effective()), stream_marks(after.effective())
    lines = []
    for stream in streams:
        was, now = old.get(stream), new.get(stream)
        if was == now:
            continue
        lines.append(f"{state_id}: stream {stream!r}: {_mark_text(was)} → {_mark_text(now)}")
    return lines


def _mark_text(mark: dict | None) -> str:
    if mark is None:
        return NONE
    shown_keys = {k: v for k, v in mark.items() if k != "partitions"}
    text = compact(shown_keys)
    parts = mark.get("partitions")
    if isinstance(parts, list):
        text += f" + {len(parts)} partition(s) " + compact(
            [{k: p.get(k) for k in ("context", "replication_key_value")}
             if isinstance(p, dict) else p for p in parts])
    return text
