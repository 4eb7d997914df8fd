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

from state_ext.errors import BackendError, InvalidInputError

SINGER_STATE_KEY = "singer_state"


def deep_merge(src: dict, dest: dict) -> dict:
    """Meltano's ``merge(src, dest)`` without mutating either side.

    Dicts recurse; every other value (lists, scalars, None) from ``src`` replaces the
    one in ``dest``; keys are never deleted. ``src`` wins.
    """
    result = copy.deepcopy(dest)
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
            dest[key] = copy.deepcopy(value)


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
        return cls(completed=copy.deepcopy(state), partial={})

    def effective(self) -> dict:
        """What ``meltano state get`` prints and what the tap receives."""
        return deep_merge(self.partial, self.completed)

    def merged_with_partial(self, new_partial: dict) -> Envelope:
        """A partial write: ``new_partial`` merged onto our partial, completed kept."""
        return Envelope(
            completed=copy.deepcopy(self.completed),
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

    @classmethod
    def from_halves(cls, completed: Any, partial: Any, *, where: str, warn=None) -> Envelope:
        """Build from stored halves: missing or legacy ``null`` halves read as ``{}``.

        Meltano itself cannot read a ``null`` half (it crashes), so we say so once
        through ``warn`` and carry on with an empty half. Anything that is not an
        object is corruption and stops the command.
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
            halves.append(half)
        return cls(completed=halves[0], partial=halves[1])

    @classmethod
    def from_stored_json(cls, text: str | bytes, *, where: str, warn=None) -> Envelope:
        """Parse a stored envelope (file or object store) the way Meltano reads it.

        Keys other than completed/partial are ignored, as in Meltano, so a bare
        ``{"singer_state": ...}`` file reads as an empty state.
        """
        try:
            data = json.loads(text)
        except (ValueError, UnicodeDecodeError) as exc:
            raise BackendError(f"{where}: stored state is not valid JSON ({exc})") from None
        if not isinstance(data, dict):
            raise BackendError(f"{where}: stored state is a {type(data).__name__}, not an object")
        return cls.from_halves(
            data.get("completed", {}), data.get("partial", {}), where=where, warn=warn
        )


def parse_state_argument(text: str, *, validate: bool) -> dict:
    """Parse a STATE given by the user for ``set``/``merge``, as Meltano validates it."""
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise InvalidInputError(f"Invalid JSON provided: {exc}") from None
    if not isinstance(value, dict):
        raise InvalidInputError(
            f"Invalid state format: expected a JSON object, got {_json_type(value)}"
        )
    if validate:
        validate_singer_state(value)
    return value


def validate_singer_state(value: dict) -> None:
    """Meltano's ``validate_state``: a top-level ``singer_state`` key is required."""
    if SINGER_STATE_KEY not in value:
        raise InvalidInputError(
            "Invalid state format: singer_state not found in top level of provided state. "
            "Use --no-validate to bypass this check."
        )


def parse_export_document(text: str, *, warn=None) -> dict[str, Envelope]:
    """Parse the document of ``meltano state export`` (and ours) into envelopes.

    The whole document is checked before anything is written, so that a bad entry
    leaves every store untouched.
    """
    from state_ext.state_ids import state_id_problem

    try:
        data = json.loads(text)
    except ValueError as exc:
        raise InvalidInputError(f"Invalid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidInputError(
            f"Invalid import document: expected a JSON object, got {_json_type(data)}"
        )
    states: dict[str, Envelope] = {}
    for state_id, entry in data.items():
        problem = state_id_problem(state_id)
        if problem:
            raise InvalidInputError(f"Invalid import document: state ID {state_id!r}: {problem}")
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
            states[state_id] = Envelope.from_halves(
                entry.get("completed", {}), entry.get("partial", {}),
                where=f"import entry {state_id!r}", warn=warn,
            )
        except BackendError as exc:
            raise InvalidInputError(f"Invalid import document: {exc}") from None
    return states


def _json_type(value: Any) -> str:
    return {
        list: "an array", str: "a string", bool: "a boolean", int: "a number",
        float: "a number", type(None): "null", dict: "an object",
    }.get(type(value), type(value).__name__)
