"""`locks`, `unlock` and check's stale-lock rule on file:// and S3 (moto), with locks held
by real processes: one killed (SIGKILL) while it held a state's lock, so the lock is left
behind, and one still running, whose live lock is refused without --force.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.support.cli import REPO_ROOT, clean_env, state_ext
from tests.support.emulators import StoreCase, s3_server  # noqa: F401 - fixture

HOLDER = """
import json, sys, time
from state_ext.backends import open_backend
from state_ext.settings import BackendSettings
uri, state_id, options = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
backend = open_backend(BackendSettings(uri, 10, 0.05, options))
with backend.transaction(state_id):
    print("held", flush=True)
    time.sleep(600)
"""
TIMEOUT = "2"  # lock_timeout_seconds for state_extension: a killed holder's lock turns stale


class Case:
    def __init__(self, uri: str, env: dict, options: dict, cwd):
        self.uri, self.env, self.options, self.cwd = uri, env, options, cwd

    def run(self, *args, check=True):
        return state_ext(*args, "--uri", self.uri, cwd=self.cwd, env=self.env, check=check)

    def hold(self, state_id: str) -> subprocess.Popen:
        """A process holding ``state_id``'s lock (through the backend's own protocol)."""
        proc = subprocess.Popen(
            [sys.executable, "-c", HOLDER, self.uri, state_id, json.dumps(self.options)],
            cwd=REPO_ROOT, env=clean_env(), stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "held"
        return proc

    def locks(self) -> dict:
        return {lock["state_id"]: lock for lock in
                self.run("locks", "--format", "json").json()["locks"]}


@pytest.fixture(params=["file", "s3"])
def case(request, tmp_path):
    env = clean_env(MELTANO_STATE_BACKEND_LOCK_TIMEOUT_SECONDS=TIMEOUT)
    if request.param == "file":
        return Case(f"file://{tmp_path}/state", env, {}, tmp_path)
    store = StoreCase("s3", request.getfixturevalue("s3_server"))
    uri = f"s3://{store.new_bucket()}/meltano"
    return Case(uri, {**env, **store.settings_env(uri)}, store.options(), tmp_path)


def test_a_killed_writers_lock_is_listed_stale_found_by_check_and_removed(case):
    case.run("set", "--force", "dev:a-to-b", '{"singer_state": {"bookmarks": {}}}')
    holder = case.hold("dev:a-to-b")
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    assert list(case.locks()) == ["dev:a-to-b"]
    time.sleep(float(TIMEOUT) + 0.5)
    lock = case.locks()["dev:a-to-b"]
    assert lock["stale"] is True and lock["age_seconds"] > float(TIMEOUT)
    assert lock["location"].endswith("dev:a-to-b/lock")

    found = case.run("check", "--format", "json", check=False).json()["findings"]
    assert [(f["state_id"], f["rule"], f["severity"]) for f in found] == [
        ("dev:a-to-b", "empty", "warning"), ("dev:a-to-b", "stale-lock", "warning")]
    assert case.run("check", "--strict", check=False).returncode == 1

    removed = case.run("unlock", "dev:a-to-b")  # stale: no question asked
    assert "Removed the stale lock of dev:a-to-b" in removed.stderr
    assert case.locks() == {}
    assert case.run("get", "dev:a-to-b").json() == {"singer_state": {"bookmarks": {}}}


def test_a_live_lock_is_refused_without_force(case):
    case.env["MELTANO_STATE_BACKEND_LOCK_TIMEOUT_SECONDS"] = "120"  # live all along
    holder = case.hold("dev:busy-to-b")  # a lock without a state: listed all the same
    try:
        lock = case.locks()["dev:busy-to-b"]
        assert lock["stale"] is False
        text = case.run("locks").stdout.splitlines()
        assert text[0].split() == ["state_id", "status", "age", "location"]
        assert text[1].split()[:2] == ["dev:busy-to-b", "live"]

        refused = case.run("unlock", "dev:busy-to-b", check=False)
        assert refused.returncode == 1
        assert refused.stderr.strip().splitlines()[-1] == (
            "Refusing to remove the live lock of dev:busy-to-b without confirmation: standard "
            "input is not a terminal, so nobody can answer; pass --force to confirm")
        assert case.locks()["dev:busy-to-b"]["content"] == lock["content"]  # still there

        forced = case.run("unlock", "dev:busy-to-b", "--force")
        assert "Removed the live lock of dev:busy-to-b" in forced.stderr
        assert case.locks() == {}
    finally:
        holder.kill()
        holder.wait()


def test_bad_input_is_one_line(case, tmp_path):
    missing = case.run("unlock", "dev:none", check=False)
    assert missing.returncode == 1
    assert missing.stderr.strip() == f"No lock for state ID 'dev:none' in {case.uri}"
    db_uri = f"sqlite:///{tmp_path}/meltano.db"
    db = state_ext("unlock", "dev:a", "--uri", db_uri, cwd=tmp_path, env=clean_env(),
                   check=False)
    assert db.returncode == 1
    assert db.stderr.strip() == (
        f"systemdb ({db_uri}) keeps no lock objects: unlock works on file:// and object stores "
        "(the system database locks rows inside each transaction; `locks` shows its runs rows "
        "left RUNNING)")
    no_db = state_ext("locks", "--uri", db_uri, cwd=tmp_path, env=clean_env(), check=False)
    assert no_db.returncode == 1
    assert no_db.stderr.strip().startswith(f"System database not found at {tmp_path}/meltano.db")
