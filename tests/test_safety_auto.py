"""Automatic safety snapshots (issue 10 item 6): clear, import, move and migrate
--delete-source first snapshot exactly what they are about to delete or overwrite, name it
in their summary, and `restore` of it undoes the command; `--no-snapshot` and the setting
`auto_snapshot: false` turn it off. Real processes on a file:// store of a real project."""

from __future__ import annotations

import json
import re

import pytest

from tests.support.cli import clean_env, state_ext
from tests.support.project import write_project


def envelope(i: int) -> dict:
    return {"completed": {"singer_state": {"bookmarks": {"s": {"k": i}}}}, "partial": {}}


STATES = {f"dev:tap-{i}-to-target": envelope(i) for i in range(4)}


@pytest.fixture
def proj(tmp_path):
    root = write_project(tmp_path / "project")
    store = tmp_path / "store"
    env = clean_env(MELTANO_STATE_BACKEND_URI=f"file://{store}")
    doc = tmp_path / "seed.json"
    doc.write_text(json.dumps(STATES))
    state_ext("import", str(doc), "--no-snapshot", cwd=root, env=env)

    def run(*args, check=True, **extra):
        return state_ext(*args, cwd=root, env={**env, **extra}, check=check)

    def export():
        return run("export").json()

    def snapshots():
        return run("snapshots", "--format", "json").json()["snapshots"]

    run.export, run.snapshots, run.root = export, snapshots, root
    return run


def named_snapshot(result) -> str:
    match = re.search(r"safety snapshot (\S+) \(undo: state_extension restore (\S+)\)",
                      result.stderr)
    assert match and match.group(1) == match.group(2), result.stderr
    return match.group(1)


def test_clear_all_is_undone_by_restoring_its_snapshot(proj):
    cleared = proj("clear", "--all", "--force")
    name = named_snapshot(cleared)
    assert proj.export() == {}
    [taken] = proj.snapshots()
    assert (taken["name"], taken["label"], taken["states"]) == (name, "clear", len(STATES))
    proj("restore", name, "--force")
    assert proj.export() == STATES


def test_each_destructive_command_snapshots_what_it_changes(proj, tmp_path):
    one = "dev:tap-1-to-target"
    named_snapshot(proj("clear", one, "--force"))
    doc = tmp_path / "doc.json"
    doc.write_text(json.dumps({"dev:tap-2-to-target": envelope(20), "new": envelope(99)}))
    named_snapshot(proj("import", str(doc)))
    named_snapshot(proj("move", "dev:tap-3-to-target", "dev:tap-0-to-target", "--force"))
    migrated = proj("migrate", "--to", f"file://{tmp_path}/elsewhere", "--delete-source",
                    "--pattern", "new")
    named_snapshot(migrated)
    taken = {s["label"]: s for s in proj.snapshots()}
    assert set(taken) == {"clear", "import", "move", "migrate"}
    # exactly what each was about to change: IDs without state are left out
    assert taken["clear"]["states"] == 1
    assert taken["import"]["states"] == 1  # "new" did not exist yet
    assert taken["move"]["states"] == 2  # the source and the destination it overwrote
    assert taken["migrate"]["states"] == 1
    proj("restore", taken["move"]["name"], "--force")
    after = proj.export()
    assert after["dev:tap-0-to-target"] == envelope(0)
    assert after["dev:tap-3-to-target"] == envelope(3)


def test_no_snapshot_option_and_setting(proj, tmp_path):
    quiet = proj("clear", "dev:tap-0-to-target", "--force", "--no-snapshot")
    assert "safety snapshot" not in quiet.stderr
    off = proj("clear", "dev:tap-1-to-target", "--force", STATE_EXT_AUTO_SNAPSHOT="false")
    assert "safety snapshot" not in off.stderr
    assert proj.snapshots() == []


def test_outside_a_project_the_command_goes_on_and_says_so(tmp_path):
    store = tmp_path / "store"
    (store / "a").mkdir(parents=True)
    (store / "a" / "state.json").write_text(json.dumps(envelope(1)))
    result = state_ext("clear", "a", "--force", "--uri", f"file://{store}", cwd=tmp_path,
                       env=clean_env())
    assert "No safety snapshot" in result.stderr and "successfully cleared" in result.stderr
    assert not (store / "a").exists()
