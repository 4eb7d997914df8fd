"""Stream surgery with the real Meltano 4.4: `meltano run` writes the state of tap-mini's
streams (two plain ones and one with partitions, the Singer SDK layout), `reset` and
`bookmark` change one stream, and the next `meltano run` proves what the tap received:
the reset stream extracted from the start, the rewound one from the new value, every
other stream incrementally (tap-mini logs each record it emits).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.cli import STATE_EXTENSION, clean_env, meltano, state_ext
from tests.support.project import write_project
from tests.support.safe_runs import plugins as safety_plugins
from tests.support.terminal import run_at_terminal

pytestmark = pytest.mark.meltano

STATE_ID = "dev:tap-mini-to-target-mini"


def plugins() -> dict:
    """tap-mini and target-mini as the safety tests declare them; state-ext's commands here."""
    found = safety_plugins()
    found["utilities"][0]["commands"] = {"streams": {"args": "streams"},
                                         "reset": {"args": "reset"}}
    return found


class Project:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.records = root / "records.jsonl"
        self.env = clean_env(TAP_MINI_STREAMS="items,orders", TAP_MINI_PARTITIONED="events:2",
                             TAP_MINI_RECORDS_FILE=str(self.records))

    def run(self, total: int) -> list[tuple]:
        """One `meltano run`; the records the tap emitted: (stream, account, id)."""
        self.records.unlink(missing_ok=True)
        meltano("run", "tap-mini", "target-mini", cwd=self.root,
                env={**self.env, "TAP_MINI_TOTAL": str(total)})
        if not self.records.exists():
            return []
        lines = [json.loads(line) for line in self.records.read_text().splitlines()]
        return [(r["stream"], (r["context"] or {}).get("account"), r["id"]) for r in lines]

    def state_ext(self, *args, check=True):
        return state_ext(*args, cwd=self.root, env=self.env, check=check)

    def marks(self) -> dict:
        state = meltano("state", "get", STATE_ID, cwd=self.root, env=self.env).json()
        return state["singer_state"]["bookmarks"]

    def stored(self) -> str:
        return meltano("state", "export", cwd=self.root, env=self.env).stdout


def records(*specs) -> list[tuple]:
    """``("items", None, 1, 3)`` -> the records items 1..3 (no partition)."""
    return [(stream, account, i) for stream, account, first, last in specs
            for i in range(first, last + 1)]


@pytest.fixture
def project(tmp_path, meltano_bin):
    return Project(write_project(tmp_path / "proj", plugins=plugins()))


def test_reset_one_stream_and_one_partition_then_the_next_run(project):
    assert project.run(3) == records(("items", None, 1, 3), ("orders", None, 1, 3),
                                     ("events", 1, 1, 3), ("events", 2, 1, 3))
    shown = project.state_ext("streams", STATE_ID, "--format", "json").json()
    assert [(s["stream"], s["replication_key"], s["replication_key_value"],
             s["partition_count"], s["from"]) for s in shown["streams"]] == [
        ("items", "id", 3, 0, "completed"), ("orders", "id", 3, 0, "completed"),
        ("events", None, None, 2, "completed")]
    assert [(p["context"], p["replication_key_value"]) for p in shown["streams"][2]["partitions"]] \
        == [({"account": 1}, 3), ({"account": 2}, 3)]

    # reset items and events' account 2: the others keep their bookmarks
    done = project.state_ext("reset", STATE_ID, "items", "--force")
    assert done.stdout.startswith(f"{STATE_ID}: stream 'items': ")
    assert done.stdout.rstrip().endswith("→ (none)")
    assert "Done: reset 1 stream bookmark(s)" in done.stderr
    assert "safety snapshot" in done.stderr
    project.state_ext("reset", STATE_ID, "events", "--partition", '{"account": 2}', "--force")
    marks = project.marks()
    assert "items" not in marks and marks["orders"]["replication_key_value"] == 3
    assert [p["context"] for p in marks["events"]["partitions"]] == [{"account": 1}]

    # the next run: items and events/2 from the start, the rest only what is new
    assert project.run(4) == records(("items", None, 1, 4), ("orders", None, 4, 4),
                                     ("events", 1, 4, 4), ("events", 2, 1, 4))
    marks = project.marks()
    assert marks["items"]["new"] == 4 and marks["orders"]["new"] == 1


def test_bookmark_rewinds_a_stream_and_a_partition_then_the_next_run(project):
    project.run(5)
    project.state_ext("bookmark", STATE_ID, "orders", "--value", "2", "--force")
    project.state_ext("bookmark", STATE_ID, "events", "--partition", '{"account": 1}',
                      "--value", "4", "--force")
    assert project.run(5) == records(("orders", None, 3, 5), ("events", 1, 5, 5))
    assert project.marks()["orders"] == {"replication_key": "id", "replication_key_value": 5,
                                         "new": 3}

    # a value of another type is refused and changes nothing
    before = project.stored()
    bad = project.state_ext("bookmark", STATE_ID, "orders", "--value", "2026-01-01T00:00:00Z",
                            "--force", check=False)
    assert bad.returncode == 1
    assert bad.stderr.strip().splitlines() == [
        "Invalid value for --value: '2026-01-01T00:00:00Z' is not a number, and the current "
        "value 5 is one (--any-type to change the type)"]
    assert project.stored() == before


def test_partial_state_from_meltano_is_shown_and_reset_from_both_halves(project):
    project.run(2)
    # what an interrupted run or `meltano state merge` leaves: a partial half
    meltano("state", "merge", STATE_ID, json.dumps({"singer_state": {"bookmarks": {
        "orders": {"replication_key_value": 9}}, "currently_syncing": "orders"}}),
        cwd=project.root, env=project.env)
    text = project.state_ext("streams", STATE_ID).stdout.splitlines()
    assert text[0].split() == ["stream", "replication_key", "replication_key_value",
                               "partitions", "in_flight", "from", "other_keys"]
    assert text[2].split() == ["orders", "id", "9", "0", "-", "partial", '{"new":2}']
    assert text[-1] == 'singer_state.currently_syncing: "orders"'

    project.state_ext("reset", STATE_ID, "orders", "--force")
    exported = json.loads(project.stored())[STATE_ID]
    for half in ("completed", "partial"):
        assert "orders" not in exported[half]["singer_state"]["bookmarks"]
    assert exported["partial"]["singer_state"]["currently_syncing"] == "orders"  # kept
    assert project.run(2) == records(("orders", None, 1, 2))


def test_reset_asks_at_a_terminal_and_no_keeps_the_state(project):
    project.run(1)
    before = project.stored()
    command = [STATE_EXTENSION, "reset", STATE_ID, "items", "orders"]
    declined = run_at_terminal(command, cwd=project.root, env=project.env, answer="n\n")
    assert declined.returncode == 1
    # the change was shown before the question
    assert f"{STATE_ID}: stream 'items'" in declined.stdout
    assert f"{STATE_ID}: stream 'orders'" in declined.stdout
    assert ("This will reset 2 stream bookmark(s) of dev:tap-mini-to-target-mini: items, "
            "orders. Continue? [y/N]") in declined.stderr
    assert project.stored() == before

    accepted = run_at_terminal(command, cwd=project.root, env=project.env, answer="y\n")
    assert accepted.returncode == 0, accepted
    assert sorted(project.marks()) == ["events"]


def test_reset_through_meltano_invoke_without_a_terminal_refuses(project):
    project.run(1)
    before = project.stored()
    refused = meltano("invoke", "state-ext:reset", STATE_ID, "items", cwd=project.root,
                      env=project.env, check=False)
    assert refused.returncode != 0
    assert "pass --force to confirm" in refused.stdout + refused.stderr
    assert project.stored() == before
