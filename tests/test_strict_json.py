"""``state_ext.strict_json`` in process: its shortcuts agree with the plain definitions.

The nesting check counts levels with string tricks instead of a parser, and the stored
fast path skips checks when cheap bounds allow: both are compared here, on thousands of
seeded random documents, with a recursive reference and with ``json.loads``. The margins
the 500-level limit promises (recursion frames, thread C stacks) are measured too.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys

import pytest

from state_ext.errors import BackendError
from state_ext.model import Envelope, copy_json, deep_merge
from state_ext.strict_json import (
    MAX_DEPTH,
    JsonRefused,
    check_depth,
    check_value,
    loads,
    loads_stored,
)
from tests.support.cli import REPO_ROOT
from tests.support.hostile import arrays, mixed, objects, state_of_depth

TRICKY_STRINGS = ["", "[", "]]]", "{{", '"', '\\"[', "\\", "\\\\", "a\\\\\"b[", "é", "😀",
                  "\u2028", "\x00", "}{][", '"}]', "\\u005b"]


def depth(value) -> int:
    """Levels of dicts and lists (an explicit stack: references must not recurse either)."""
    deepest, pending = 0, [(value, 0)]
    while pending:
        node, above = pending.pop()
        if isinstance(node, (dict, list)):
            deepest = max(deepest, above + 1)
            pending += [(child, above + 1)
                        for child in (node.values() if isinstance(node, dict) else node)]
    return deepest


def random_value(rng: random.Random, budget: int):
    """A JSON value nesting at most ``budget`` levels, with strings full of brackets."""
    roll = rng.random()
    if budget == 0 or roll < 0.4:
        return rng.choice([rng.choice(TRICKY_STRINGS) * rng.randint(1, 3), rng.randint(-9, 9),
                           1.5, None, True, False, ""])
    width = rng.randint(0, 3)
    if roll < 0.7:
        return {rng.choice(TRICKY_STRINGS) + str(i): random_value(rng, budget - 1)
                for i in range(width)}
    return [random_value(rng, budget - 1) for _ in range(width)]


def random_text(rng: random.Random, value) -> str:
    return json.dumps(value, indent=rng.choice([None, 0, 2]),
                      ensure_ascii=rng.random() < 0.5, separators=rng.choice([None, (",", ":")]))


@pytest.mark.parametrize("seed", range(8))
def test_check_depth_matches_a_recursive_count(seed):
    rng = random.Random(seed)
    for _ in range(300):
        value = random_value(rng, rng.choice([3, 8, 20]))
        if rng.random() < 0.3:  # something deep, to pass the cheap bounds
            value = [value, json.loads(rng.choice([arrays, objects, mixed])(rng.randint(1, 40)))]
        text = random_text(rng, value)
        actual = depth(value)
        for limit in (actual - 1, actual):
            if limit < 1:
                continue
            try:
                check_depth(text, limit)
                refused = False
            except JsonRefused:
                refused = True
            assert refused == (actual > limit), (actual, limit, text[:200])


def test_check_depth_exact_far_past_the_cheap_bounds():
    wide = [{"k": [1, {"a": "[[[[{{{{"}]} for _ in range(5000)]  # thousands of brackets
    for extra in (MAX_DEPTH - 3, MAX_DEPTH - 2):
        value = [wide, json.loads(arrays(extra))]
        text = json.dumps(value)
        assert depth(value) == extra + 1
        if extra + 1 > MAX_DEPTH:
            with pytest.raises(JsonRefused):
                check_depth(text, MAX_DEPTH)
        else:
            check_depth(text, MAX_DEPTH)


@pytest.mark.parametrize("seed", range(4))
def test_loads_and_loads_stored_read_valid_json_as_json_does(seed):
    rng = random.Random(100 + seed)
    for _ in range(300):
        value = random_value(rng, 6)
        text = random_text(rng, value)
        assert loads(text) == json.loads(text)
        assert loads(text.encode()) == json.loads(text)
        stored = json.dumps(value)  # what Meltano writes
        assert loads_stored(stored, max_depth=MAX_DEPTH) == json.loads(stored)


@pytest.mark.parametrize("text", [
    '{"a": 1, "a": 2}',
    '{"a": 1, "a": 2, "b" : 3}',  # a spaced key must not hide the lost one
    '{"a": 1, "a": 2, "b": ":"}',  # nor a value that opens with a colon
    '{"a": {"x": 1, "y": {"x": 2, "x": 3}}}',
    '{"a": [{"k": 1}, {"k": 2, "k": 2}]}',
    '{"a":1,"a":1}',
    '{"a\\"": 1, "a\\"": 2}',  # escaped quotes: the pairs-hook path
])
def test_stored_duplicate_keys_are_refused_on_every_fast_path(text):
    with pytest.raises(JsonRefused) as info:
        loads_stored(text, max_depth=MAX_DEPTH)
    assert "duplicate" in info.value.message


@pytest.mark.parametrize("seed", range(3))
def test_stored_fast_path_finds_every_injected_duplicate(seed):
    """Random documents as Meltano writes them, each with one key repeated somewhere:
    the counting proof must never take a document whose dicts lost a member."""
    rng = random.Random(700 + seed)
    refused = 0
    for _ in range(300):
        value = {"s": random_value(rng, 5), "t": {"k": rng.choice(TRICKY_STRINGS)}}
        text = json.dumps(value)
        assert loads_stored(text, max_depth=MAX_DEPTH) == value
        # repeat the first member of the innermost object named "t": valid text, one
        # key twice, in varied spacing
        spacing = rng.choice(['"k": ', '"k" : ', '"k":', '"k"\n:'])
        hostile = text.replace('"t": {', '"t": {' + spacing + '1, ', 1)
        with pytest.raises(JsonRefused):
            loads_stored(hostile, max_depth=MAX_DEPTH)
        refused += 1
    assert refused == 300


def test_stored_values_opening_with_a_colon_or_spaced_keys_still_read():
    for text in ('{"a": ":", "b": "::"}', '{"a" : 1, "b":\t2}', '{"": {"": ""}}'):
        assert loads_stored(text, max_depth=MAX_DEPTH) == json.loads(text)


@pytest.mark.parametrize(("text", "where"), [
    ('{"a": 1,\n "b": {"c": NaN}}', "at /b/c (line 2, column 13)"),
    ('{"a": [1, 2, {"x": 1, "x": 2}]}', "'x' in the object at /a/2 (line 1, column 23)"),
    ('{"a/b": {"~": 1e999}}', "at /a~1b/~0 (line 1, column 15)"),
    ('[\n\n  "\\ud800"]', "at line 3, column 4"),
])
def test_problems_are_located(text, where):
    with pytest.raises(JsonRefused) as info:
        loads(text)
    assert where in info.value.message


def test_copy_and_merge_are_deep_and_leave_their_inputs_alone():
    src = {"a": {"b": [1, {"c": 2}]}, "n": None}
    dest = {"a": {"b": [0], "keep": {"x": [1]}}}
    frozen = json.dumps([src, dest])
    merged = deep_merge(src, dest)
    assert merged == {"a": {"b": [1, {"c": 2}], "keep": {"x": [1]}}, "n": None}
    merged["a"]["b"][1]["c"] = 99
    merged["a"]["keep"]["x"].append(2)
    assert json.dumps([src, dest]) == frozen
    copied = copy_json(src)
    assert copied == src and copied["a"]["b"] is not src["a"]["b"]


def test_values_decoded_elsewhere_are_held_to_the_same_rules():
    """A plugin backend's halves (already dicts) go through ``check_value``."""
    for half, fragment in (({"v": float("nan")}, "NaN"), ({"v": float("inf")}, "NaN"),
                           ({"d": json.loads(arrays(MAX_DEPTH))}, "500 levels"),
                           ({"v": "\ud800"}, "surrogate")):
        with pytest.raises(BackendError) as info:
            Envelope.from_halves(half, {}, where="plugin 'x'")
        assert fragment in info.value.message and "plugin 'x'" in info.value.message
    check_value(json.loads(state_of_depth(MAX_DEPTH)))


AT_LIMIT_WORK = """
import json, sys, threading
from state_ext.model import Envelope, canonical_json, deep_merge
from state_ext.strict_json import loads
from tests.support.hostile import state_of_depth, mixed, arrays
done = []
def work():
    for shape in (mixed, arrays):
        text = state_of_depth(500, shape)
        value = loads(text)
        merged = Envelope(completed=value, partial={}).merged_with_partial(value)
        merged.effective(); canonical_json(merged.to_dict()); json.loads(merged.to_json())
    done.append(True)
if sys.argv[1] == "thread":
    threading.stack_size(int(sys.argv[2]) * 1024)
    t = threading.Thread(target=work); t.start(); t.join()
else:
    def deeper(n):
        return work() if n == 0 else deeper(n - 1)
    deeper(int(sys.argv[2]))
print("ok" if done else "failed")
"""


@pytest.mark.parametrize(("where", "amount"), [
    ("thread", 128),  # KiB of C stack: musl's default for threads
    ("thread", 8192),  # glibc's default
    ("main", 300),  # frames already on the stack before the work starts
])
def test_every_recursive_step_at_the_limit_has_room(where, amount):
    proc = subprocess.run([sys.executable, "-c", AT_LIMIT_WORK, where, str(amount)],
                          capture_output=True, text=True, timeout=120, cwd=REPO_ROOT)
    assert proc.stdout.strip() == "ok", proc.stderr[-2000:]
