"""Rows of Meltano's ``state`` table as envelopes and back, and the chunks they travel in.

Kept apart from the backend because this is the hot path of every export, migrate and
snapshot (thousands of rows per second) and its rules are the JSON rules of
``strict_json``, not database rules: the common row costs one C-level JSON decode.
"""

from __future__ import annotations

import json
from datetime import datetime

from state_ext.errors import BackendError
from state_ext.model import Envelope
from state_ext.strict_json import (
    LIMIT_TEXT,
    MAX_DEPTH,
    MAX_STATE_BYTES,
    JsonRefused,
    as_text,
    check_value,
    loads_stored,
)

CHUNK = 500  # IDs per statement and per checked-write transaction
COLUMNS = ("state_id", "completed_state", "partial_state")


def chunks(items: list):
    """``items`` in consecutive slices of at most ``CHUNK``."""
    for start in range(0, len(items), CHUNK):
        yield items[start:start + CHUNK]


def table():
    """Meltano's ``state`` table, as much of it as state-ext reads and writes."""
    from sqlalchemy import Column, DateTime, MetaData, String, Table, Text

    return Table(
        "state", MetaData(),
        Column("state_id", String(900), primary_key=True),
        Column("partial_state", Text),
        Column("completed_state", Text),
        Column("updated_at", DateTime),
    )


def envelope(state_id: str, completed, partial, warn) -> Envelope:
    """The envelope of one row, under the size and JSON limits."""
    if type(completed) is str and type(partial) is str and (
        len(completed) + len(partial) > MAX_STATE_BYTES
    ):
        raise BackendError(
            f"systemdb state {state_id!r} is "
            f"{(len(completed) + len(partial)) / 2**20:.1f} MiB of JSON, more than the "
            f"{LIMIT_TEXT} limit per state"
        )
    completed = load_column(completed, state_id, "completed_state")
    partial = load_column(partial, state_id, "partial_state")
    if type(completed) is dict and type(partial) is dict:
        # the common case, thousands of times per export or migrate: no checks to run
        return Envelope(completed=completed, partial=partial)
    return Envelope.from_halves(completed, partial, where=f"systemdb state {state_id!r}",
                                warn=warn, checked=True)


def load_column(value, state_id: str, column: str):
    """A stored column as JSON, under state-ext's JSON rules (``strict_json``).

    Text Meltano wrote (``json.dumps``, ASCII, nothing around it) is decoded by one call
    of the C scanner once O(1)/``str.count`` bounds clear its depth and size
    (``loads_stored``); anything else is decoded and checked in full. A value the driver
    already decoded is checked as a value. ``None`` passes through.
    """
    if value is None:
        return None
    try:
        if type(value) is str:
            return loads_stored(value, max_depth=MAX_DEPTH)
        if isinstance(value, dict):
            check_value(value, max_depth=MAX_DEPTH)
            return value
        return loads_stored(as_text(value), max_depth=MAX_DEPTH)
    except JsonRefused as exc:
        if exc.syntax:
            raise BackendError(
                f"systemdb state {state_id!r}: {column} is not valid JSON ({exc.message})"
            ) from None
        raise BackendError(f"systemdb state {state_id!r}: {column} {exc.message}") from None


def row(state_id: str, envelope: Envelope, now: datetime) -> dict:
    """The row Meltano itself would write for ``envelope`` (its ``json.dumps``)."""
    return {
        "state_id": state_id,
        "completed_state": json.dumps(envelope.completed),
        "partial_state": json.dumps(envelope.partial),
        "updated_at": now,
    }


def undecodable(path: str | None, timeout: float) -> str | None:
    """Which SQLite state, column and byte is not valid UTF-8, or None if not found.

    sqlite3's own message quotes the whole value (megabytes, possibly) and names no
    state, so a second, read-only connection looks at the raw bytes. Error path only:
    reads stay on sqlite3's fast strict decoding.
    """
    import sqlite3

    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=timeout)
        try:
            con.text_factory = bytes
            rows = con.execute(f"SELECT {', '.join(COLUMNS)} FROM state ORDER BY state_id")
            for found in rows:
                for column, raw in zip(COLUMNS, found, strict=True):
                    try:
                        if isinstance(raw, bytes):
                            raw.decode("utf-8")
                    except UnicodeDecodeError as bad:
                        name = found[0].decode("utf-8", "backslashreplace")
                        return (f"systemdb state '{name}': {column} is not valid UTF-8 "
                                f"(byte 0x{raw[bad.start]:02x} at offset {bad.start})")
        finally:
            con.close()
    except sqlite3.Error:
        pass
    return None
