"""An import document's top level, entry by entry, each entry under the JSON rules.

An import document is one object of ``state ID: envelope`` members. Its top level is
walked here rather than by the C scanner so that each entry has its own span (for the
size limit of one state, and for errors that name the entry) and so that a repeated
state ID can be reported; each value is decoded by ``strict_json``'s scanner and rules.
"""

from __future__ import annotations

from json.decoder import JSONDecodeError
from typing import Any

from state_ext.errors import one_line
from state_ext.json_where import first_problem
from state_ext.strict_json import (
    STRICT_SCAN,
    TOO_DEEP,
    HookRefused,
    JsonRefused,
    check_surrogate_escapes,
)


def object_members(text: str) -> list[tuple[str, Any, int, int, int]] | None:
    """The members of a top-level object as (key, value, value start, value end, key
    start), each value decoded under the rules; None when the text is not an object.

    Error wording and positions follow ``json``. ``check_depth`` must have run on ``text``.
    """
    from json.decoder import WHITESPACE, scanstring

    ws = WHITESPACE.match
    idx = ws(text, 0).end()
    if text[idx:idx + 1] != "{":
        return None
    members: list[tuple[str, Any, int, int, int]] = []
    idx = ws(text, idx + 1).end()
    closing = text[idx:idx + 1] == "}"
    try:
        while not closing:
            if text[idx:idx + 1] != '"':
                raise JSONDecodeError("Expecting property name enclosed in double quotes",
                                      text, idx)
            key_start = idx
            key, idx = scanstring(text, idx + 1)
            idx = ws(text, idx).end()
            if text[idx:idx + 1] != ":":
                raise JSONDecodeError("Expecting ':' delimiter", text, idx)
            start = idx = ws(text, idx + 1).end()
            try:
                value, idx = STRICT_SCAN(text, idx)
            except StopIteration as exc:
                raise JSONDecodeError("Expecting value", text, exc.value) from None
            except JSONDecodeError:
                raise
            except (HookRefused, ValueError) as exc:
                problem = first_problem(text, start) or one_line(exc, limit=None, first_line=True)
                raise JsonRefused(f"entry {key!r} {problem}") from None
            members.append((key, value, start, idx, key_start))
            idx = ws(text, idx).end()
            if text[idx:idx + 1] == ",":
                idx = ws(text, idx + 1).end()
            elif text[idx:idx + 1] == "}":
                closing = True
            else:
                raise JSONDecodeError("Expecting ',' delimiter", text, idx)
        idx = ws(text, idx + 1).end()
        if idx != len(text):
            raise JSONDecodeError("Extra data", text, idx)
    except JSONDecodeError as exc:
        raise JsonRefused(str(exc), syntax=True) from None
    except RecursionError:  # pragma: no cover - check_depth comes first
        raise JsonRefused(TOO_DEEP) from None
    check_surrogate_escapes(text)
    return members

