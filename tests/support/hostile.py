"""A corpus of hostile JSON for state: each entry is a STATE (what ``set``/``merge`` take)
that state-ext must refuse, as bytes, with a lower-case fragment its error line must hold.

``import_doc`` embeds a STATE as the completed half of one entry among good ones; cases
about the document's own top level (BOM, trailing data, emptiness) give their own document.
The limits are those of ``state_ext.strict_json``: 500 levels, 16 MiB, Python's
4300-digit integers.
"""

from __future__ import annotations

from dataclasses import dataclass

LIMIT = 500
GOOD_ENVELOPE = b'{"completed": {"singer_state": {"good": 1}}, "partial": {}}'

DEEP = "more than 500 levels"
NAN = "json has no nan or infinity"
FLOAT = "too large for a 64-bit float"
DIGITS = "digits"
DUPLICATE = "duplicate key"
SURROGATE = "surrogate"
UTF8 = "utf-8"
SYNTAX = "invalid json"
NOT_OBJECT = "object"


@dataclass(frozen=True)
class Hostile:
    name: str
    state: bytes
    fragment: str
    doc: bytes | None = None  # the import document; None: the state embedded in one
    import_fragment: str | None = None  # when import words it differently
    via_import: bool = True  # False: only set/merge check it (import follows Meltano)

    def import_doc(self) -> bytes:
        if self.doc is not None:
            return self.doc
        return (b'{"keep": ' + GOOD_ENVELOPE + b', "target": {"completed": ' + self.state
                + b', "partial": {}}, "fresh": ' + GOOD_ENVELOPE + b"}")


def wrap(inner: bytes) -> bytes:
    """``inner`` as the value of a stream bookmark: three levels above it."""
    return b'{"singer_state": {"bookmarks": {"s": ' + inner + b"}}}"


def objects(depth: int, leaf: bytes = b"1") -> bytes:
    """``depth`` nested objects."""
    return b'{"a": ' * depth + leaf + b"}" * depth


def arrays(depth: int, leaf: bytes = b"") -> bytes:
    return b"[" * depth + leaf + b"]" * depth


def mixed(depth: int) -> bytes:
    opening, closing = [], []
    for level in range(depth):
        if level % 2:
            opening.append(b"[")
            closing.append(b"]")
        else:
            opening.append(b'{"m": ')
            closing.append(b"}")
    return b"".join(opening) + b"0" + b"".join(reversed(closing))


def state_of_depth(depth: int, shape=objects) -> bytes:
    """A valid state nesting exactly ``depth`` levels in all: the top object, the
    singer_state object, then ``shape`` under its key "k"."""
    return b'{"singer_state": {"k": ' + shape(depth - 2) + b"}}"


GOOD_STATE = b'{"singer_state": {"bookmarks": {"s": {"v": 1}}}}'

CORPUS: list[Hostile] = [
    # -- nesting: just over the limit, far over, every shape, and unclosed ----------------
    Hostile("deep-objects-501", state_of_depth(LIMIT + 1), DEEP),
    Hostile("deep-arrays-501", state_of_depth(LIMIT + 1, arrays), DEEP),
    Hostile("deep-mixed-501", state_of_depth(LIMIT + 1, mixed), DEEP),
    Hostile("deep-objects-900", state_of_depth(900), DEEP),
    Hostile("deep-arrays-1000", state_of_depth(1000, arrays), DEEP),
    Hostile("deep-objects-5000", state_of_depth(5000), DEEP),
    Hostile("deep-arrays-5000", state_of_depth(5000, arrays), DEEP),
    Hostile("deep-arrays-100000", state_of_depth(100_000, arrays), DEEP),
    Hostile("deep-objects-100000", state_of_depth(100_000), DEEP),
    Hostile("deep-mixed-100000", state_of_depth(100_000, mixed), DEEP),
    Hostile("deep-unclosed-arrays", b'{"singer_state": ' + b"[" * 200_000, DEEP),
    Hostile("deep-unclosed-objects", b'{"singer_state": ' + b'{"a":' * 50_000, DEEP),
    Hostile("deep-after-wide", b'{"singer_state": {"w": ['
            + b", ".join(b'{"i": %d}' % i for i in range(3000)) + b"], \"d\": "
            + arrays(LIMIT) + b"}}", DEEP),
    Hostile("deep-in-second-stream", b'{"singer_state": {"bookmarks": {"s": {"v": 1}, "t": '
            + arrays(LIMIT - 2) + b"}}}", DEEP),
    Hostile("deep-with-brackets-in-strings", b'{"singer_state": {"k": "]]]]}}}}", "d": '
            + arrays(LIMIT) + b"}}", DEEP),
    Hostile("deep-with-escaped-quotes", b'{"singer_state": {"k": "\\"[[\\"", "d": '
            + arrays(LIMIT) + b"}}", DEEP),
    # -- NaN and infinities, as values, in arrays, deep, and Python's spellings -----------
    Hostile("nan", wrap(b'{"v": NaN}'), NAN),
    Hostile("infinity", wrap(b'{"v": Infinity}'), NAN),
    Hostile("minus-infinity", wrap(b'{"v": -Infinity}'), NAN),
    Hostile("nan-in-array", wrap(b'{"v": [1, 2, NaN]}'), NAN),
    Hostile("nan-deep", wrap(objects(300, b"NaN")), NAN),
    Hostile("nan-top-level-value", b'{"singer_state": {}, "x": NaN}', NAN),
    Hostile("nan-lowercase", wrap(b'{"v": nan}'), SYNTAX),
    Hostile("nan-negative", wrap(b'{"v": -NaN}'), SYNTAX),
    Hostile("infinity-plus", wrap(b'{"v": +Infinity}'), SYNTAX),
    Hostile("infinity-lowercase", wrap(b'{"v": inf}'), SYNTAX),
    # -- numbers Python would turn into infinity, or cannot convert ----------------------
    Hostile("float-1e999", wrap(b'{"v": 1e999}'), FLOAT),
    Hostile("float-minus-1e999", wrap(b'{"v": -1e999}'), FLOAT),
    Hostile("float-1E400", wrap(b'{"v": 1E400}'), FLOAT),
    Hostile("float-just-above-max", wrap(b'{"v": 1.7976931348623159e308}'), FLOAT),
    Hostile("float-0.1e310", wrap(b'{"v": 0.1e310}'), FLOAT),
    Hostile("float-400-digits", wrap(b'{"v": ' + b"9" * 400 + b".0}"), FLOAT),
    Hostile("int-4301-digits", wrap(b'{"v": ' + b"1" * 4301 + b"}"), DIGITS),
    Hostile("int-5000-digits", wrap(b'{"v": ' + b"7" * 5000 + b"}"), DIGITS),
    Hostile("int-negative-100000-digits", wrap(b'{"v": -' + b"3" * 100_000 + b"}"), DIGITS),
    # -- duplicate keys, at every level ----------------------------------------------------
    Hostile("duplicate-singer-state", b'{"singer_state": {}, "singer_state": {"a": 1}}',
            DUPLICATE),
    Hostile("duplicate-bookmark", b'{"singer_state": {"bookmarks": {"s": 1, "s": 2}}}',
            DUPLICATE),
    Hostile("duplicate-in-array-item", wrap(b'[{"a": 1}, {"b": 1, "b": 1}]'), DUPLICATE),
    Hostile("duplicate-same-value", wrap(b'{"v": 1, "v": 1}'), DUPLICATE),
    Hostile("duplicate-escaped-spelling", wrap(b'{"a": 1, "\\u0061": 2}'), DUPLICATE),
    Hostile("duplicate-empty-key", wrap(b'{"": 1, "": 2}'), DUPLICATE),
    Hostile("duplicate-three-times", wrap(b'{"k": 1, "k": 2, "k": 3}'), DUPLICATE),
    Hostile("duplicate-deep", wrap(objects(400, b'{"x": 1, "x": 2}')), DUPLICATE),
    Hostile("duplicate-far-apart", wrap(b'{"k": 0, '
            + b", ".join(b'"f%d": %d' % (i, i) for i in range(2000)) + b', "k": 1}'),
            DUPLICATE),
    # -- surrogates and bytes that are not UTF-8 ------------------------------------------
    Hostile("surrogate-high", wrap(b'"\\ud800"'), SURROGATE),
    Hostile("surrogate-low", wrap(b'"\\udfff"'), SURROGATE),
    Hostile("surrogate-high-high", wrap(b'"\\ud800\\ud800"'), SURROGATE),
    Hostile("surrogate-low-then-high", wrap(b'"\\udc00\\ud800"'), SURROGATE),
    Hostile("surrogate-uppercase", wrap(b'"\\uD83D"'), SURROGATE),
    Hostile("surrogate-in-key", wrap(b'{"\\udc80": 1}'), SURROGATE),
    Hostile("surrogate-after-escaped-backslash", wrap(b'"\\\\\\ud800"'), SURROGATE),
    Hostile("utf8-invalid-byte", wrap(b'"\xff"'), UTF8),
    Hostile("utf8-overlong-slash", wrap(b'"\xc0\xaf"'), UTF8),
    Hostile("utf8-encoded-surrogate", wrap(b'"\xed\xa0\x80"'), UTF8),
    Hostile("utf8-truncated-sequence", wrap(b'"\xe2\x82"'), UTF8),
    Hostile("utf8-latin1-text", wrap(b'"caf\xe9"'), UTF8),
    Hostile("utf16-le-with-bom", "\ufeff".encode("utf-16-le")
            + GOOD_STATE.decode().encode("utf-16-le"), UTF8,
            doc=b"\xff\xfe" + b'{"a": {}}'.decode().encode("utf-16-le")),
    # -- byte order marks, trailing data, emptiness ---------------------------------------
    Hostile("bom-utf8", b"\xef\xbb\xbf" + GOOD_STATE, "byte order mark",
            doc=b'\xef\xbb\xbf{"a": ' + GOOD_ENVELOPE + b"}"),
    Hostile("bom-in-the-middle", b'{"singer_state": \xef\xbb\xbf{}}', SYNTAX),
    Hostile("trailing-garbage", GOOD_STATE + b" x", SYNTAX,
            doc=b'{"a": ' + GOOD_ENVELOPE + b"} x"),
    Hostile("trailing-second-document", GOOD_STATE + GOOD_STATE, SYNTAX,
            doc=b'{"a": ' + GOOD_ENVELOPE + b'}{"b": {}}'),
    Hostile("trailing-nul", GOOD_STATE + b"\x00", SYNTAX,
            doc=b'{"a": ' + GOOD_ENVELOPE + b"}\x00"),
    Hostile("trailing-comma", GOOD_STATE[:-1] + b", }", SYNTAX,
            doc=b'{"a": ' + GOOD_ENVELOPE + b", }"),
    Hostile("empty", b"", SYNTAX, doc=b""),
    Hostile("whitespace-only", b"  \n\t \r\n", SYNTAX, doc=b" \n "),
    Hostile("nul-only", b"\x00", SYNTAX, doc=b"\x00"),
    Hostile("control-char-in-string", wrap(b'"a\x01b"'), SYNTAX),
    Hostile("single-quotes", b"{'singer_state': {}}", SYNTAX, doc=b"{'a': {}}"),
    # -- wrong shapes at the top --------------------------------------------------------
    Hostile("top-level-array", b"[]", NOT_OBJECT, doc=b"[]"),
    Hostile("top-level-string", b'"singer_state"', NOT_OBJECT, doc=b'"x"'),
    Hostile("top-level-number", b"1", NOT_OBJECT, doc=b"1"),
    Hostile("top-level-null", b"null", NOT_OBJECT, doc=b"null"),
    Hostile("top-level-true", b"true", NOT_OBJECT, doc=b"true"),
    # singer_state of the wrong type: Meltano's import does not look inside halves, so
    # only set/merge refuse it (an import of such a document is Meltano's format).
    Hostile("singer-state-array", b'{"singer_state": []}', "singer_state is", via_import=False),
    Hostile("singer-state-string", b'{"singer_state": "x"}', "singer_state is",
            via_import=False),
    Hostile("singer-state-number", b'{"singer_state": 0}', "singer_state is", via_import=False),
    Hostile("singer-state-true", b'{"singer_state": true}', "singer_state is",
            via_import=False),
]

# Texts close to the rules that must be accepted, exactly as json reads them.
ACCEPTED: list[tuple[str, bytes]] = [
    ("objects-at-the-limit", state_of_depth(LIMIT)),
    ("arrays-at-the-limit", state_of_depth(LIMIT, arrays)),
    ("mixed-at-the-limit", state_of_depth(LIMIT, mixed)),
    ("brackets-in-a-long-string", wrap(b'"' + b"[" * 100_000 + b"{" * 1000 + b'"')),
    ("escaped-backslash-then-ud800", wrap(b'"\\\\ud800"')),
    ("surrogate-pair", wrap(b'"\\ud83d\\ude00"')),
    ("raw-emoji-and-accents", wrap('"😀 café"'.encode())),
    ("int-4300-digits", wrap(b"1" * 4300)),
    ("float-max", wrap(b"1.7976931348623157e308")),
    ("float-underflow", wrap(b"1e-999")),
    ("same-key-in-sibling-objects", wrap(b'[{"k": 1}, {"k": 2}]')),
    ("keys-that-look-like-duplicates", wrap(b'{"k": 1, "K": 2, "k ": 3}')),
    ("nan-and-infinity-as-strings", wrap(b'["NaN", "Infinity", "-Infinity"]')),
    ("singer-state-null", b'{"singer_state": null}'),
]
