"""`streams`, `reset` and `bookmark` through the console script on real stores: the
layouts they show, the halves they change, and bad input (unknown ID, stream or partition,
invalid JSON, a value of the wrong type, a store that cannot be reached): one stderr line,
a non-zero exit, and the store exactly as it was.
"""

from __future__ import annotations

import json

import pytest

from tests.support.cli import clean_env, meltano, state_ext
from tests.support.emulators import unreachable_s3_env
from tests.support.project import write_project

SDK_STATE = {"singer_state": {"bookmarks": {
    "orders": {"replication_key": "updated_at",
               "replication_key_value": "2026-11-01T00:00:00+00:00"},
    "items": {"replication_key": "id", "replication_key_value": 40},
    "events": {"partitions": [
        {"context": {"account": 1}, "replication_key": "id", "replication_key_value": 7},
        {"context": {"account": 2}, "replication_key": "id", "replication_key_value": 8}]},
}}}
LEGACY_STATE = {"singer_state": {"currently_syncing": "public-users", "bookmarks": {
    "public-users": {"lsn": 12345, "version": 1700000000000, "last_replication_method":
                     "LOG_BASED"}}}}


class Store:
    """A file:// store (no Meltano project: no safety snapshot, said in a warning)."""

    def __init__(self, tmp_path):
        self.cwd = tmp_path
        self.uri = f"file://{tmp_path}/state"
        self.env = clean_env()

    def run(self, *args, check=True):
        return state_ext(*args, "--uri", self.uri, cwd=self.cwd, env=self.env, check=check)

    def set(self, state_id, state):
        self.run("set", "--force", state_id, json.dumps(state))

    def export(self) -> str:
        return self.run("export").stdout

    def get(self, state_id) -> dict:
        return self.run("get", state_id).json()


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path)
    s.set("sdk", SDK_STATE)
    s.set("legacy", LEGACY_STATE)
    return s


def one_error(result, code=1) -> str:
    assert result.returncode == code, str(result)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


BAD = [
    (["streams", "nope"], "No state found for state ID 'nope'"),
    (["reset", "nope", "items", "--force"], "No state found for state ID 'nope'"),
    (["bookmark", "nope", "items", "--value", "1", "--force"],
     "No state found for state ID 'nope'"),
    (["reset", "sdk", "items", "nope", "--force"],
     "Unknown stream(s) 'nope' in state 'sdk'; known streams: orders, items, events"),
    (["bookmark", "sdk", "nope", "--value", "1", "--force"],
     "Unknown stream(s) 'nope' in state 'sdk'; known streams: orders, items, events"),
    (["reset", "sdk", "events", "--partition", '{"account": ', "--force"],
     "Invalid value for --partition: Expecting value: line 1 column 13 (char 12)"),
    (["reset", "sdk", "events", "--partition", "[1]", "--force"],
     "Invalid value for --partition: expected a JSON object (a partition's context), "
     "got [1]"),
    (["reset", "sdk", "events", "--partition", '{"account": 3}', "--force"],
     "No partition {\"account\":3} in stream 'events' of state 'sdk'; its partitions: "
     "{\"account\":1}; {\"account\":2}"),
    (["bookmark", "sdk", "items", "--value", "yesterday", "--force"],
     "Invalid value for --value: 'yesterday' is not a number, and the current value 40 is "
     "one (--any-type to change the type)"),
    (["bookmark", "sdk", "orders", "--value", "12", "--force"],
     "Invalid value for --value: '12' is not an ISO-8601 timestamp, and the current value "
     "2026-11-01T00:00:00+00:00 is one (--any-type to change the type)"),
    (["bookmark", "sdk", "orders", "--value", "2026-13-45T00:00:00Z", "--force"],
     "Invalid value for --value: '2026-13-45T00:00:00Z' is not an ISO-8601 timestamp, and "
     "the current value 2026-11-01T00:00:00+00:00 is one (--any-type to change the type)"),
    (["bookmark", "sdk", "events", "--value", "3", "--force"],
     "Stream 'events' of state 'sdk' has 2 partition(s): give --partition with the context "
     "of one"),
    (["bookmark", "legacy", "public-users", "--value", "3", "--force"],
     "Stream 'public-users' of state 'legacy' has no replication_key: give --key"),
    (["reset", "sdk", "items"], "Refusing to reset 1 stream bookmark(s) of sdk: items without "
     "confirmation: standard input is not a terminal, so nobody can answer; pass --force to "
     "confirm"),
    (["bookmark", "sdk", "items", "--value", "3"], "Refusing to set the bookmark of stream "
     "'items' of sdk without confirmation: standard input is not a terminal, so nobody can "
     "answer; pass --force to confirm"),
]


@pytest.mark.parametrize(("args", "message"), BAD, ids=[" ".join(a[:3]) for a, _ in BAD])
def test_bad_input_is_one_line_and_changes_nothing(store, args, message):
    before = store.export()
    assert one_error(store.run(*args, check=False)) == message
    assert store.export() == before


def test_wrong_arguments_exit_2(store):
    before = store.export()
    both = store.run("reset", "sdk", "items", "--all-streams", "--force", check=False)
    assert one_error(both, 2) == "Give the streams to reset, or --all-streams (not both)"
    neither = store.run("reset", "sdk", "--force", check=False)
    assert one_error(neither, 2) == "Give the streams to reset, or --all-streams (not both)"
    assert store.export() == before


def test_unreachable_store_is_one_line(tmp_path):
    env = unreachable_s3_env("secret-value-xyz")
    for args in (["streams", "a"], ["reset", "a", "s", "--force"],
                 ["bookmark", "a", "s", "--value", "1", "--force"], ["check"]):
        result = state_ext(*args, "--uri", "s3://bucket/state", cwd=tmp_path, env=env,
                           check=False)
        line = one_error(result)
        assert "bucket 'bucket'" in line and "secret-value-xyz" not in line, line


def test_dry_run_shows_the_change_and_writes_nothing(store):
    before = store.export()
    shown = store.run("reset", "sdk", "--all-streams", "--dry-run")
    assert shown.stdout.splitlines() == [
        "sdk: stream 'orders': {\"replication_key\":\"updated_at\",\"replication_key_value\":"
        "\"2026-11-01T00:00:00+00:00\"} → (none)",
        "sdk: stream 'items': {\"replication_key\":\"id\",\"replication_key_value\":40} → (none)",
        "sdk: stream 'events': {} + 2 partition(s) [{\"context\":{\"account\":1},"
        "\"replication_key_value\":7},{\"context\":{\"account\":2},\"replication_key_value\":8}]"
        " → (none)"]
    assert "Dry run: nothing was written." in shown.stderr
    assert store.export() == before


def test_bookmark_keeps_the_type_and_any_type_changes_it(store):
    store.run("bookmark", "sdk", "orders", "--value", "2025-06-01T00:00:00Z", "--force")
    store.run("bookmark", "sdk", "items", "--value", "12.5", "--force")
    store.run("bookmark", "sdk", "events", "--partition", '{"account":2}', "--value", "3",
              "--force")
    marks = store.get("sdk")["singer_state"]["bookmarks"]
    assert marks["orders"]["replication_key_value"] == "2025-06-01T00:00:00Z"
    assert marks["items"]["replication_key_value"] == 12.5
    assert marks["events"]["partitions"][1] == {"context": {"account": 2},
                                                "replication_key": "id",
                                                "replication_key_value": 3}
    store.run("bookmark", "sdk", "items", "--value", "abc", "--key", "code", "--any-type",
              "--force")
    assert store.get("sdk")["singer_state"]["bookmarks"]["items"] == {
        "replication_key": "code", "replication_key_value": "abc"}
    # a legacy bookmark gains the SDK keys only when asked, with its own keys kept
    store.run("bookmark", "legacy", "public-users", "--value", "99", "--key", "lsn", "--force")
    assert store.get("legacy")["singer_state"]["bookmarks"]["public-users"] == {
        **LEGACY_STATE["singer_state"]["bookmarks"]["public-users"],
        "replication_key": "lsn", "replication_key_value": 99}


def test_other_layouts_are_opaque_and_never_fail(store):
    text = store.run("streams", "legacy").stdout.splitlines()
    assert text[1].split()[:6] == ["public-users", "-", "-", "0", "-", "completed"]
    assert '"lsn":12345' in text[1] and '"version":1700000000000' in text[1]
    assert text[2] == 'singer_state.currently_syncing: "public-users"'
    odd = {"singer_state": {"bookmarks": {"a": 3, "b": {"replication_key_value": [1]}},
                            "position": {"file": "bin.001", "pos": 4}}}
    store.set("odd", odd)
    shown = store.run("streams", "odd", "--format", "json").json()
    assert [s["stream"] for s in shown["streams"]] == ["b"]
    assert shown["other_keys"] == {"singer_state.position": {"file": "bin.001", "pos": 4},
                                   "singer_state.bookmarks.a": 3}
    store.run("set", "--force", "--no-validate", "odd", '{"singer_state": ["x"]}')
    assert store.run("streams", "odd").stdout == 'singer_state: ["x"]\n'
    store.run("set", "--force", "--no-validate", "bare", '{"cursor": 5}')
    assert store.run("streams", "bare").stdout == '(no singer_state): {"cursor":5}\n'


def test_reset_in_a_project_takes_a_snapshot_that_restore_undoes(tmp_path, meltano_bin):
    root = write_project(tmp_path / "proj")
    env = clean_env()
    # the system database, with Meltano's schema, made by the real meltano
    meltano("state", "set", "--force", "sdk", json.dumps(SDK_STATE), cwd=root, env=env)
    done = state_ext("reset", "sdk", "orders", "items", "--force", cwd=root, env=env)
    summary = done.stderr.strip().splitlines()[-1]
    assert summary.startswith("Done: reset 2 stream bookmark(s) of sdk: orders, items; "
                              "safety snapshot "), summary
    name = summary.split("safety snapshot ")[1].split()[0]
    assert sorted(meltano("state", "get", "sdk", cwd=root, env=env)
                  .json()["singer_state"]["bookmarks"]) == ["events"]
    state_ext("restore", name, "--force", cwd=root, env=env)
    assert meltano("state", "get", "sdk", cwd=root, env=env).json() == SDK_STATE
