"""Safe runs with the real Meltano 4.4: `meltano run state-ext:snapshot tap target
state-ext:guard`, a tap that rewinds or empties its bookmark, `restore`, `history` over
real runs and `meltano state set` calls, and `meltano state import` of a snapshot.

The utility is declared with ``executable:`` (this checkout's console script; nothing to
install). tap-mini's bookmarks carry ``replication_key_value`` here (``TAP_MINI_SDK=1``).
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from tests.support.cli import clean_env, meltano, state_ext
from tests.support.project import write_project
from tests.support.safe_runs import plugins

pytestmark = pytest.mark.meltano

STATE_ID = "dev:tap-mini-to-target-mini"
CHAIN = ("run", "state-ext:snapshot", "tap-mini", "target-mini", "state-ext:guard")


class Project:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.env = clean_env(TAP_MINI_SDK="1")

    def meltano(self, *args, check=True, **env):
        return meltano(*args, cwd=self.root, env={**self.env, **env}, check=check)

    def state_ext(self, *args, check=True):
        return state_ext(*args, cwd=self.root, env=self.env, check=check)

    def bookmark(self) -> dict:
        state = self.meltano("state", "get", STATE_ID).json()
        return state["singer_state"]["bookmarks"]["items"]

    def snapshots(self) -> list[dict]:
        return self.state_ext("snapshots", "--format", "json").json()["snapshots"]


@pytest.fixture
def project(tmp_path, meltano_bin):
    return Project(write_project(tmp_path / "proj", plugins=plugins()))


def test_the_chain_passes_then_stops_a_rewound_or_emptied_bookmark(project):
    # 1. a good chain: the pre-step snapshots (nothing yet), the run writes, the guard passes
    project.meltano(*CHAIN, TAP_MINI_TOTAL="3")
    project.meltano(*CHAIN, TAP_MINI_TOTAL="5")
    assert project.bookmark()["replication_key_value"] == 5
    taken = project.snapshots()
    assert [s["label"] for s in taken] == ["pre-run", "pre-run"]
    assert [s["states"] for s in taken] == [1, 0]  # newest first: the second run's has 1

    # 2. a tap that rewinds: the guard fails the chain, naming the stream and the values
    bad = project.meltano(*CHAIN, check=False, TAP_MINI_REWIND="2")
    assert bad.returncode != 0
    said = bad.stdout + bad.stderr
    assert f"{STATE_ID}: stream 'items': bookmark moved backwards: 5 → 2" in said, said
    assert project.bookmark()["replication_key_value"] == 2  # Meltano kept the bad state

    # 3. restore --latest (the snapshot taken just before the bad run) puts it back
    restored = project.meltano("invoke", "state-ext:restore", "--latest", "--force")
    assert "Restored 1 state(s)" in restored.stdout + restored.stderr
    assert project.bookmark()["replication_key_value"] == 5
    labels = [s["label"] for s in project.snapshots()]
    assert labels[0] == "pre-restore"  # what the restore overwrote, kept for an undo

    # 4. a tap that empties its state: stopped too; restore again
    empty = project.meltano(*CHAIN, check=False, TAP_MINI_EMPTY="1")
    assert empty.returncode != 0
    said = empty.stdout + empty.stderr
    assert f"{STATE_ID}: state emptied: 1 stream bookmark(s)" in said, said
    project.meltano("invoke", "state-ext:restore", "--latest", "--force")
    assert project.bookmark()["replication_key_value"] == 5
    # the chain resumes from the restored bookmark
    project.meltano(*CHAIN, TAP_MINI_TOTAL="6")
    assert project.bookmark() == {"last_id": 6, "new": 1, "replication_key": "id",
                                  "replication_key_value": 6}


def test_history_lists_every_run_and_edit_and_restore_run_puts_one_back(project):
    project.meltano("run", "tap-mini", "target-mini", TAP_MINI_TOTAL="3")
    project.state_ext("snapshot", "--label", "after-3")
    project.meltano("run", "tap-mini", "target-mini", TAP_MINI_TOTAL="5")
    edited = {"singer_state": {"bookmarks": {"items": {"last_id": 9, "new": 0}}}}
    project.meltano("state", "set", "--force", STATE_ID, json.dumps(edited))
    project.meltano("state", "merge", STATE_ID,
                    json.dumps({"singer_state": {"bookmarks": {"other": {"last_id": 1}}}}))

    found = project.state_ext("history", STATE_ID, "--format", "json").json()
    assert found["sources"]["runs table"] == "read: 4 record(s)"
    assert found["sources"]["snapshots"] == "read: 1 record(s)"
    versions = found["versions"]
    marks = [v["state"]["singer_state"]["bookmarks"] for v in versions]
    assert [m["items"]["last_id"] for m in marks] == [9, 9, 5, 3]
    assert "other" in marks[0] and "other" not in marks[1]
    assert [v["ref"].split(":")[0] for v in versions] == ["run"] * 4
    assert versions[3]["also_seen_in"][0].startswith("snapshot ")  # the same state, later
    assert versions[2]["summary"] == "items: 3 → 5"
    assert versions[3]["summary"] == "first seen: +items"
    assert versions[0]["summary"] == "+other"
    times = [v["time"] for v in versions]
    assert times == sorted(times, reverse=True)

    text = project.state_ext("history", STATE_ID, "--stream", "items", "--limit", "2")
    assert len(text.stdout.splitlines()) == 2
    assert "source runs table: read: 4 record(s)" in text.stderr

    # put back the state the first run left, by its runs row
    first_run = versions[3]["ref"].split(":")[1]
    project.state_ext("restore", "--run", first_run, STATE_ID, "--force")
    assert project.bookmark()["last_id"] == 3


def test_meltano_imports_a_gunzipped_snapshot(project, tmp_path):
    project.meltano("run", "tap-mini", "target-mini", TAP_MINI_TOTAL="4")
    name = project.state_ext("snapshot").stdout.strip()
    data = (project.root / ".meltano" / "state-ext" / "snapshots" / name).read_bytes()
    document = gzip.decompress(data)
    exported = project.meltano("state", "export").stdout
    assert document.decode() == exported  # byte for byte Meltano's own export

    other = Project(write_project(tmp_path / "other"))
    (tmp_path / "snap.json").write_bytes(document)
    other.meltano("state", "import", str(tmp_path / "snap.json"))
    assert other.meltano("state", "export").stdout == exported


def test_snapshots_prune_through_meltano_invoke(project):
    project.meltano("state", "list")  # creates the system database
    for _ in range(3):
        project.state_ext("snapshot", "--label", "nightly")
    listing = project.meltano("invoke", "state-ext:snapshots")
    assert [line.split()[1] for line in listing.stdout.splitlines()] == ["nightly"] * 3
    project.meltano("invoke", "state-ext:snapshots", "prune", "--keep", "1")
    assert len(project.snapshots()) == 1
