"""The post-step of a safe run: did this run move any bookmark the wrong way?

``guard`` compares each state's *effective* value (what the next run's tap receives) with
the same state in a snapshot taken before the run, stream by stream, in the Singer SDK
layout (``singer_state.bookmarks.<stream>.replication_key_value``, and per partition,
matched by ``context``, under ``bookmarks.<stream>.partitions``). Three problems:

* ``regress``: a ``replication_key_value`` moved backwards. Values are compared by type:
  ISO-8601 timestamps as instants (naive ones as UTC), numbers as numbers; other strings,
  or values of different types, have no order and are never called a regression;
* ``emptied``: a state that had bookmarks now has none (``{}``, ``{"singer_state": {}}``,
  empty ``bookmarks``) or was deleted. Layouts that are not the SDK's are compared only
  for this: a non-empty ``singer_state`` that became empty;
* ``lost-stream``: a stream (or a partition) whose bookmark was there is gone.

New states, streams and partitions are never problems. Work is linear in the states and
small per state: 10,000 states take a fraction of a second.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from state_ext.errors import InvalidInputError
from state_ext.model import Envelope

KINDS = ("regress", "emptied", "lost-stream")
_ISO = re.compile(r"\d{4}-\d{2}-\d{2}|\d{8}T")
NONE = "(none)"


@dataclass
class Problem:
    state_id: str
    kind: str
    before: Any
    after: Any
    stream: str | None = None
    partition: Any = None

    def line(self) -> str:
        what = {"regress": "bookmark moved backwards", "emptied": "state emptied",
                "lost-stream": "bookmark disappeared"}[self.kind]
        return (f"{where(self.state_id, self.stream, self.partition)}: {what}: "
                f"{shown(self.before)} → {shown(self.after)}")


    def to_dict(self) -> dict:
        return {"state_id": self.state_id, "stream": self.stream, "partition": self.partition,
                "problem": self.kind, "before": self.before, "after": self.after}


def where(state_id: str, stream: str | None = None, partition: Any = None) -> str:
    """How a finding names its place: ``ID: stream 'x' partition {...}`` (guard, check)."""
    text = state_id
    if stream is not None:
        text += f": stream {stream!r}"
    if partition is not None:
        text += f" partition {compact(partition)}"
    return text


def compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


def shown(value: Any) -> str:
    if value is NONE or isinstance(value, str):
        return str(value)
    return compact(value)


def parse_allow(text: str | None) -> set[str]:
    if not text:
        return set()
    allowed = {part.strip() for part in text.split(",") if part.strip()}
    unknown = sorted(allowed - set(KINDS))
    if unknown:
        raise InvalidInputError(
            f"Invalid value for --allow: {unknown[0]!r} (choose from {', '.join(KINDS)})")
    return allowed


def effective(envelope: Envelope | None) -> dict:
    if envelope is None:
        return {}
    return envelope.completed if not envelope.partial else envelope.effective()


def check(before: dict[str, Envelope], current: Iterable[tuple[str, Envelope | None]],
          allow: set[str] = frozenset()) -> list[Problem]:
    """Problems of ``current`` against ``before`` (IDs only in ``current`` are new: fine)."""
    problems: list[Problem] = []
    seen = set()
    for state_id, envelope in current:
        old = before.get(state_id)
        if old is None:
            continue
        seen.add(state_id)
        compare_state(state_id, effective(old), effective(envelope), problems)
    for state_id in sorted(set(before) - seen):  # deleted since the snapshot
        compare_state(state_id, effective(before[state_id]), {}, problems)
    problems = [p for p in problems if p.kind not in allow]
    problems.sort(key=lambda p: (p.state_id, p.stream or "", compact(p.partition)))
    return problems


def compare_state(state_id: str, old: dict, new: dict, problems: list[Problem]) -> None:
    old_marks, new_marks = bookmarks(old), bookmarks(new)
    if old_marks is None:  # not the SDK layout: only "was it emptied?"
        if _has_content(old) and not _has_content(new):
            problems.append(Problem(state_id, "emptied", _summary(old), _summary(new)))
        return
    if not old_marks:
        return
    if not new_marks:
        problems.append(Problem(state_id, "emptied", _summary(old), _summary(new)))
        return
    for stream, old_mark in old_marks.items():
        if not isinstance(old_mark, dict):
            continue
        new_mark = new_marks.get(stream)
        if not isinstance(new_mark, dict):
            problems.append(Problem(state_id, "lost-stream", _value(old_mark), NONE, stream))
            continue
        _compare_mark(state_id, stream, None, old_mark, new_mark, problems)
        old_parts = old_mark.get("partitions")
        if isinstance(old_parts, list) and old_parts:
            _compare_partitions(state_id, stream, old_parts, new_mark.get("partitions"),
                                problems)


def _compare_partitions(state_id, stream, old_parts, new_parts, problems) -> None:
    current = {}
    for part in new_parts if isinstance(new_parts, list) else ():
        if isinstance(part, dict):
            current[compact(part.get("context"))] = part
    for part in old_parts:
        if not isinstance(part, dict):
            continue
        context = part.get("context")
        new_part = current.get(compact(context))
        if new_part is None:
            if "replication_key_value" in part:
                problems.append(Problem(state_id, "lost-stream", part["replication_key_value"],
                                        NONE, stream, context))
            continue
        _compare_mark(state_id, stream, context, part, new_part, problems)


def _compare_mark(state_id, stream, context, old_mark: dict, new_mark: dict, problems) -> None:
    if "replication_key_value" not in old_mark:
        return
    before = old_mark["replication_key_value"]
    if "replication_key_value" not in new_mark:
        problems.append(Problem(state_id, "lost-stream", before, NONE, stream, context))
        return
    after = new_mark["replication_key_value"]
    if is_before(after, before):
        problems.append(Problem(state_id, "regress", before, after, stream, context))


def is_before(after: Any, before: Any) -> bool:
    """True when ``after`` is ordered strictly before ``before`` (same kind of value)."""
    a, b = order_key(after), order_key(before)
    return a is not None and b is not None and a[0] == b[0] and a[1] < b[1]


def order_key(value: Any) -> tuple[str, Any] | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return ("number", value)
    if isinstance(value, str) and _ISO.match(value):
        try:
            moment = datetime.fromisoformat(value.replace("z", "Z"))
        except ValueError:
            return None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=timezone.utc)
        return ("time", moment)
    return None


def bookmarks(state: dict) -> dict | None:
    """The SDK's bookmarks; ``{}`` when there are none; None for another layout."""
    if not isinstance(state, dict) or not state:
        return {}
    if "singer_state" not in state:
        return None
    singer = state["singer_state"]
    if not singer:
        return {}
    if not isinstance(singer, dict):
        return None
    marks = singer.get("bookmarks")
    if marks is None:
        return None if set(singer) - {"currently_syncing"} else {}
    return marks if isinstance(marks, dict) else None


def _has_content(state: dict) -> bool:
    singer = state.get("singer_state") if isinstance(state, dict) else None
    return bool(singer) if "singer_state" in state else bool(state)


def _value(mark: dict) -> Any:
    if "replication_key_value" in mark:
        return mark["replication_key_value"]
    return "bookmark"


def _summary(state: dict) -> str:
    if not state:
        return NONE
    marks = bookmarks(state)
    if marks:
        return f"{len(marks)} stream bookmark(s)"
    if marks is None:
        return f"singer_state with {len(state.get('singer_state') or {})} key(s)"
    return compact(state)


# -- a new value of the same kind (``bookmark --value``), so guard can still order it --
def coerce_value(text: str, old: Any, any_type: bool) -> Any:
    """The new ``replication_key_value`` from its command-line text, of the old value's
    type: a timestamp stays a valid ISO-8601 timestamp, a number a number. With
    ``any_type`` (or no old value), JSON numbers become numbers, anything else a string."""
    number = _number(text)
    if any_type or old is None:
        return text if number is None else number
    old_kind = order_key(old)
    if old_kind is not None and old_kind[0] == "number":
        if number is None:
            raise InvalidInputError(
                f"Invalid value for --value: {text!r} is not a number, and the current "
                f"value {shown(old)} is one (--any-type to change the type)")
        return number
    if old_kind is not None and old_kind[0] == "time":
        kind = order_key(text)
        if kind is None or kind[0] != "time":
            raise InvalidInputError(
                f"Invalid value for --value: {text!r} is not an ISO-8601 timestamp, and the "
                f"current value {old} is one (--any-type to change the type)")
        return text
    if isinstance(old, str):
        return text
    raise InvalidInputError(
        f"Invalid value for --value: the current value {shown(old)} is neither a timestamp, "
        "a number nor a string; pass --any-type to replace it")


def _number(text: str) -> int | float | None:
    try:
        value = json.loads(text)
    except ValueError:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return value
