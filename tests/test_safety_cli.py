"""snapshot / snapshots / restore / guard as processes, on a real SQLite system database
made by Meltano: atomic snapshots (SIGKILL), bad input (one line, nothing written),
--exact, --pattern, pruning, listing 1,000 snapshots."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import signal
import subprocess
import time
from datetime import datetime, timedelta, timezone

import pytest

from tests.support.cli import STATE_EXTENSION, clean_env, one_error_line, state_ext
from tests.support.safe_runs import STATES, singer


class Cli:
    def __init__(self, root, env):
        self.root, self.env = root, env

    def __call__(self, *args, check=True, input=None):
        return state_ext(*args, cwd=self.root, env=self.env, check=check, input=input)

    def export(self) -> dict:
        return self("export").json()

    def set(self, state_id: str, state: dict) -> None:
        self("set", "--force", state_id, json.dumps(state))

    @property
    def folder(self):
        return self.root / ".meltano" / "state-ext" / "snapshots"

    def names(self) -> list[str]:
        return sorted(p.name for p in self.folder.glob("*.json.gz"))


@pytest.fixture
def cli(meltano_project, tmp_path):
    cli = Cli(meltano_project, clean_env())
    (tmp_path / "states.json").write_text(json.dumps(STATES))
    cli("import", str(tmp_path / "states.json"))
    return cli


def test_snapshot_is_the_export_document_gzipped_with_a_sidecar(cli):
    name = cli("snapshot", "--label", "pre-run").stdout.strip()
    assert name.endswith("Z--pre-run.json.gz") and cli.names() == [name]
    document = gzip.decompress((cli.folder / name).read_bytes()).decode()
    assert document == cli("export").stdout  # byte for byte
    meta = json.loads((cli.folder / name.replace(".json.gz", ".meta.json")).read_text())
    assert meta["states"] == 3 and meta["label"] == "pre-run" and meta["scope"] == "all"
    assert meta["bytes"] == (cli.folder / name).stat().st_size
    assert meta["source"].startswith("systemdb (sqlite:///")

    dev = cli("snapshot", "--pattern", "dev:*", "--label", "dev").stdout.strip()
    assert sorted(json.loads(gzip.decompress((cli.folder / dev).read_bytes()))) == [
        "dev:tap-a-to-target-b", "dev:tap-c-to-target-b"]
    listed = cli("snapshots", "--format", "json").json()["snapshots"]
    assert [s["name"] for s in listed] == [dev, name]  # newest first
    assert [s["states"] for s in listed] == [2, 3]


def test_restore_shows_asks_snapshots_then_writes(cli):
    name = cli("snapshot").stdout.strip()
    before = cli.export()
    cli.set("dev:tap-a-to-target-b", singer(orders="2020-01-01"))
    cli("clear", "--force", "--no-snapshot", "dev:tap-c-to-target-b")
    cli.set("dev:new-to-target-b", singer(x=1))

    dry = cli("restore", name, "--dry-run")
    assert dry.stdout.splitlines() == ["+ dev:tap-c-to-target-b", "! dev:tap-a-to-target-b"]
    assert "1 not in the snapshot (left alone)" in dry.stderr
    refused = cli("restore", "--latest", check=False, input="")  # stdin is not a terminal
    assert refused.returncode == 1 and refused.stdout == dry.stdout  # shown, then refused
    assert refused.stderr.splitlines()[-1].endswith("pass --force to confirm")
    assert cli.names() == [name]  # no safety snapshot, nothing written

    done = cli("restore", "--latest", "--force")
    assert "Restored 2 state(s)" in done.stderr and "to undo: restore " in done.stderr
    after = cli.export()
    assert after.pop("dev:new-to-target-b") and after == before
    safety = [n for n in cli.names() if n != name]
    assert len(safety) == 1 and safety[0].endswith("--pre-restore.json.gz")
    held = json.loads(gzip.decompress((cli.folder / safety[0]).read_bytes()))
    assert list(held) == ["dev:tap-a-to-target-b"]  # exactly what was overwritten
    assert held["dev:tap-a-to-target-b"]["completed"] == singer(orders="2020-01-01")
    again = cli("restore", name, "--force")
    assert "Nothing to restore" in again.stderr

    cli.set("dev:tap-a-to-target-b", singer(orders="2021-01-01"))
    quiet = Cli(cli.root, {**cli.env, "STATE_EXT_AUTO_SNAPSHOT": "false"})  # the setting
    assert "to undo" not in quiet("restore", name, "--force").stderr
    assert len(cli.names()) == 2 and cli.export()["dev:tap-a-to-target-b"] == before[
        "dev:tap-a-to-target-b"]


def test_restore_exact_and_pattern(cli):
    dev = cli("snapshot", "--pattern", "dev:*", "--label", "dev").stdout.strip()
    cli.set("dev:new-to-target-b", singer(x=1))
    cli.set("prod:tap-a-to-target-b", singer(orders="2000-01-01"))
    cli.set("dev:tap-c-to-target-b", singer(items=1))

    cli("restore", "--latest", "--pattern", "dev:tap-c*", "--force")
    assert cli.export()["dev:tap-c-to-target-b"] == STATES["dev:tap-c-to-target-b"]
    assert "dev:new-to-target-b" in cli.export()

    cli("restore", dev, "--exact", "--force", "--no-snapshot")
    states = cli.export()
    assert "dev:new-to-target-b" not in states  # cleared: the snapshot holds all of dev:*
    assert states["prod:tap-a-to-target-b"]["completed"] == singer(orders="2000-01-01")
    assert len([n for n in cli.names() if "pre-restore" in n]) == 1  # the first restore's

    cli.set("dev:new-to-target-b", singer(x=2))
    cli.set("dev:tap-a-to-target-b", singer(orders="2030-01-01"))
    cli("restore", "--latest", "--force")  # writes a pre-restore snapshot of one ID
    refused = cli("restore", "--latest", "--exact", "--force", check=False)
    one_error_line(refused, "--exact cannot be used", "holds only listed state IDs")


def test_bad_snapshots_are_one_line_and_nothing_is_written(cli):
    name = cli("snapshot").stdout.strip()
    cli.set("dev:tap-a-to-target-b", singer(orders="2020-01-01"))
    current = cli.export()

    one_error_line(cli("restore", "20200101T000000.000000Z--nope", "--force", check=False),
                   "No snapshot named '20200101T000000.000000Z--nope'", "1 snapshot(s) there")
    one_error_line(cli("restore", "--before", "2001-01-01", "--force", check=False),
                   "No snapshot before 2001-01-01T00:00:00.000000Z", "the oldest is from")
    one_error_line(cli("restore", "--before", "yesterday", "--force", check=False),
                   "Invalid time 'yesterday'")
    one_error_line(cli("snapshot", "--label", "a/b", check=False), "Invalid snapshot label")

    path = cli.folder / name
    good = path.read_bytes()
    cases = {
        "truncated": good[: len(good) // 2],
        "garbage": b"not gzip at all",
        "not json": gzip.compress(b"{\"a\": "),
        "not a document": gzip.compress(b"[1, 2]"),
    }
    for case, data in cases.items():
        path.write_bytes(data)
        for command in (["restore", "--latest", "--force"], ["guard"]):
            result = cli(*command, check=False)
            one_error_line(result, f"Snapshot {name}")
            assert any(w in result.stderr for w in ("corrupt or truncated", "not valid JSON",
                                                     "not a valid state document",
                                                     "not a state document")), (case, result)
        assert cli.export() == current, case
    assert [n for n in cli.names() if "pre-restore" in n] == []

    one_error_line(cli("snapshots", "--snapshot-uri", "/dev/null/snapshots", check=False),
                   "/dev/null/snapshots")
    one_error_line(cli("snapshot", "--snapshot-uri", "/dev/null/snapshots", check=False),
                   "Snapshot store /dev/null/snapshots: cannot write", "Not a directory")


def test_a_snapshot_killed_midway_leaves_no_snapshot_and_the_next_succeeds(cli, tmp_path):
    many = {f"dev:tap-{i:05d}-to-target-x": {
        "completed": singer(orders=f"2024-01-01T00:{i % 60:02d}:00Z", items=i), "partial": {}}
        for i in range(40_000)}
    (tmp_path / "many.json").write_text(json.dumps(many))
    cli("import", str(tmp_path / "many.json"))
    for attempt in range(3):
        proc = subprocess.Popen([str(STATE_EXTENSION), "snapshot"], cwd=cli.root, env=cli.env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while not list(cli.folder.glob(".tmp-*")) and time.monotonic() < deadline:
            assert proc.poll() is None, "the snapshot ended before it was killed"
            time.sleep(0.005)
        time.sleep(0.05 * attempt)  # a little later into the write each time
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=10) == -signal.SIGKILL
        assert cli.names() == [], attempt  # nothing under a final name
    assert list(cli.folder.glob(".tmp-*"))  # the leftovers are only temporaries...
    assert cli("snapshots", "--format", "json").json()["snapshots"] == []  # ...never listed
    name = cli("snapshot").stdout.strip()
    assert cli.names() == [name]
    assert len(json.loads(gzip.decompress((cli.folder / name).read_bytes()))) == 40_003
    assert "no problems" in cli("guard").stderr


def test_listing_a_thousand_snapshots_and_pruning(cli):
    name = cli("snapshot", "--label", "x").stdout.strip()
    meta = cli.folder / name.replace(".json.gz", ".meta.json")
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    for minute in range(999):
        stamp = (start + timedelta(minutes=minute)).strftime("%Y%m%dT%H%M%S.%fZ")
        shutil.copyfile(cli.folder / name, cli.folder / f"{stamp}--old.json.gz")
        shutil.copyfile(meta, cli.folder / f"{stamp}--old.meta.json")
    started = time.monotonic()
    listed = cli("snapshots", "--format", "json").json()["snapshots"]
    assert time.monotonic() - started < 3
    assert len(listed) == 1000 and listed[0]["name"] == name
    assert listed[1]["time"] == "2026-01-01T16:38:00.000000Z" and listed[1]["states"] == 3

    cli("snapshots", "prune", "--older-than", "1d")
    assert cli.names() == [name]
    for _ in range(3):
        cli("snapshot", "--label", "y", "--keep", "2")
    assert len(cli.names()) == 2 and not any(n == name for n in cli.names())
    assert len(list(cli.folder.glob("*.meta.json"))) == 2
    one_error_line(cli("snapshots", "prune", check=False), "Give --keep N and/or --older-than",
                   code=2)
    one_error_line(cli("snapshots", "prune", "--older-than", "7 days", check=False),
                   "Invalid value for --older-than: '7 days'")


def test_guard_cli_allow_and_json(cli):
    cli("snapshot")
    cli.set("dev:tap-a-to-target-b", singer(orders="2024-04-30T23:59:59+00:00"))
    cli.set("dev:tap-c-to-target-b", {"singer_state": {}})
    cli.set("prod:tap-a-to-target-b", singer(orders="2024-06-01T00:00:01"))  # forwards
    failed = cli("guard", check=False)
    assert failed.returncode == 1
    assert failed.stderr.splitlines()[:2] == [
        "dev:tap-a-to-target-b: stream 'orders': bookmark moved backwards: "
        "2024-05-01T00:00:00Z → 2024-04-30T23:59:59+00:00",
        "dev:tap-c-to-target-b: state emptied: 1 stream bookmark(s) → {\"singer_state\":{}}",
    ]
    report = cli("guard", "--format", "json", "--pattern", "dev:tap-a*", check=False)
    assert report.returncode == 1
    assert report.json()["problems"][0]["problem"] == "regress"
    assert report.json()["checked"] == 1
    assert "no problems" in cli("guard", "--allow", "regress,emptied").stderr
    one_error_line(cli("guard", "--allow", "everything", check=False), "Invalid value for --allow")
    one_error_line(cli("guard", "--against", "nope", check=False), "No snapshot named 'nope'")


def test_no_snapshot_yet_is_one_line(meltano_project):
    result = state_ext("guard", cwd=meltano_project, env=clean_env(), check=False)
    one_error_line(result, "No snapshot in", "take one with")
    assert not os.path.exists(meltano_project / ".meltano" / "state-ext")


def test_restore_before_a_time_picks_the_snapshot_before_it(cli):
    first = cli("snapshot", "--label", "first").stdout.strip()
    cli.set("dev:tap-a-to-target-b", singer(orders="2025-01-01"))
    second = cli("snapshot", "--label", "second").stdout.strip()
    times = {s["name"]: s["time"] for s in cli("snapshots", "--format", "json").json()[
        "snapshots"]}
    dry = cli("restore", "--before", times[second], "--dry-run")
    assert f"Restore from snapshot {first}" in dry.stderr
    assert dry.stdout.splitlines() == ["! dev:tap-a-to-target-b"]
    after = cli("restore", "--before", "2999-01-01T00:00:00+02:00", "--dry-run")
    assert f"Restore from snapshot {second}" in after.stderr
    assert "Nothing to restore" in after.stderr
