"""The state envelope, Meltano's deep merge and the exact JSON (in-process).

What is checked is Meltano 4.4.1's own model (MeltanoState's two halves and its deep
merge, `state set` validation), as state_ext/model.py's docstring describes it.
"""

from __future__ import annotations

import copy
import json

import pytest

from state_ext.errors import BackendError, InvalidInputError, InvalidStateIdError
from state_ext.model import (
    Envelope,
    deep_merge,
    parse_export_document,
    parse_state_argument,
    validate_singer_state,
)
from state_ext.state_ids import (
    MAX_STATE_ID_LENGTH,
    matches,
    state_id_problem,
    validate_state_id,
)

# -- deep_merge ------------------------------------------------------------------------


def test_deep_merge_recurses_into_dicts_and_src_wins():
    dest = {"a": {"x": 1, "y": {"p": 1}}, "keep": 1}
    src = {"a": {"y": {"q": 2}, "z": 3}, "keep": 2}
    assert deep_merge(src, dest) == {"a": {"x": 1, "y": {"p": 1, "q": 2}, "z": 3}, "keep": 2}


@pytest.mark.parametrize(
    "src_value",
    [[9], [], "s", 0, 1.5, True, False, None],
    ids=["list", "empty-list", "str", "zero", "float", "true", "false", "none"],
)
def test_deep_merge_non_dicts_replace(src_value):
    dest = {"k": {"nested": [1, 2]}, "other": 1}
    assert deep_merge({"k": src_value}, dest) == {"k": src_value, "other": 1}


def test_deep_merge_lists_are_replaced_not_concatenated():
    assert deep_merge({"l": [3]}, {"l": [1, 2]}) == {"l": [3]}


def test_deep_merge_none_replaces_a_value_but_never_deletes_the_key():
    merged = deep_merge({"a": None}, {"a": {"x": 1}, "b": 2})
    assert merged == {"a": None, "b": 2}
    assert "a" in merged


def test_deep_merge_never_deletes_keys():
    dest = {"a": 1, "b": {"c": 2, "d": 3}}
    merged = deep_merge({}, dest)
    assert merged == dest
    merged = deep_merge({"b": {}}, dest)
    assert merged == dest


def test_deep_merge_dict_onto_scalar_becomes_the_dict():
    assert deep_merge({"a": {"x": 1}}, {"a": 5}) == {"a": {"x": 1}}


def test_deep_merge_empty_dict_creates_missing_key():
    # Meltano: dest.setdefault(key, {}) then recurse -> the key appears with {}
    assert deep_merge({"a": {}}, {}) == {"a": {}}


def test_deep_merge_does_not_mutate_inputs():
    src = {"a": {"l": [1, {"deep": 1}]}, "n": None}
    dest = {"a": {"x": {"y": 1}, "l": [0]}, "b": [1]}
    src_before, dest_before = copy.deepcopy(src), copy.deepcopy(dest)
    merged = deep_merge(src, dest)
    assert src == src_before
    assert dest == dest_before
    # the result shares no mutable structure with the inputs
    merged["a"]["x"]["y"] = 99
    merged["a"]["l"][1]["deep"] = 99
    merged["b"].append(2)
    assert src == src_before
    assert dest == dest_before


def test_meltano_worked_example():
    """Reference §1.1: completed + merge -> `state get` output."""
    completed = {"singer_state": {"bookmarks": {"s1": {"k": 1}}}}
    partial = {"singer_state": {"bookmarks": {"s2": {"k": 2}, "s1": {"j": 5}}}}
    expected = {"singer_state": {"bookmarks": {"s1": {"k": 1, "j": 5}, "s2": {"k": 2}}}}
    assert deep_merge(partial, completed) == expected
    env = Envelope(completed=completed, partial=partial)
    assert env.effective() == expected
    # and through the write path: a complete set followed by a partial merge
    env = Envelope.complete(completed).merged_with_partial(partial)
    assert env.effective() == expected
    assert json.dumps(env.effective(), separators=(",", ":")) == (
        '{"singer_state":{"bookmarks":{"s1":{"k":1,"j":5},"s2":{"k":2}}}}'
    )


# -- Envelope --------------------------------------------------------------------------


def test_to_json_is_byte_identical_to_meltano():
    env = Envelope.complete({"singer_state": {"bookmarks": {"s1": {"k": 1}}}})
    assert env.to_json() == (
        '{"completed": {"singer_state": {"bookmarks": {"s1": {"k": 1}}}}, "partial": {}}'
    )


def test_to_json_completed_first_and_no_trailing_newline():
    env = Envelope(partial={"singer_state": {"b": 2}}, completed={"singer_state": {"a": 1}})
    text = env.to_json()
    assert text.startswith('{"completed": ')
    assert text.index('"completed"') < text.index('"partial"')
    assert not text.endswith("\n")
    assert text == json.dumps(
        {"completed": {"singer_state": {"a": 1}}, "partial": {"singer_state": {"b": 2}}}
    )


def test_to_json_empty_envelope():
    assert Envelope().to_json() == '{"completed": {}, "partial": {}}'


def test_to_json_escapes_non_ascii_like_meltano():
    env = Envelope.complete({"singer_state": {"ü-ñ": "日本", "emoji": "😀"}})
    text = env.to_json()
    assert text == (
        '{"completed": {"singer_state": {"\\u00fc-\\u00f1": "\\u65e5\\u672c", '
        '"emoji": "\\ud83d\\ude00"}}, "partial": {}}'
    )
    assert text.isascii()
    assert json.loads(text)["completed"]["singer_state"]["ü-ñ"] == "日本"


def test_to_json_keeps_insertion_order_not_sorted():
    env = Envelope.complete({"singer_state": {"z": 1, "a": 2}})
    assert env.to_json() == '{"completed": {"singer_state": {"z": 1, "a": 2}}, "partial": {}}'


def test_complete_sets_partial_empty_and_copies():
    state = {"singer_state": {"x": [1]}}
    env = Envelope.complete(state)
    assert env.completed == state and env.partial == {}
    state["singer_state"]["x"].append(2)
    assert env.completed == {"singer_state": {"x": [1]}}


def test_effective_partial_wins_and_does_not_mutate():
    env = Envelope(
        completed={"singer_state": {"a": 1, "b": {"c": 1}}},
        partial={"singer_state": {"a": 2, "b": {"d": 2}}},
    )
    before = copy.deepcopy(env.to_dict())
    eff = env.effective()
    assert eff == {"singer_state": {"a": 2, "b": {"c": 1, "d": 2}}}
    eff["singer_state"]["b"]["c"] = 99
    assert env.to_dict() == before
    assert env.effective() == {"singer_state": {"a": 2, "b": {"c": 1, "d": 2}}}


def test_effective_of_empty_and_partial_only():
    assert Envelope().effective() == {}
    assert Envelope(partial={"singer_state": {"x": 1}}).effective() == {"singer_state": {"x": 1}}


def test_merged_with_partial_merges_into_partial_and_keeps_completed():
    env = Envelope(
        completed={"singer_state": {"s1": {"k": 1}}},
        partial={"singer_state": {"s2": {"k": 2, "l": [1, 2]}}},
    )
    before = copy.deepcopy(env.to_dict())
    new = {"singer_state": {"s2": {"l": [3]}, "s3": {"k": 3}}}
    new_before = copy.deepcopy(new)
    merged = env.merged_with_partial(new)
    assert merged.completed == {"singer_state": {"s1": {"k": 1}}}
    assert merged.partial == {"singer_state": {"s2": {"k": 2, "l": [3]}, "s3": {"k": 3}}}
    assert env.to_dict() == before  # the original is unchanged
    assert new == new_before
    assert merged.effective() == {
        "singer_state": {"s1": {"k": 1}, "s2": {"k": 2, "l": [3]}, "s3": {"k": 3}}
    }
    # the new envelope does not share the completed half with the old one
    merged.completed["singer_state"]["s1"]["k"] = 7
    assert env.completed == {"singer_state": {"s1": {"k": 1}}}


def test_merged_with_partial_on_empty_envelope():
    merged = Envelope().merged_with_partial({"singer_state": {"x": 1}})
    assert merged.to_dict() == {"completed": {}, "partial": {"singer_state": {"x": 1}}}


def test_to_dict_order():
    assert list(Envelope().to_dict()) == ["completed", "partial"]


# -- reading stored envelopes -----------------------------------------------------------


@pytest.mark.parametrize("null_half", ["completed", "partial"])
def test_null_half_reads_as_empty_and_warns(null_half):
    warnings = []
    halves = {"completed": {"singer_state": {"a": 1}}, "partial": {"singer_state": {"b": 2}}}
    halves[null_half] = None
    env = Envelope.from_halves(halves["completed"], halves["partial"], where="X",
                               warn=warnings.append)
    assert getattr(env, null_half) == {}
    assert len(warnings) == 1
    assert null_half in warnings[0] and "X" in warnings[0]


def test_both_null_halves_warn_twice():
    warnings = []
    env = Envelope.from_halves(None, None, where="w", warn=warnings.append)
    assert env.to_dict() == {"completed": {}, "partial": {}}
    assert len(warnings) == 2


def test_null_half_without_warn_callback_is_still_read():
    env = Envelope.from_halves(None, {"singer_state": {}}, where="w")
    assert env.completed == {} and env.partial == {"singer_state": {}}


def test_null_in_stored_json_warns():
    warnings = []
    env = Envelope.from_stored_json(
        '{"completed": {"singer_state": {"a": 1}}, "partial": null}',
        where="f", warn=warnings.append,
    )
    assert env.to_dict() == {"completed": {"singer_state": {"a": 1}}, "partial": {}}
    assert len(warnings) == 1 and "partial" in warnings[0]


@pytest.mark.parametrize("bad", [[1], "x", 1, 1.5, True])
@pytest.mark.parametrize("half", ["completed", "partial"])
def test_non_object_half_raises(bad, half):
    halves = {"completed": {}, "partial": {}}
    halves[half] = bad
    with pytest.raises(BackendError) as info:
        Envelope.from_halves(halves["completed"], halves["partial"], where="W")
    assert half in str(info.value)


@pytest.mark.parametrize(
    "text", ['{"completed": [], "partial": {}}', '{"completed": {}, "partial": "x"}']
)
def test_non_object_half_in_stored_json_raises(text):
    with pytest.raises(BackendError):
        Envelope.from_stored_json(text, where="f")


@pytest.mark.parametrize("text", ["", "{", "not json", b"\xff\xfe"])
def test_invalid_stored_json_raises_backend_error(text):
    with pytest.raises(BackendError):
        Envelope.from_stored_json(text, where="f")


@pytest.mark.parametrize("text", ["[]", "1", '"s"', "null"])
def test_stored_json_that_is_not_an_object_raises(text):
    with pytest.raises(BackendError):
        Envelope.from_stored_json(text, where="f")


def test_bare_singer_state_file_reads_as_empty():
    env = Envelope.from_stored_json('{"singer_state": {"bookmarks": {"s": 1}}}', where="f")
    assert env.to_dict() == {"completed": {}, "partial": {}}
    assert env.effective() == {}
    assert env.is_empty()


def test_missing_halves_read_as_empty_without_warning():
    warnings = []
    env = Envelope.from_stored_json('{"completed": {"singer_state": {"x": 1}}}', where="f",
                                    warn=warnings.append)
    assert env.to_dict() == {"completed": {"singer_state": {"x": 1}}, "partial": {}}
    assert warnings == []


def test_stored_json_ignores_other_keys_and_accepts_bytes():
    env = Envelope.from_stored_json(
        b'{"extra": 1, "partial": {"singer_state": {"p": 1}}, "completed": {}}', where="f"
    )
    assert env.to_dict() == {"completed": {}, "partial": {"singer_state": {"p": 1}}}


def test_stored_json_round_trips_non_ascii():
    env = Envelope.complete({"singer_state": {"ü": "é"}})
    assert Envelope.from_stored_json(env.to_json(), where="f") == env


# -- STATE arguments ---------------------------------------------------------------------


def test_parse_state_argument_valid():
    assert parse_state_argument('{"singer_state": {"x": 1}}', validate=True) == {
        "singer_state": {"x": 1}
    }


def test_parse_state_argument_singer_state_value_is_not_checked():
    # Meltano only checks the key's presence
    assert parse_state_argument('{"singer_state": null}', validate=True) == {"singer_state": None}


@pytest.mark.parametrize("text", ["", "{", "nope", "{'single': 1}"])
def test_parse_state_argument_invalid_json(text):
    with pytest.raises(InvalidInputError) as info:
        parse_state_argument(text, validate=True)
    assert str(info.value).startswith("Invalid JSON provided")
    assert "\n" not in str(info.value)


def test_parse_state_argument_missing_singer_state():
    with pytest.raises(InvalidInputError) as info:
        parse_state_argument('{"x": 1}', validate=True)
    message = str(info.value)
    assert "singer_state" in message and "--no-validate" in message
    assert message.startswith("Invalid state format")


def test_parse_state_argument_nested_singer_state_is_not_top_level():
    with pytest.raises(InvalidInputError):
        parse_state_argument('{"value": {"singer_state": {}}}', validate=True)


def test_parse_state_argument_no_validate():
    assert parse_state_argument('{"x": 1}', validate=False) == {"x": 1}
    assert parse_state_argument("{}", validate=False) == {}


@pytest.mark.parametrize("text", ["[]", "1", '"s"', "null", "true"])
@pytest.mark.parametrize("validate", [True, False])
def test_parse_state_argument_non_object_is_refused_even_without_validation(text, validate):
    with pytest.raises(InvalidInputError) as info:
        parse_state_argument(text, validate=validate)
    assert "expected a JSON object" in str(info.value)


def test_validate_singer_state():
    validate_singer_state({"singer_state": {}})
    with pytest.raises(InvalidInputError):
        validate_singer_state({})


# -- export documents ------------------------------------------------------------------


def test_parse_export_document_good():
    doc = {
        "dev:tap-a-to-target-b": {
            "completed": {"singer_state": {"a": 1}},
            "partial": {"singer_state": {"b": 2}},
        },
        "a/b": {"completed": {"singer_state": {"ü": 1}}, "partial": {}},
        "empty": {"completed": {}, "partial": {}},
    }
    states = parse_export_document(json.dumps(doc))
    assert list(states) == list(doc)
    for state_id, entry in doc.items():
        assert isinstance(states[state_id], Envelope)
        assert states[state_id].to_dict() == entry


def test_parse_export_document_empty():
    assert parse_export_document("{}") == {}


def test_parse_export_document_round_trips_meltano_export_bytes():
    text = (
        '{"x":{"completed":{"singer_state":{"\\u00fc":1}},"partial":{}},'
        '"y":{"completed":{},"partial":{"singer_state":{"p":[1,2]}}}}\n'
    )
    states = parse_export_document(text)
    assert states["x"].completed == {"singer_state": {"ü": 1}}
    assert states["y"].partial == {"singer_state": {"p": [1, 2]}}


def test_parse_export_document_missing_halves_become_empty():
    states = parse_export_document('{"a": {"completed": {"singer_state": {}}}, "b": {}}')
    assert states["a"].to_dict() == {"completed": {"singer_state": {}}, "partial": {}}
    assert states["b"].to_dict() == {"completed": {}, "partial": {}}


def test_parse_export_document_null_halves_warn():
    warnings = []
    states = parse_export_document(
        '{"a": {"completed": null, "partial": {"singer_state": {"x": 1}}}}', warn=warnings.append
    )
    assert states["a"].to_dict() == {"completed": {}, "partial": {"singer_state": {"x": 1}}}
    assert len(warnings) == 1 and "'a'" in warnings[0]


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("not json", "Invalid JSON"),
        ("[]", "expected a JSON object"),
        ("null", "expected a JSON object"),
        ('{"a": []}', "'a'"),
        ('{"a": "x"}', "'a'"),
        ('{"a": null}', "'a'"),
        ('{"a": {"completed": {}, "partial": {}, "extra": 1}}', "'extra'"),
        ('{"a": {"singer_state": {"x": 1}}}', "'singer_state'"),
        ('{"a": {"completed": [1], "partial": {}}}', "completed"),
        ('{"a": {"completed": {}, "partial": 3}}', "partial"),
    ],
)
def test_parse_export_document_bad_entries(text, fragment):
    with pytest.raises(InvalidInputError) as info:
        parse_export_document(text)
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("bad_id", ["", "/abs", "a//b", "a/", "..", "a/../b", "x\ny", "a/lock",
                                    "state.json", "a\\b"])
def test_parse_export_document_bad_ids(bad_id):
    text = json.dumps({"good": {"completed": {}, "partial": {}},
                       bad_id: {"completed": {}, "partial": {}}})
    with pytest.raises(InvalidInputError) as info:
        parse_export_document(text)
    assert "state ID" in str(info.value)


# -- state IDs -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "state_id",
    [
        "dev:tap-a-to-target-b",
        "dev:tap-a-to-target-b:suffix",
        "2026-11-21T100522--tap-mini--target-mini",
        "a/b",
        "a/b/c",
        "ü-ñ",
        "日本語:tap-to-target",
        "sp ace",
        " leading and trailing ",
        "q?x",
        "h#x",
        "pct%20x",
        "star*",
        "x_y",
        ".hidden",
        "...",
        "a.b",
        "lockfile",
        "state.json.bak",
        "a" * MAX_STATE_ID_LENGTH,
    ],
)
def test_accepted_state_ids(state_id):
    assert state_id_problem(state_id) is None
    assert validate_state_id(state_id) == state_id


@pytest.mark.parametrize(
    "state_id",
    [
        "",
        "a" * (MAX_STATE_ID_LENGTH + 1),
        "/abs",
        "a/",
        "a//b",
        ".",
        "..",
        "a/./b",
        "a/../b",
        "../escape",
        "state.json",
        "lock",
        "a/lock",
        "a/state.json",
        "a\\b",
        "a\nb",
        "a\rb",
        "a\tb",
        "nul\x00",
        "del\x7f",
        "esc\x1b[31m",
    ],
)
def test_refused_state_ids(state_id):
    problem = state_id_problem(state_id)
    assert problem
    with pytest.raises(InvalidStateIdError) as info:
        validate_state_id(state_id)
    assert isinstance(info.value, InvalidInputError)
    assert problem in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "state_id, pattern, expected",
    [
        ("dev:tap-a-to-target-b", None, True),
        ("dev:tap-a-to-target-b", "dev:*", True),
        ("DEV:tap", "dev:*", False),  # case-sensitive
        ("dev:tap", "DEV:*", False),
        ("a", "?", True),
        ("ab", "?", False),
        ("a", "[ab]", True),
        ("c", "[ab]", False),
        ("ab", "a", False),  # full match, not prefix
        ("xab", "ab", False),  # full match, not search
        ("a/b", "a/*", True),
        ("x_y", "x_y", True),
        ("xzy", "x_y", False),  # `_` is not a wildcard (unlike SQL LIKE)
        ("x%y", "x%y", True),
        ("xzzy", "x%y", False),
        ("dev:t:blue", "*target*", False),
    ],
)
def test_matches_is_fnmatch_full_and_case_sensitive(state_id, pattern, expected):
    assert matches(state_id, pattern) is expected
