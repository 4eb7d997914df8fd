"""state-ext as Meltano users meet it (issue 9), with the real Meltano 4.4.x CLI.

A new `meltano init` project adds the utility with the README's exact command,
`meltano add --plugin-type utility state-ext --from-ref ../state-ext/plugin/state-ext.yml`
(``../state-ext`` is a link to this checkout, the clone the definition's pip_url names),
then runs every command of the definition through `meltano invoke`, a 5,000-state run
step through `meltano run`, prompts at a real terminal and logs as Meltano shows them.
Meltano processes cost 1-3 s each: the project is made once per module.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.support.cli import REPO_ROOT, clean_env, meltano, meltano_path
from tests.support.terminal import run_at_terminal

pytestmark = pytest.mark.meltano

SINGER = Path(__file__).resolve().parent / "support" / "singer"
DEFINITION = yaml.safe_load((REPO_ROOT / "plugin" / "state-ext.yml").read_text())


def singer(bookmarks: dict) -> dict:
    return {"singer_state": {"bookmarks": bookmarks}}


STATES = {
    "dev:tap-a-to-target-b": {"completed": singer({"s1": {"k": 1}}),
                              "partial": singer({"s2": {"k": 2}})},
    "prod:tap-a-to-target-b:blue": {"completed": singer({"ü": {"v": "ñ"}}), "partial": {}},
}


class Project:
    def __init__(self, root: Path, env: dict) -> None:
        self.root, self.env = root, env

    def meltano(self, *args, check=True, env=None, timeout=300):
        return meltano(*args, cwd=self.root, env={**self.env, **(env or {})}, check=check,
                       timeout=timeout)

    def invoke(self, *args, check=True, env=None):
        return self.meltano("invoke", *args, check=check, env=env)

    def export(self) -> dict:
        return self.meltano("state", "export").json()


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """`meltano init`, then the README's `meltano add ... --from-ref`, then Meltano's state."""
    base = tmp_path_factory.mktemp("native")
    (base / "state-ext").symlink_to(REPO_ROOT)  # the clone next to the project
    env = clean_env()
    meltano("init", "--no-usage-stats", "proj", cwd=base, env=env)
    root = base / "proj"
    added = meltano("add", "--plugin-type", "utility", "state-ext", "--from-ref",
                    "../state-ext/plugin/state-ext.yml", cwd=root, env=env, timeout=600)
    assert "Installed utility 'state-ext'" in added.stdout + added.stderr, str(added)
    doc = yaml.safe_load((root / "meltano.yml").read_text())
    doc["state_backend"] = {"lock_timeout_seconds": 7}  # a setting config traces back
    doc["plugins"]["extractors"] = [{"name": "tap-mini", "namespace": "tap_mini",
                                     "executable": str(SINGER / "tap_mini.py"),
                                     "capabilities": ["state"]}]
    doc["plugins"]["loaders"] = [{"name": "target-mini", "namespace": "target_mini",
                                  "executable": str(SINGER / "target_mini.py")}]
    (root / "meltano.yml").write_text(yaml.safe_dump(doc, sort_keys=False))
    (base / "states.json").write_text(json.dumps(STATES))
    project = Project(root, env)
    project.meltano("state", "import", str(base / "states.json"))
    return project


def test_the_definition_is_what_meltano_added(project):
    added = yaml.safe_load((project.root / "meltano.yml").read_text())["plugins"]["utilities"]
    assert [p["name"] for p in added] == ["state-ext"]
    plugin = added[0]
    assert plugin["commands"] == DEFINITION["commands"]
    assert [s["name"] for s in plugin["settings"]] == [s["name"] for s in DEFINITION["settings"]]
    assert (project.root / ".meltano/utilities/state-ext/venv/bin/state_extension").is_file()
    # destructive commands ask: nothing is confirmed in advance
    assert all("--force" not in c["args"] for c in DEFINITION["commands"].values())


def test_repo_root_project_mirrors_the_definition():
    root = yaml.safe_load((REPO_ROOT / "meltano.yml").read_text())
    plugin = root["plugins"]["utilities"][0]
    for key in ("namespace", "variant", "executable", "settings", "commands"):
        assert plugin[key] == DEFINITION[key], key


def test_every_command_of_the_definition_through_meltano_invoke(project, tmp_path):
    p = project
    assert json.loads(p.invoke("state-ext:describe").stdout)["commands"][0]["name"] == (
        "state_extension")
    p.invoke("state-ext:initialize")
    assert (p.root / "state-ext" / "exports").is_dir()
    config = p.invoke("state-ext:config").stdout
    assert "state_backend.lock_timeout_seconds: 7  [meltano.yml;" in config, config
    assert "state_backend.lock_retry_seconds: 1  [default;" in config, config
    assert "[env;" not in config, config  # what Meltano passed is traced to its origin
    assert p.invoke("state-ext:list").stdout.splitlines() == sorted(STATES)
    got = p.invoke("state-ext:get", "dev:tap-a-to-target-b").json()
    assert got == singer({"s1": {"k": 1}, "s2": {"k": 2}})
    assert p.invoke("state-ext:export").json() == STATES == p.export()

    p.invoke("state-ext:set", "dev:new", json.dumps(singer({"n": {"v": 1}})), "--force")
    p.invoke("state-ext:merge", "dev:new", json.dumps(singer({"m": {"v": 2}})))
    p.invoke("state-ext:copy", "dev:new", "dev:copied", "--force")
    p.invoke("state-ext:move", "dev:copied", "dev:moved", "--force")
    exported = p.export()
    assert exported["dev:moved"] == exported["dev:new"] == {
        "completed": singer({"n": {"v": 1}}), "partial": singer({"m": {"v": 2}})}
    assert "dev:copied" not in exported
    p.invoke("state-ext:clear", "dev:moved", "--force")

    store = tmp_path / "migrated"
    migrated = p.invoke("state-ext:migrate", "--to", f"file://{store}", "--format", "json")
    assert migrated.json()["copied"] == len(STATES) + 1
    assert p.invoke("state-ext:diff", "--to", f"file://{store}").stdout == ""

    exported = p.export()
    files = p.invoke("state-ext:export-file")
    [written] = (p.root / "state-ext" / "exports").glob("state-*.json")
    assert json.loads(written.read_text()) == exported
    assert files.stdout == ""
    assert f"Exported {len(exported)} state(s) to state-ext/exports/" in files.stderr

    p.invoke("state-ext:clear", "dev:new", "--force")
    p.invoke("state-ext:import", str(written))
    assert p.export() == exported
    written.unlink()

    # the safe-run commands: snapshot (run step), guard (run step), snapshots, history, restore
    name = p.invoke("state-ext:snapshot").stdout.strip()
    assert name.endswith("--pre-run.json.gz"), name
    assert name in p.invoke("state-ext:snapshots").stdout
    assert p.invoke("state-ext:guard").returncode == 0
    history = p.invoke("state-ext:history", "dev:tap-a-to-target-b")
    # versions that differ, each with where it came from (the import's safety snapshot)
    assert ".json.gz first seen" in history.stdout, str(history)
    assert "source snapshots: read" in history.stderr, str(history)
    p.invoke("state-ext:clear", "dev:tap-a-to-target-b", "--force", "--no-snapshot")
    p.invoke("state-ext:restore", name, "--force")
    assert p.export() == exported

    # streams, health and locks: streams, check (and `meltano test`), locks, unlock, doctor,
    # reset, bookmark
    rows = p.invoke("state-ext:streams", "dev:tap-a-to-target-b").stdout.splitlines()
    assert [r.split()[0] for r in rows[1:]] == ["s1", "s2"], rows
    assert "0 error(s)" in p.invoke("state-ext:check").stderr
    tested = p.meltano("test", "state-ext")
    assert "state-ext:test" in tested.stdout + tested.stderr, str(tested)
    assert "No locks found." in p.invoke("state-ext:locks").stderr
    no_lock = p.invoke("state-ext:unlock", "dev:tap-a-to-target-b", check=False)
    # the project's backend is the system database: its locks live inside transactions
    assert no_lock.returncode == 1 and "`locks` shows its runs rows" in no_lock.stderr
    assert "can be listed, read, written and deleted" in p.invoke("state-ext:doctor").stderr
    p.invoke("state-ext:reset", "dev:tap-a-to-target-b", "s2", "--force")
    p.invoke("state-ext:bookmark", "dev:tap-a-to-target-b", "s1", "--key", "k", "--value", "7",
             "--force")
    after = p.meltano("state", "get", "dev:tap-a-to-target-b").json()
    assert after == {"singer_state": {"bookmarks": {
        "s1": {"k": 1, "replication_key": "k", "replication_key_value": 7}}}}, after


def test_destructive_commands_under_meltano_ask_or_refuse(project):
    p = project
    before = p.export()
    # no terminal (CI, a run step): refused at once, one line naming --force
    for args in (["state-ext:clear", "--all"], ["state-ext:set", "dev:tap-a-to-target-b",
                                                  json.dumps(singer({}))]):
        refused = p.invoke(*args, check=False)
        assert refused.returncode == 1, str(refused)
        assert "[error" in refused.stderr and "pass --force" in refused.stderr, str(refused)
    assert p.export() == before
    # a person at a terminal: the prompt shows before the answer (the helper waits for it)
    declined = run_at_terminal([meltano_path(), "invoke", "state-ext:clear", "--all"],
                               cwd=p.root, env=p.env, answer="n\n")
    assert declined.returncode == 1 and "Aborted" in declined.stderr, str(declined)
    assert p.export() == before
    cleared = run_at_terminal([meltano_path(), "invoke", "state-ext:clear",
                               "prod:tap-a-to-target-b:blue"], cwd=p.root, env=p.env,
                              answer="y\n")
    assert cleared.returncode == 0, str(cleared)
    assert "This will clear state for the job(s). Continue? [y/N]" in cleared.stderr
    assert "prod:tap-a-to-target-b:blue" not in p.export()
    p.meltano("state", "set", "--force", "prod:tap-a-to-target-b:blue",
              json.dumps(before["prod:tap-a-to-target-b:blue"]["completed"]))


def test_log_levels_under_meltano(project):
    p = project
    failed = p.invoke("state-ext:get", "../x", check=False)
    assert failed.returncode == 1
    [line] = [x for x in failed.stderr.splitlines() if "Invalid state ID" in x]
    assert "[error    ] Invalid state ID '../x'" in line, line
    listed = p.invoke("state-ext:list", "--pattern", "nothing-*")
    assert "[info     ] No state IDs found." in listed.stderr, str(listed)

    as_json = p.invoke("state-ext:get", "../x", check=False, env={"MELTANO_LOG_JSON": "true"})
    [line] = [x for x in as_json.stderr.splitlines() if "Invalid state ID" in x]
    record = json.loads(line[line.index("{"):])
    assert record["level"] == "error" and record["timestamp"]
    assert record["event"].startswith("Invalid state ID '../x'")


def test_run_step_exports_5000_states_without_hanging(project, tmp_path):
    """`meltano run` reads a utility's stdout with a 64 KiB line limit: the file step
    carries any size, the stdout step lays out a state per line, and a state too big for
    one line stops the chain at once (before the tap runs) naming --output."""
    p = project
    many = {f"dev:tap-{i:04d}-to-target": {"completed": singer({"s": {"k": i}}), "partial": {}}
            for i in range(5000)}
    many["dev:big"] = {"completed": {"singer_state": {"blob": "x" * 200_000}}, "partial": {}}
    doc = tmp_path / "many.json"
    doc.write_text(json.dumps(many))
    p.meltano("state", "import", str(doc))
    expected = p.export()

    p.meltano("run", "state-ext:export-file", "tap-mini", "target-mini", timeout=240)
    [written] = (p.root / "state-ext" / "exports").glob("state-*.json")
    assert json.loads(written.read_text()) == expected
    # Meltano's bytes, in state ID order (Meltano's own order is the backend's)
    ordered = dict(sorted(expected.items()))
    assert written.read_text() == json.dumps(ordered, separators=(",", ":")) + "\n"
    written.unlink()

    p.meltano("state", "clear", "--force", "dev:tap-mini-to-target-mini")
    stopped = p.meltano("run", "state-ext:export", "tap-mini", "target-mini", check=False,
                        timeout=240)
    assert stopped.returncode == 1, str(stopped)
    assert "longer than the 64 KiB" in stopped.stderr and "--output" in stopped.stderr
    assert "dev:tap-mini-to-target-mini" not in p.export()  # the chain stopped first

    p.meltano("state", "clear", "--force", "dev:big")
    expected = sum(1 for i in p.export() if i.startswith("dev:tap-"))
    assert expected > 5000
    ran = p.meltano("run", "state-ext:export", "tap-mini", "target-mini", timeout=240)
    lines = [x for x in ran.stderr.splitlines() if "state-ext" in x and '"dev:tap-' in x]
    assert len(lines) == expected  # one state per line, every one of them
    assert "Separator is not found" not in ran.stderr


def test_invoke_export_to_a_pipe_of_the_users_stays_one_line(project):
    """`meltano invoke` passes stdout through: a pipe of the user's is not Meltano's, so
    the export keeps `meltano state export`'s exact bytes."""
    p = project
    proc = subprocess.run(
        f"'{meltano_path()}' invoke state-ext:export | cat", shell=True, cwd=p.root,
        env=p.env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("\n") == 1  # one line, not a state per line
    ordered = dict(sorted(p.export().items()))
    assert proc.stdout == json.dumps(ordered, separators=(",", ":")) + "\n"
