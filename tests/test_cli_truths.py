"""Small CLI truths (issue 9 items 4-6): version, option errors that name what was given,
import on a terminal, --uri on migrate, honest migrate reports, a destination checked
once before writing, SDK debug logs kept quiet. Real processes, real stores."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from state_ext import __version__
from tests.support.cli import STATE_EXTENSION, clean_env, state_ext
from tests.support.emulators import S3_KEY, S3_SECRET, s3_server, unique_bucket  # noqa: F401
from tests.support.terminal import run_at_terminal


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def seed_file_store(root, states: dict) -> None:
    """Meltano's file layout: <root>/<id>/state.json holding json.dumps of the envelope."""
    for state_id, envelope in states.items():
        (root / state_id).mkdir(parents=True)
        (root / state_id / "state.json").write_text(json.dumps(envelope))


def envelope(i: int) -> dict:
    return {"completed": {"singer_state": {"bookmarks": {"s": {"k": i}}}}, "partial": {}}


def test_version(tmp_path):
    result = state_ext("--version", cwd=tmp_path, env=clean_env())
    assert result.stdout == f"state_extension, version {__version__}\n"


def test_option_errors_name_what_was_given(tmp_path):
    env = clean_env(STATE_EXT_MIGRATE_TO=f"file://{tmp_path}/dst")
    src = f"file://{tmp_path}/src"
    given = state_ext("migrate", "--uri", src, "--on-conflict", "bogus", cwd=tmp_path,
                      env=env, check=False)
    assert given.returncode == 2 and "--on-conflict" in given.stderr, str(given)
    assert "STATE_EXT_MIGRATE_ON_CONFLICT" not in given.stderr, str(given)

    for var, value in (("STATE_EXT_MIGRATE_ON_CONFLICT", "bogus"),
                       ("STATE_EXT_MIGRATE_CONCURRENCY", "lots"),
                       ("STATE_EXT_MIGRATE_DELETE_SOURCE", "maybe")):
        from_env = state_ext("migrate", "--uri", src, cwd=tmp_path, env={**env, var: value},
                             check=False)
        assert from_env.returncode == 2, str(from_env)
        [line] = lines(from_env.stderr)
        assert var in line and repr(value) in line, line
        assert "Traceback" not in from_env.stderr
    assert not (tmp_path / "dst").exists()


def test_migrate_takes_uri_as_its_source(tmp_path):
    seed_file_store(tmp_path / "src", {"a": envelope(1)})
    got = state_ext("migrate", "--uri", f"file://{tmp_path}/src", "--to",
                    f"file://{tmp_path}/dst", "--format", "json", cwd=tmp_path,
                    env=clean_env()).json()
    assert got["copied"] == 1
    assert json.loads((tmp_path / "dst" / "a" / "state.json").read_text()) == envelope(1)


def test_import_on_a_terminal_says_how_to_pass_a_document(tmp_path):
    result = run_at_terminal([STATE_EXTENSION, "import", "--uri", f"file://{tmp_path}/s"],
                             cwd=tmp_path, env=clean_env(), timeout=30)
    assert result.returncode == 2, str(result)
    [line] = lines(result.stderr)
    assert "give its file" in line and "standard input" in line, line
    assert not (tmp_path / "s").exists()


@pytest.fixture
def immutable(tmp_path):
    """A folder nobody can write, root included (permissions do not stop root)."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    done = subprocess.run(["chattr", "+i", str(folder)], capture_output=True, text=True)
    assert done.returncode == 0, f"chattr +i is needed for this test: {done.stderr}"
    yield folder
    subprocess.run(["chattr", "-i", str(folder)], check=True)


def test_unwritable_destination_is_found_before_any_write(tmp_path, immutable):
    states = {f"dev:tap-{i:04d}-to-target": envelope(i) for i in range(5002)}
    seed_file_store(tmp_path / "src", states)
    for command in (["migrate", "--uri", f"file://{tmp_path}/src", "--to",
                     f"file://{immutable}"],
                    ["copy", "--force", "--uri", f"file://{tmp_path}/src", "--to",
                     f"file://{immutable}", "dev:tap-0001-to-target"]):
        result = state_ext(*command, cwd=tmp_path, env=clean_env(), check=False)
        assert result.returncode == 1, str(result)
        errors = [x for x in lines(result.stderr) if "migrating state" not in x]
        assert len(errors) == 1, str(result)
        assert "does not accept writes, so nothing was written" in errors[0], errors[0]
        assert "states/s" not in result.stderr
    assert list(immutable.iterdir()) == []
    # import too: one line, nothing written
    doc = tmp_path / "doc.json"
    doc.write_text(json.dumps({"x": envelope(0)}))
    result = state_ext("import", str(doc), "--uri", f"file://{immutable}", cwd=tmp_path,
                       env=clean_env(), check=False)
    assert result.returncode == 1 and len(lines(result.stderr)) == 1, str(result)


def test_a_long_failure_list_is_cut_and_counted(tmp_path):
    """25 IDs that cannot be written (a plain file stands where each state's folder goes):
    20 are listed, the rest counted; the others are copied; the rate is that of a run
    that wrote something."""
    states = {f"id-{i:02d}": envelope(i) for i in range(30)}
    seed_file_store(tmp_path / "src", states)
    dst = tmp_path / "dst"
    dst.mkdir()
    for i in range(25):
        (dst / f"id-{i:02d}").write_text("in the way")
    result = state_ext("migrate", "--uri", f"file://{tmp_path}/src", "--to", f"file://{dst}",
                       "--format", "json", cwd=tmp_path, env=clean_env(), check=False)
    assert result.returncode == 1, str(result)
    got = result.json()
    assert (got["copied"], len(got["failed"])) == (5, 25)
    assert "... and 5 more failed state(s)" in result.stderr, result.stderr
    assert sum(1 for x in lines(result.stderr) if x.startswith("id-")) == 20
    assert "copied 5" in result.stderr and "states/s" in result.stderr


def test_debug_logs_keep_sdk_wire_traffic_out(tmp_path, s3_server):  # noqa: F811
    bucket = unique_bucket()
    s3_server.create_bucket(bucket)
    env = clean_env(MELTANO_STATE_BACKEND_S3_AWS_ACCESS_KEY_ID=S3_KEY,
                    MELTANO_STATE_BACKEND_S3_AWS_SECRET_ACCESS_KEY=S3_SECRET,
                    MELTANO_STATE_BACKEND_S3_ENDPOINT_URL=s3_server.url,
                    AWS_EC2_METADATA_DISABLED="true", AWS_DEFAULT_REGION="us-east-1")
    uri = f"s3://{bucket}/state"
    quiet = state_ext("--log-level", "debug", "list", "--uri", uri, cwd=tmp_path, env=env)
    assert "using state backend" in quiet.stderr  # state-ext's own debug lines
    assert "botocore" not in quiet.stderr.lower() and "Authorization" not in quiet.stderr
    assert len(lines(quiet.stderr)) < 10, quiet.stderr
    loud = state_ext("--log-level", "debug", "--sdk-log-level", "debug", "list", "--uri", uri,
                     cwd=tmp_path, env=env)
    assert len(lines(loud.stderr)) > 20, loud.stderr  # asked for, the SDKs speak


def test_unwritable_system_database_is_found_before_any_write(tmp_path, immutable):
    """A read-only SQLite system database: one line, and the check itself leaves no row."""
    import sqlite3

    seed_file_store(tmp_path / "src", {"a": envelope(1)})
    project = tmp_path / "project"
    project.mkdir()
    (project / "meltano.yml").write_text("project_id: t\ndefault_environment: dev\n")
    db = immutable / "meltano.db"
    subprocess.run(["chattr", "-i", str(immutable)], capture_output=True)
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE state (state_id VARCHAR(900) NOT NULL PRIMARY KEY, "
                     "partial_state VARCHAR, completed_state VARCHAR, updated_at DATETIME)")
    if os.geteuid() == 0:
        subprocess.run(["chattr", "+i", str(db), str(immutable)], check=True)
    else:
        db.chmod(0o444)
    env = clean_env(MELTANO_DATABASE_URI=f"sqlite:///{db}")
    try:
        result = state_ext("migrate", "--uri", f"file://{tmp_path}/src", "--to", "systemdb",
                           cwd=project, env=env, check=False)
    finally:
        subprocess.run(["chattr", "-i", str(db)], capture_output=True)
    assert result.returncode == 1, str(result)
    errors = [x for x in lines(result.stderr) if "migrating state" not in x]
    assert len(errors) == 1 and "does not accept writes" in errors[0], str(result)
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM state").fetchone() == (0,)
