"""The JSON state-ext accepts, in input and in stores alike, and its limits.

Python's ``json`` accepts more than JSON: ``NaN``/``Infinity``, duplicate keys (the last
one silently wins), lone surrogates (``"\\ud800"``), ``1e999`` (read as infinity), and
nesting as deep as the recursion limit lets it go (a 100,000-deep document is a
``RecursionError`` traceback; 600 levels parse, then fail later in a copy or a merge).
No other JSON reader agrees on what such a state means, so state-ext refuses it, with
one line that says what and where, before anything is written.

The same rules apply to every state read from a store, so that ``export`` never writes
a document ``import`` refuses, and so that no stored state can crash a later step
(merge, copy, encode) halfway through a command or inside a worker thread.

Limits (see the README's input rules):

* ``MAX_DEPTH`` = 500 levels of objects and arrays in a state (``{}`` is 1 level). Every
  recursive step on a state (Python's C decoder and encoder, our merge and copy) takes
  one frame per level, and commands run under 100 frames deep, so a state at the limit
  leaves over 400 frames of Python's default recursion limit (1,000) to spare, in the
  main thread or a worker thread; it needs under 128 KiB of C stack (measured: the
  decoder and encoder at 900 levels work in a thread with a 128 KiB stack, the smallest
  common default). Meltano 4.4.1 itself reads and merges states of about 950 levels, so
  whatever state-ext stores, Meltano can read. The envelope adds one level, an import
  document two.
* ``MAX_STATE_BYTES`` = 16 MiB of JSON per state (UTF-8 bytes; the stored envelope, or
  the STATE given to ``set``/``merge``, or one entry of an import document). Singer
  states are kilobytes (thousands of partition bookmarks make a few MiB); 16 MiB bounds
  what one state can cost (about ten times that in memory once decoded) while staying
  far above any real one.

Stored text that Meltano wrote (``json.dumps``, ASCII) takes a fast path: O(1) or
``str.count`` bounds decide depth and size, and one C-scanner call with two hooks
(duplicate keys and ``NaN``) does the rest; the full checks run only when a bound fails.
"""

from __future__ import annotations

import json
import re
from itertools import accumulate
from json.decoder import JSONDecodeError
from typing import Any

from state_ext import json_where
from state_ext.errors import one_line
from state_ext.json_where import first_problem

MAX_DEPTH = 500
MAX_STATE_BYTES = 16 * 1024 * 1024
LIMIT_TEXT = "16 MiB"
# Callers pass max_depth = MAX_DEPTH plus the levels around a state (envelope, document).
TOO_DEEP = f"nests more than {MAX_DEPTH} levels deep (the limit for a state)"


class JsonRefused(ValueError):
    """Text or a value state-ext does not accept; ``message`` reads after a subject
    ("the state ...", "stored state ...") and is one line. ``syntax`` is True when the
    text is not JSON at all (callers keep Meltano's "Invalid JSON" wording for those)."""

    def __init__(self, message: str, *, syntax: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.syntax = syntax


class HookRefused(Exception):
    """Raised inside the C scanner (``STRICT_SCAN``) by a hook; the slow walk
    (``json_where.first_problem``) then says exactly where."""


def _pairs(pairs: list) -> dict:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise HookRefused("duplicate key")
    return result


def _constant(name: str):
    raise HookRefused(name)


def _float(text: str) -> float:
    value = float(text)
    if value in (_INF, -_INF):
        raise HookRefused(text)
    return value


_INF = float("inf")
_STRICT = json.JSONDecoder(object_pairs_hook=_pairs, parse_constant=_constant,
                           parse_float=_float)
STRICT_SCAN = _STRICT.scan_once
_STRICT_ENCODE = json.JSONEncoder(allow_nan=False, check_circular=False).encode


# -- entry points ------------------------------------------------------------------------
def loads(text: str | bytes, *, max_depth: int = MAX_DEPTH,
          max_bytes: int | None = MAX_STATE_BYTES) -> Any:
    """Decode JSON text under every rule; ``max_bytes=None`` for a whole import document."""
    text = as_text(text)
    if max_bytes is not None:
        check_size(utf8_size(text), max_bytes)
    check_depth(text, max_depth)
    try:
        value = _STRICT.decode(text)
    except RecursionError:  # pragma: no cover - check_depth comes first
        raise JsonRefused(TOO_DEEP) from None
    except JSONDecodeError as exc:
        raise JsonRefused(str(exc), syntax=True) from None
    except (HookRefused, ValueError) as exc:
        problem = first_problem(text) or one_line(exc, limit=None, first_line=True)
        raise JsonRefused(problem) from None
    check_surrogate_escapes(text)
    return value


def loads_stored(text: str, *, max_depth: int) -> Any:
    """``loads`` for text read from a store, fast for what Meltano writes.

    The C scanner is called once, with the duplicate-key and ``NaN`` hooks; whatever the
    cheap bounds cannot clear, or the single scan cannot take whole, goes through
    ``loads``, which accepts or refuses it exactly.
    """
    if type(text) is str and text.isascii() and len(text) <= MAX_STATE_BYTES and (
        len(text) <= 2 * max_depth or text.count("{") + text.count("[") <= max_depth
    ) and "\\ud" not in text and "\\uD" not in text:
        if text == "{}":  # an empty half: about half of what a system database holds
            return {}
        try:
            value, end = STRICT_SCAN(text, 0)
            if end == len(text):
                return value
        except (StopIteration, HookRefused, ValueError):
            pass
    return loads(text, max_depth=max_depth)


def check_value(value: Any, *, max_depth: int = MAX_DEPTH) -> None:
    """The same rules for a value some other code decoded (a plugin backend, a driver)."""
    if _depth_of(value, max_depth) > max_depth:
        raise JsonRefused(TOO_DEEP)
    try:
        text = _STRICT_ENCODE(value)
    except ValueError:
        raise JsonRefused("has NaN or Infinity: JSON has no NaN or Infinity") from None
    except TypeError as exc:
        reason = one_line(exc, limit=None, first_line=True)
        raise JsonRefused(f"has a value JSON cannot carry ({reason})") from None
    check_size(len(text), MAX_STATE_BYTES)
    check_surrogate_escapes(text, locate=False)


# -- the individual rules ----------------------------------------------------------------
_RAW_SURROGATE = re.compile("[\ud800-\udfff]")


def as_text(text: str | bytes) -> str:
    """Bytes decoded as strict UTF-8; a str checked for what invalid UTF-8 leaves in it."""
    if isinstance(text, (bytes, bytearray, memoryview)):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise JsonRefused(
                f"is not valid UTF-8 (byte 0x{exc.object[exc.start]:02x} at offset {exc.start})"
            ) from None
    elif not text.isascii():
        bad = _RAW_SURROGATE.search(text)
        if bad:  # what argv's surrogateescape makes of invalid UTF-8, or a lone surrogate
            code = ord(bad.group())
            what = (f"byte 0x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF
                    else f"lone surrogate U+{code:04X}")
            at = json_where.where(text, bad.start())
            raise JsonRefused(f"is not valid UTF-8 ({what} at {at})")
    if text.startswith("\ufeff"):
        raise JsonRefused("starts with a byte order mark (BOM), which JSON does not allow; "
                          "save it as UTF-8 without BOM", syntax=True)
    return text


def utf8_size(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def check_size(size: int, limit: int = MAX_STATE_BYTES) -> None:
    if size > limit:
        raise JsonRefused(f"is {_mib(size)} of JSON, more than the {LIMIT_TEXT} limit per state")


_ESCAPE_BYTES = re.compile(rb"\\.", re.S)
_NOT_STRUCTURE = bytes(b for b in range(256) if b not in b'"[]{}')
_TO_PARENS = bytes.maketrans(b"[{]}", b"(())")


def check_depth(text: str, max_depth: int) -> None:
    """Refuse nesting deeper than ``max_depth`` without any recursion.

    Cheap bounds first (a text of n characters nests at most n/2 levels, or at most as
    many levels as it has ``{`` and ``[``); otherwise strings and escapes are removed,
    brackets become parentheses, and each pass of ``replace("()", "")`` peels exactly one
    level off every tree, all at C speed; a few passes settle ordinary documents, and a
    prefix sum on what is left gives the rest.
    """
    if len(text) <= 2 * max_depth or text.count("{") + text.count("[") <= max_depth:
        return
    data = text.encode("utf-8", "surrogatepass")
    if b"\\" in data:
        data = _ESCAPE_BYTES.sub(b"", data)
    shape = data.translate(None, _NOT_STRUCTURE).replace(b'""', b"")
    if b'"' in shape:  # some strings hold brackets: drop every string's content
        shape = b"".join(shape.split(b'"')[::2])
    shape = shape.translate(_TO_PARENS)
    peeled = 0
    while shape and peeled < 8:
        shorter = shape.replace(b"()", b"")
        if len(shorter) == len(shape):
            break
        shape, peeled = shorter, peeled + 1
    if shape:
        steps = (1 if c == 40 else -1 for c in shape)
        peeled += max(0, max(accumulate(steps)))
    if peeled > max_depth:
        raise JsonRefused(TOO_DEEP)


_SURROGATE_ESCAPE = re.compile(
    r"\\u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}"  # a valid pair
    r"|\\u[dD][89a-fA-F][0-9a-fA-F]{2}"  # a lone one
    r"|\\\\"  # an escaped backslash, so that "\\ud800" is not read as an escape
)


def check_surrogate_escapes(text: str, *, locate: bool = True) -> None:
    """Refuse ``\\ud800``-style escapes that do not form a pair (not Unicode text);
    ``locate=False`` when ``text`` is our own encoding, whose positions mean nothing."""
    if "\\ud" not in text and "\\uD" not in text:
        return
    for match in _SURROGATE_ESCAPE.finditer(text):
        found = match.group()
        if len(found) == 6:
            where = f" at {json_where.where(text, match.start())}" if locate else ""
            raise JsonRefused(f"has a lone surrogate {found}{where}: not valid Unicode")


def _depth_of(value: Any, limit: int) -> int:
    """Nesting of a decoded value, without recursion; stops once past ``limit`` (so a
    cyclic structure ends as too deep instead of looping)."""
    deepest = 0
    pending = [(value, 1)]
    while pending:
        node, depth = pending.pop()
        if isinstance(node, dict):
            children = node.values()
        elif isinstance(node, (list, tuple)):
            children = node
        else:
            continue
        deepest = max(deepest, depth)
        if deepest > limit:
            break
        pending.extend((child, depth + 1) for child in children
                       if isinstance(child, (dict, list, tuple)))
    return deepest


def _mib(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MiB"
