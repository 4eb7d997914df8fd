"""`check` on a corpus of healthy and broken states, the same on the system database
(SQLite), file:// and S3 (moto): each rule finds what it should and nothing else, a state
that cannot even be read is one finding (not the end of the check), errors exit 1,
warnings only with --strict; `meltano test state-ext` runs it; 10,000 states on the S3
emulator are checked in seconds.
"""

from __future__ import annotations

import json
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.support.cli import STATE_EXTENSION, clean_env, meltano, state_ext
from tests.support.emulators import StoreCase, s3_server  # noqa: F401 - fixture
from tests.support.project import write_project


def sdk(**marks) -> dict:
    return {"completed": {"singer_state": {"bookmarks": marks}}, "partial": {}}


PAST = "2026-01-02T03:04:05+00:00"
CORPUS = {
    "ok:sdk": {"completed": {"singer_state": {"bookmarks": {
        "orders": {"replication_key": "updated_at", "replication_key_value": PAST},
        "events": {"partitions": [{"context": {"a": 1}, "replication_key": "id",
                                   "replication_key_value": 5}]}}}},
        "partial": {"singer_state": {"bookmarks": {"items": {"replication_key": "id",
                                                             "replication_key_value": 9,
                                                             "progress_markers": {}}}}}},
    "ok:legacy": {"completed": {"singer_state": {"currently_syncing": None, "bookmarks": {
        "users": {"lsn": 1234, "version": 17}}}}, "partial": {}},
    "ok:old": sdk(users={"replication_key": "ts", "replication_key_value": "2020-01-01"}),
    "warn:empty": sdk(),
    "warn:in-flight": sdk(orders={"replication_key": "ts", "replication_key_value": PAST,
                                  "replication_key_signpost": PAST}),
    "warn:no-key": sdk(items={"replication_key_value": 3}),
    "bad:no-singer-state": {"completed": {"bookmarks": {}}, "partial": {}},
    "bad:singer-state-type": {"completed": {"singer_state": [1]}, "partial": {}},
    "bad:future": sdk(orders={"replication_key": "ts",
                              "replication_key_value": "2099-01-01T00:00:00Z"}),
    "bad:shape": sdk(a=3, b={"partitions": {"context": {}}},
                     c={"partitions": [{"replication_key_value": 1}]}),
    "bad:value-type": sdk(orders={"replication_key": "ts", "replication_key_value": {"x": 1}}),
    "bad:corrupt": sdk(),  # made unreadable in the store itself, below
    "bad:null": sdk(a={"replication_key": "id", "replication_key_value": 1}),  # partial: null
}
EXPECTED = {
    ("bad:corrupt", None, "error", "unreadable"),
    ("bad:future", "orders", "error", "future"),
    ("bad:no-singer-state", None, "error", "no-singer-state"),
    ("bad:null", None, "error", "null-half"),
    ("bad:shape", "a", "error", "bookmark-shape"),
    ("bad:shape", "b", "error", "bookmark-shape"),
    ("bad:shape", "c", "error", "bookmark-shape"),
    ("bad:singer-state-type", None, "error", "singer-state-type"),
    ("bad:value-type", "orders", "error", "value-type"),
    ("warn:empty", None, "warning", "empty"),
    ("warn:in-flight", "orders", "warning", "in-flight"),
    ("warn:no-key", "items", "warning", "no-replication-key"),
}
CORRUPT = b'{"completed": {"singer_state": {"bookmarks": {}}, "partial": '
NULL_HALF = json.dumps({"completed": CORPUS["bad:null"]["completed"], "partial": None}).encode()


def findings(result) -> set[tuple]:
    return {(f["state_id"], f["stream"], f["severity"], f["rule"])
            for f in result.json()["findings"]}


class Case:
    """A store holding the corpus, and how to run state_extension against it."""

    def __init__(self, cwd: Path, env: dict, uri: str | None = None):
        self.cwd, self.env, self.uri = cwd, env, uri

    def check(self, *args, code=None):
        extra = ["--uri", self.uri] if self.uri else []
        result = state_ext("check", *args, *extra, cwd=self.cwd, env=self.env, check=False)
        if code is not None:
            assert result.returncode == code, str(result)
        return result

    def seed(self, write_raw) -> None:
        extra = ["--uri", self.uri] if self.uri else []
        state_ext("import", "--no-snapshot", *extra, cwd=self.cwd, env=self.env,
                  input=json.dumps(CORPUS))
        write_raw("bad:corrupt", CORRUPT)
        write_raw("bad:null", NULL_HALF)


@pytest.fixture(params=["systemdb", "file", "s3"])
def case(request, tmp_path, meltano_bin):
    if request.param == "systemdb":
        root = write_project(tmp_path / "proj")
        meltano("state", "list", cwd=root)  # Meltano's schema, made by Meltano
        found = Case(root, clean_env())

        def write_raw(state_id, data):
            with sqlite3.connect(root / ".meltano" / "meltano.db") as con:
                if data == NULL_HALF:
                    con.execute("UPDATE state SET partial_state = NULL WHERE state_id = ?",
                                (state_id,))
                else:
                    con.execute("UPDATE state SET completed_state = ? WHERE state_id = ?",
                                (data.decode(), state_id))
    elif request.param == "file":
        found = Case(tmp_path, clean_env(), f"file://{tmp_path}/state")

        def write_raw(state_id, data):
            (tmp_path / "state" / state_id / "state.json").write_bytes(data)
    else:
        store = StoreCase("s3", request.getfixturevalue("s3_server"))
        bucket = store.new_bucket()
        uri = f"s3://{bucket}/meltano"
        found = Case(tmp_path, clean_env(**store.settings_env(uri)), uri)

        def write_raw(state_id, data):
            store.write(bucket, f"meltano/{state_id}/state.json", data)
    found.seed(write_raw)
    return found


def test_each_rule_finds_its_states_on_every_backend(case):
    result = case.check("--format", "json", code=1)
    assert findings(result) == EXPECTED
    doc = result.json()
    assert (doc["checked"], doc["errors"], doc["warnings"], doc["ok"]) == (13, 9, 3, False)
    future = next(f for f in doc["findings"] if f["rule"] == "future")
    assert future["value"] == "2099-01-01T00:00:00Z"

    text = case.check(code=1)
    lines = text.stdout.splitlines()
    assert len(lines) == len(EXPECTED)
    assert ("error: bad:future: stream 'orders': future: bookmark is in the future: "
            "2099-01-01T00:00:00Z") in lines
    assert text.stderr.strip().splitlines()[-1] == \
        "check: 13 state(s), 9 error(s), 3 warning(s)"


def test_warnings_pass_unless_strict_and_max_age_finds_stale_bookmarks(case):
    healthy = case.check("--pattern", "ok:*", code=0)
    assert healthy.stdout == ""
    assert "check: 3 state(s), 0 error(s), 0 warning(s)" in healthy.stderr
    case.check("--pattern", "warn:*", code=0)
    case.check("--pattern", "warn:*", "--strict", code=1)
    stale = case.check("--pattern", "ok:*", "--max-age", "400d", "--format", "json", code=0)
    assert findings(stale) == {("ok:old", "users", "warning", "stale")}
    bad_age = case.check("--max-age", "7 days", code=1)
    assert bad_age.stderr.strip() == \
        "Invalid value for --max-age: '7 days' (use a duration such as 36h, 7d, 30m or 1d12h)"


def test_meltano_test_runs_check(tmp_path, meltano_bin):
    utility = {"name": "state-ext", "namespace": "state_ext",
               "executable": str(STATE_EXTENSION), "commands": {"test": {"args": "check"}}}
    root = write_project(tmp_path / "proj", plugins={"utilities": [utility]})
    env = clean_env()
    meltano("state", "set", "--force", "dev:a-to-b", json.dumps(CORPUS["ok:sdk"]["completed"]),
            cwd=root, env=env)
    passed = meltano("test", "state-ext", cwd=root, env=env, check=False)
    assert passed.returncode == 0, str(passed)
    future = sdk(orders={"replication_key": "ts", "replication_key_value": "2099-01-01"})
    meltano("state", "set", "--force", "dev:c-to-d", json.dumps(future["completed"]),
            cwd=root, env=env)
    failed = meltano("test", "state-ext", cwd=root, env=env, check=False)
    assert failed.returncode != 0, str(failed)
    assert "dev:c-to-d: stream 'orders': future" in failed.stdout + failed.stderr


def test_thousands_of_states_on_s3_with_one_unreadable(s3_server, tmp_path):  # noqa: F811
    """A whole bucket is checked through the batched concurrent reads; the one corrupt state
    in the middle of a batch is one finding, and every other state is still checked. (How
    fast: benchmarks/README.md, not a timed test.)"""
    store = StoreCase("s3", s3_server)
    bucket = store.new_bucket()
    body = json.dumps(CORPUS["ok:sdk"]).encode()
    keys = [f"state/dev:tap-{i:05d}-to-target/state.json" for i in range(2_000)]
    with ThreadPoolExecutor(8) as pool:  # boto3 keeps 10 connections
        list(pool.map(lambda key: store.write(bucket, key, body), keys))
    store.write(bucket, "state/dev:tap-01321-to-target/state.json", CORRUPT)
    uri = f"s3://{bucket}/state"
    env = clean_env(**store.settings_env(uri))
    result = state_ext("check", "--uri", uri, "--format", "json", cwd=tmp_path, env=env,
                       check=False)
    assert result.returncode == 1, str(result)
    doc = result.json()
    assert doc["checked"] == 2_000
    assert findings(result) == {("dev:tap-01321-to-target", None, "error", "unreadable")}
