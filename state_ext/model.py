"""Meltano's state envelope, its deep merge, and its exact JSON.

A stored state is an envelope ``{"completed": {...}, "partial": {...}}``. What a tap
receives (the *effective* state) is ``partial`` deep-merged onto ``completed``. A
complete write replaces both halves; a partial write merges into ``partial``. The JSON
written is ``json.dumps`` with defaults, completed first, no trailing newline: byte for
byte what Meltano 4.4 writes, so both tools can share a store.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from typing import Any

from state_ext import json_where, strict_json
from state_ext.errors import BackendError, InvalidInputError
from state_ext.strict_json import MAX_DEPTH, MAX_STATE_BYTES, JsonRefused

SINGER_STATE_KEY = "singer_state"


def deep_merge(src: dict, dest: dict) -> dict:
    """Meltano's ``merge(src, dest)`` without mutating either side.

    Dicts recurse; every other value (lists, scalars, None) from ``src`` replaces the
    one in ``dest``; keys are never deleted. ``src`` wins.
    """
    result = copy_json(dest)
    _merge_into(src, result)
    return result


def _merge_into(src: dict, dest: dict) -> None:
    for key, value in src.items():
        if isinstance(value, dict):
            node = dest.get(key)
            if not isinstance(node, dict):
                node = dest[key] = {}
            _merge_into(value, node)
        else:
            dest[key] = copy_json(value)


def copy_json(value: Any) -> Any:
    """A deep copy of decoded JSON, one frame per level of nesting.

    ``copy.deepcopy`` takes two frames per level (and a memo): a state of 500 levels, the
    limit, would need 1,000 frames, Python's whole default recursion limit. JSON values
    are trees of dicts, lists and immutable scalars, so nothing else is needed.
    """
    kind = type(value)
    if kind is dict:
        result = {}
        for key, item in value.items():
            result[key] = copy_json(item) if type(item) in _CONTAINERS else item
        return result
    if kind is list:  # a loop, not a comprehension: on Python < 3.12 that is one more frame
        items = []
        for item in value:
            items.append(copy_json(item) if type(item) in _CONTAINERS else item)
        return items
    if kind in _SCALARS:
        return value
    return copy.deepcopy(value)


_CONTAINERS = (dict, list)
_SCALARS = (str, int, float, bool, type(None))


_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"))


def canonical_json(value: Any) -> str:
    """A stable text form used to compare states across backends (one shared encoder:
    ``json.dumps`` with options builds a new one per call, and migrate calls this a lot)."""
    return _CANONICAL.encode(value)


@dataclass
class Envelope:
    """One stored state: the completed half and the partial half, never None."""

    completed: dict = field(default_factory=dict)
    partial: dict = field(default_factory=dict)

    @classmethod
    def complete(cls, state: dict) -> Envelope:
        """What a full ``set`` (or a run with the overwrite strategy) stores."""
        return cls(completed=copy_json(state), partial={})

    def effective(self) -> dict:
        """What ``meltano state get`` prints and what the tap receives."""
        return deep_merge(self.partial, self.completed)

    def merged_with_partial(self, new_partial: dict) -> Envelope:
        """A partial write: ``new_partial`` merged onto our partial, completed kept."""
        return Envelope(
            completed=copy_json(self.completed),
            partial=deep_merge(new_partial, self.partial),
        )

    def to_dict(self) -> dict:
        return {"completed": self.completed, "partial": self.partial}

    def to_json(self) -> str:
        """Meltano's ``MeltanoState.json()``: defaults, completed first, no newline."""
        return json.dumps(self.to_dict())

    def canonical(self) -> str:
        return canonical_json(self.to_dict())

    def is_empty(self) -> bool:
        return not self.completed and not self.partial

    def check_stored_size(self, state_id: str) -> None:
        """Refuse, before any write, a state whose stored JSON would pass the size limit
        (a merge can grow a state; ``json.dumps`` escapes non-ASCII text, up to 6x)."""
        size = len(self.to_json())
        if size > MAX_STATE_BYTES:
            raise InvalidInputError(
                f"State {state_id!r} would be {size / 2**20:.1f} MiB of JSON when stored, "
                f"more than the {strict_json.LIMIT_TEXT} limit per state; nothing was written"
            )

    @classmethod
    def from_halves(cls, completed: Any, partial: Any, *, where: str, warn=None,
                    checked: bool = False) -> Envelope:
        """Build from stored halves: missing or legacy ``null`` halves read as ``{}``.

        Meltano itself cannot read a ``null`` half (it crashes), so we say so once
        through ``warn`` and carry on with an empty half. Anything that is not an
        object is corruption and stops the command. Halves decoded by someone else (a
        plugin backend) are held to the same rules as JSON text we decode ourselves,
        unless ``checked`` says the text they came from already was.
        """
        halves = []
        for name, half in (("completed", completed), ("partial", partial)):
            if half is None:
                if warn is not None:
                    warn(f"{where}: '{name}' is null (Meltano cannot read it); reading it as {{}}")
                half = {}
            if not isinstance(half, dict):
                raise BackendError(
                    f"{where}: '{name}' is a {type(half).__name__}, not a JSON object"
                )
            if not checked:
                try:
                    strict_json.check_value(half, max_depth=MAX_DEPTH)
                except JsonRefused as exc:
                    raise BackendError(f"{where}: '{name}' {exc.message}") from None
            halves.append(half)
        return cls(completed=halves[0], partial=halves[1])

    @classmethod
    def from_stored_json(cls, text: str | bytes, *, where: str, warn=None) -> Envelope:
        """Parse a stored envelope (file or object store) the way Meltano reads it.

        Keys other than completed/partial are ignored, as in Meltano, so a bare
        ``{"singer_state": ...}`` file reads as an empty state.
        """
        try:
            data = strict_json.loads_stored(strict_json.as_text(text), max_depth=MAX_DEPTH + 1)
        except JsonRefused as exc:
            if exc.syntax:
                raise BackendError(f"{where}: stored state is not valid JSON ({exc})") from None
            raise BackendError(f"{where}: stored state {exc.message}") from None
        if not isinstance(data, dict):
            raise BackendError(f"{where}: stored state is a {type(data).__name__}, not an object")
        return cls.from_halves(
            data.get("completed", {}), data.get("partial", {}), where=where, warn=warn,
            checked=True,
        )


def parse_state_argument(text: str | bytes, *, validate: bool) -> dict:
    """Parse a STATE given by the user for ``set``/``merge``, as Meltano validates it,
    and under state-ext's JSON rules (``strict_json``: nesting, size, NaN, duplicate
    keys, UTF-8)."""
    try:
        value = strict_json.loads(text, max_depth=MAX_DEPTH, max_bytes=MAX_STATE_BYTES)
    except JsonRefused as exc:
        if exc.syntax:
            raise InvalidInputError(f"Invalid JSON provided: {exc.message}") from None
        raise InvalidInputError(f"Invalid state: the JSON {exc.message}") from None
    if not isinstance(value, dict):
        raise InvalidInputError(
            f"Invalid state format: expected a JSON object, got {_json_type(value)}"
        )
    if validate:
        validate_singer_state(value)
    return value


def validate_singer_state(value: dict) -> None:
    """Meltano's ``validate_state``: a top-level ``singer_state`` key is required.

    Beyond Meltano, its value must be an object or null: a tap reads it as its STATE
    message's value, and an array, string or number there crashes the next run instead
    of this command. (``null`` reads as no bookmarks, so it stays allowed.)
    """
    if SINGER_STATE_KEY not in value:
        raise InvalidInputError(
            "Invalid state format: singer_state not found in top level of provided state. "
            "Use --no-validate to bypass this check."
        )
    singer_state = value[SINGER_STATE_KEY]
    if singer_state is not None and not isinstance(singer_state, dict):
        raise InvalidInputError(
            f"Invalid state format: singer_state is {_json_type(singer_state)}, not an object. "
            "Use --no-validate to bypass this check."
        )


def parse_export_document(text: str | bytes, *, warn=None) -> dict[str, Envelope]:
    """Parse the document of ``meltano state export`` (and ours) into envelopes.

    The whole document is checked before anything is written, so that a bad entry
    leaves every store untouched: each entry under the JSON rules and the size limit
    of one state, no state ID twice.
    """
    from state_ext import document_entries  # import documents only
    from state_ext.state_ids import state_id_problem

    try:
        text = strict_json.as_text(text)
        strict_json.check_depth(text, MAX_DEPTH + 2)
        members = document_entries.object_members(text)
        data = strict_json.loads(text, max_depth=MAX_DEPTH + 2, max_bytes=None) \
            if members is None else None
    except JsonRefused as exc:
        if exc.syntax:
            raise InvalidInputError(f"Invalid JSON: {exc.message}") from None
        subject = "" if exc.message.startswith("entry ") else "the document "
        raise InvalidInputError(f"Invalid import document: {subject}{exc.message}") from None
    if members is None:
        raise InvalidInputError(
            f"Invalid import document: expected a JSON object, got {_json_type(data)}"
        )
    states: dict[str, Envelope] = {}
    for state_id, entry, start, end, key_start in members:
        problem = state_id_problem(state_id)
        if problem:
            raise InvalidInputError(f"Invalid import document: state ID {state_id!r}: {problem}")
        if state_id in states:
            raise InvalidInputError(
                f"Invalid import document: state ID {state_id!r} appears twice "
                f"(again at {json_where.where(text, key_start)})"
            )
        if not isinstance(entry, dict):
            raise InvalidInputError(
                f"Invalid import document: entry {state_id!r} is {_json_type(entry)}, "
                "not an object with 'completed' and 'partial'"
            )
        unknown = sorted(set(entry) - {"completed", "partial"})
        if unknown:
            raise InvalidInputError(
                f"Invalid import document: entry {state_id!r} has unexpected key "
                f"{unknown[0]!r} (expected 'completed' and 'partial')"
            )
        try:
            envelope = Envelope.from_halves(
                entry.get("completed", {}), entry.get("partial", {}),
                where=f"import entry {state_id!r}", warn=warn, checked=True,
            )
        except BackendError as exc:
            raise InvalidInputError(f"Invalid import document: {exc}") from None
        if (end - start) * 12 + 64 > MAX_STATE_BYTES:  # escaping grows text at most 12x
            size = len(envelope.to_json())
            if size > MAX_STATE_BYTES:
                raise InvalidInputError(
                    f"Invalid import document: entry {state_id!r} is {size / 2**20:.1f} MiB "
                    f"of JSON when stored, more than the {strict_json.LIMIT_TEXT} limit per state"
                )
        states[state_id] = envelope
    return states


def _json_type(value: Any) -> str:
    return {
        list: "an array", str: "a string", bool: "a boolean", int: "a number",
        float: "a number", type(None): "null", dict: "an object",
    }.get(type(value), type(value).__name__)
