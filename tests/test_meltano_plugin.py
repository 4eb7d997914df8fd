"""state-ext as a Meltano utility plugin: `meltano install` + `meltano invoke state-ext:...`.

Uses the repository's own meltano.yml (utility `state-ext`, pip_url `-e .`), with
MELTANO_SYS_DIR_ROOT pointing at a temporary directory so that the plugin venv and the
system database live there and the developer's `.meltano/` is never touched. The state is
written by the real Meltano (`meltano state import`) and read through `meltano invoke`.
Install costs a few seconds and each invoke ~2-4 s: one install per module, few invokes.
"""

from __future__ import annotations

import json

import pytest

from tests.support.cli import REPO_ROOT, clean_env, meltano

pytestmark = pytest.mark.meltano

STATES = {
    "dev:tap-a-to-target-b": {
        "completed": {"singer_state": {"bookmarks": {"s1": {"k": 1}}}},
        "partial": {"singer_state": {"bookmarks": {"s2": {"k": 2}}}},
    },
    "prod:tap-a-to-target-b:blue": {
        "completed": {"singer_state": {"name": "ü-ñ"}},
        "partial": {},
    },
    "plain-job": {
        "completed": {},
        "partial": {"singer_state": {"only": "partial"}},
    },
}


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The repo-root project installed into a temporary system dir, with Meltano's state."""
    sys_dir = tmp_path_factory.mktemp("meltano-sys")
    env = clean_env(MELTANO_SYS_DIR_ROOT=str(sys_dir))
    meltano("install", cwd=REPO_ROOT, env=env, timeout=600)
    assert (sys_dir / "utilities" / "state-ext" / "venv" / "bin" / "state_extension").is_file()
    doc = sys_dir / "import.json"
    doc.write_text(json.dumps(STATES), encoding="utf-8")
    meltano("state", "import", str(doc), cwd=REPO_ROOT, env=env)
    assert (sys_dir / "meltano.db").is_file()
    return env


def invoke(env, *args, check=True):
    return meltano("invoke", *args, cwd=REPO_ROOT, env=env, check=check)


def test_describe(installed):
    described = invoke(installed, "state-ext:describe").json()
    commands = described["commands"]
    assert [c["name"] for c in commands] == ["state_extension"]
    assert {"describe", "initialize", "invoke", "list", "get", "set", "merge", "clear",
            "copy", "move", "export", "import"} <= set(commands[0]["commands"])


def test_invoke_reads_what_meltano_wrote(installed):
    listed = invoke(installed, "state-ext:list")
    assert listed.stdout.splitlines() == sorted(STATES)
    assert invoke(installed, "state-ext:export").json() == STATES
    got = invoke(installed, "state-ext:get", "dev:tap-a-to-target-b")
    assert got.stdout == '{"singer_state":{"bookmarks":{"s1":{"k":1},"s2":{"k":2}}}}\n'
    got = invoke(installed, "state-ext:get", "plain-job")
    assert got.json() == {"singer_state": {"only": "partial"}}


def test_invoke_failure_is_a_non_zero_exit(installed):
    failed = invoke(installed, "state-ext:get", "../x", check=False)
    assert failed.returncode != 0
    assert failed.stdout == ""
    assert "Invalid state ID '../x'" in failed.stderr


def test_invoke_writes_what_meltano_reads(installed):
    """Runs last: it leaves the module's store as the import made it."""
    state_id = "dev:tap-written-to-target-ext"
    invoke(installed, "state-ext:set", state_id, '{"singer_state": {"a": 1}}', "--force")
    invoke(installed, "state-ext:merge", state_id, '{"singer_state": {"b": 2}}')
    exported = meltano("state", "export", cwd=REPO_ROOT, env=installed).json()
    assert exported == {**STATES, state_id: {"completed": {"singer_state": {"a": 1}},
                                             "partial": {"singer_state": {"b": 2}}}}
    invoke(installed, "state-ext:clear", state_id, "--force")
    listed = meltano("state", "list", cwd=REPO_ROOT, env=installed)
    assert sorted(listed.stdout.splitlines()) == sorted(STATES)
