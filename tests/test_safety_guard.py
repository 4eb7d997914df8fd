"""guard's comparison rules, case by case: how bookmark values are ordered, partitions,
layouts that are not the Singer SDK's, and the effective state (partial over completed)."""

from __future__ import annotations

import pytest

from state_ext.guard import check, is_before, parse_allow
from state_ext.history import summarize
from state_ext.model import Envelope

ID = "dev:tap-a-to-target-b"


def marks(**streams) -> dict:
    return {"singer_state": {"bookmarks": streams}}


def rkv(value) -> dict:
    return {"replication_key": "k", "replication_key_value": value}


def problems(old: dict, new: dict | None, allow=frozenset(), *, partial: dict | None = None):
    current = [] if new is None else [(ID, Envelope(new, partial or {}))]
    return [(p.kind, p.stream, p.partition, p.before, p.after)
            for p in check({ID: Envelope(old)}, current, set(allow))]


@pytest.mark.parametrize(("after", "before", "backwards"), [
    ("2024-01-01T00:00:00Z", "2024-01-01T00:00:01Z", True),
    ("2024-01-01T01:00:00+01:00", "2024-01-01T00:00:01Z", True),  # 00:00:00Z, an instant
    ("2024-01-01T00:00:00.5", "2024-01-01T00:00:00.500001Z", True),  # naive = UTC
    ("2024-01-01", "2024-01-01T00:00:00.000001+00:00", True),
    ("2024-01-01T00:00:00+00:00", "2024-01-01T00:00:00Z", False),  # the same instant
    ("2024-01-02", "2024-01-01T23:59:59-05:00", True),  # 04:59:59Z on the 2nd
    (9, 10, True), (9.5, 10, True), (10, 9.5, False), (10, 10, False),
    ("b", "c", False), ("9", "10", False),  # other strings: no order
    (1, "2024-01-01", False), (True, 5, False), (None, 5, False),  # different kinds
])
def test_values_are_ordered_by_type(after, before, backwards):
    assert is_before(after, before) is backwards


def test_streams_regress_vanish_or_appear():
    old = marks(orders=rkv("2024-05-01T00:00:00Z"), items=rkv(10), notes={"x": 1})
    new = marks(orders=rkv("2024-04-01"), users=rkv(1), notes={"x": 0})
    assert problems(old, new) == [
        ("lost-stream", "items", None, 10, "(none)"),
        ("regress", "orders", None, "2024-05-01T00:00:00Z", "2024-04-01"),
    ]
    assert problems(old, new, {"regress"}) == [("lost-stream", "items", None, 10, "(none)")]
    no_value = marks(orders={"replication_key": "k"}, items=rkv(11), notes={})
    assert problems(old, no_value) == [
        ("lost-stream", "orders", None, "2024-05-01T00:00:00Z", "(none)")]


def test_partitions_are_compared_by_context():
    old = marks(repos={"partitions": [
        {"context": {"org": "a"}, "replication_key_value": "2024-03-01"},
        {"context": {"org": "b"}, "replication_key_value": "2024-03-01"},
        {"context": {"org": "c"}, "replication_key_value": 5},
    ]})
    new = marks(repos={"partitions": [  # reordered, one older, one gone, one new
        {"context": {"org": "c"}, "replication_key_value": 6},
        {"context": {"org": "a"}, "replication_key_value": "2024-02-01"},
        {"context": {"org": "z"}, "replication_key_value": "2000-01-01"},
    ]})
    assert problems(old, new) == [
        ("regress", "repos", {"org": "a"}, "2024-03-01", "2024-02-01"),
        ("lost-stream", "repos", {"org": "b"}, "2024-03-01", "(none)"),
    ]
    line = check({ID: Envelope(old)}, [(ID, Envelope(new))])[0].line()
    assert line == (f"{ID}: stream 'repos' partition {{\"org\":\"a\"}}: bookmark moved "
                    "backwards: 2024-03-01 → 2024-02-01")


@pytest.mark.parametrize("emptied", [
    {}, {"singer_state": {}}, {"singer_state": None}, marks(), {"singer_state":
                                                                {"currently_syncing": None}},
])
def test_a_state_without_bookmarks_is_emptied(emptied):
    assert [p[0] for p in problems(marks(orders=rkv(1)), emptied)] == ["emptied"]
    assert problems(marks(orders=rkv(1)), emptied, {"emptied"}) == []
    assert problems(emptied, marks(orders=rkv(1))) == []  # from nothing: fine


def test_deleted_states_and_other_layouts():
    assert problems(marks(orders=rkv(1)), None) == [
        ("emptied", None, None, "1 stream bookmark(s)", "(none)")]
    legacy = {"singer_state": {"orders": "2024-01-01", "cursor": 7}}
    assert problems(legacy, {"singer_state": {"orders": "2023-01-01"}}) == []  # opaque
    assert [p[0] for p in problems(legacy, {"singer_state": {}})] == ["emptied"]
    assert [p[0] for p in problems({"other": 1}, {})] == ["emptied"]


def test_the_effective_state_is_compared():
    old = marks(orders=rkv(5))
    # completed went back, but the partial half (what the tap receives) moved forwards
    assert problems(old, marks(orders=rkv(1)), partial=marks(orders=rkv(6))) == []
    assert problems(old, marks(orders=rkv(9)), partial=marks(orders=rkv(4)))[0][0] == "regress"


def test_allow_names_are_checked():
    assert parse_allow("regress, lost-stream") == {"regress", "lost-stream"}
    with pytest.raises(Exception, match="Invalid value for --allow: 'nope'"):
        parse_allow("regress,nope")


def test_history_summaries():
    assert summarize(None, marks(a=rkv(1)), first=True) == "first seen: +a"
    assert summarize(marks(a=rkv(1), b={}), marks(a=rkv(2), c={})) == "+c; -b; a: 1 → 2"
    assert summarize(marks(a={"x": 1, "y": [1]}), marks(a={"x": 2, "y": [2]})) == \
        "a: x 1 → 2, y [1] → [2]"
    assert summarize(marks(a=rkv(1), b=rkv(1)), marks(a=rkv(1), b=rkv(3)), "a") == \
        "same bookmarks"
    assert summarize({"singer_state": {"k": 1}}, {"singer_state": {"k": 2}, "z": 1}) == \
        "changed keys: singer_state, z"
    assert summarize(marks(a=rkv(1)), None) == "state deleted"
