"""Saying where a JSON text breaks state-ext's rules: a JSON Pointer and a line/column.

``strict_json`` decodes with the C scanner and its hooks, which say *that* a rule was
broken but not where; only then does ``first_problem`` walk the text token by token
(plain Python, slow, and only ever run on text that is being refused).
"""

from __future__ import annotations

import json
import re
import sys

_INF = float("inf")

_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[{}\[\]:,]|[^\s{}\[\]:,"]+|\s+', re.S)
_CONSTANTS = ("NaN", "Infinity", "-Infinity")


def first_problem(text: str, start: int = 0, end: int | None = None) -> str | None:
    """The first duplicate key, NaN/Infinity, or out-of-range number in document order,
    with its path (a JSON Pointer) and line/column; None if there is none.

    A plain loop over tokens, only run once the C scanner found that something is wrong.
    """
    end = len(text) if end is None else end
    stack: list[list] = []  # [kind, current key or index, keys seen, expecting a key]
    pos = start
    while pos < end:
        match = _TOKEN.match(text, pos, end)
        if match is None:
            return None
        token, pos = match.group(), match.end()
        first = token[0]
        if first in "{[":
            stack.append([first, None if first == "{" else 0, set(), first == "{"])
        elif first in "}]":
            if stack:
                stack.pop()
        elif first == ",":
            if stack and stack[-1][0] == "{":
                stack[-1][3] = True
            elif stack:
                stack[-1][1] += 1
        elif first == '"':
            top = stack[-1] if stack else None
            if top is not None and top[0] == "{" and top[3]:
                try:
                    key = json.loads(token)
                except ValueError:
                    return None
                if key in top[2]:
                    return (f"has a duplicate key {_short(repr(key), 40)} in the object at "
                            f"{_pointer(stack[:-1])} ({where(text, match.start())})")
                top[2].add(key)
                top[1], top[3] = key, False
        elif not first.isspace() and first != ":":
            problem = _number_problem(token)
            if problem:
                what, why = problem
                return f"has {what} at {_pointer(stack)} ({where(text, match.start())}): {why}"
    return None


def _number_problem(token: str) -> tuple[str, str] | None:
    """What is wrong with a scalar token, as (what, why), or None."""
    shown = _short(token, 24)
    if token in _CONSTANTS:
        return token, "JSON has no NaN or Infinity"
    if any(c in token for c in ".eE"):
        try:
            if float(token) in (_INF, -_INF):
                return f"the number {shown}", "too large for a 64-bit float"
        except ValueError:
            return None
    else:
        digits = len(token.lstrip("-"))
        limit = getattr(sys, "get_int_max_str_digits", lambda: 0)()
        if limit and digits > limit:
            return f"an integer of {digits} digits", f"at most {limit} digits"
    return None


def _pointer(stack: list[list]) -> str:
    """A JSON Pointer to the current value, shortened to fit one readable line."""
    parts = []
    for kind, key, _seen, _expecting in stack:
        if key is None:
            continue
        parts.append(_short(str(key).replace("~", "~0").replace("/", "~1"), 30)
                     if kind == "{" else str(key))
    if not parts:
        return "the top level"
    if len(parts) > 8:
        parts = [*parts[:4], f"...({len(parts) - 7} more)...", *parts[-3:]]
    return "/" + "/".join(parts)


def _short(text: str, size: int) -> str:
    return text if len(text) <= size else text[:size - 3] + "..."


def where(text: str, pos: int) -> str:
    """``line L, column C`` of a position, for messages."""
    line = text.count("\n", 0, pos) + 1
    column = pos - (text.rfind("\n", 0, pos) + 1) + 1
    return f"line {line}, column {column}"
