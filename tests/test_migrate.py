"""`migrate`, `diff` and `copy/move --to` (issue 4), through the real `state_extension`.

Stores are seeded and inspected directly (SQL rows, files), never through state-ext, so a
wrong write cannot hide behind a matching wrong read. Expected bytes are Meltano's own:
``json.dumps`` of each half in the ``state`` table, ``json.dumps`` of the envelope in
``<dir>/<id>/state.json`` (reference meltano-state.md §1.1, §3.1). The SQLite schema is
Meltano's DDL, created without running meltano. A few engine properties that a CLI
cannot provoke on demand (a concurrent writer between plan and write, a destination that
does not read back what was written) go through ``state_ext.transfer.transfer``.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from state_ext.model import Envelope
from tests.support.cli import STATE_EXTENSION, state_ext
from tests.support.emulators import (  # noqa: F401 - fixtures
    StoreCase,
    azure_server,
    gcs_server,
    s3_server,
)
from tests.support.project import write_project
from tests.support.terminal import run_at_terminal

MELTANO_DDL = (
    "CREATE TABLE state (state_id VARCHAR(900) NOT NULL, partial_state VARCHAR, "
    "completed_state VARCHAR, updated_at DATETIME, PRIMARY KEY (state_id), UNIQUE (state_id))"
)
PG_DDL = (
    "CREATE TABLE state (state_id VARCHAR(900) NOT NULL PRIMARY KEY, partial_state VARCHAR, "
    "completed_state VARCHAR, updated_at TIMESTAMP WITHOUT TIME ZONE)"
)


def env_(completed: dict | None = None, partial: dict | None = None) -> dict:
    return {"completed": completed or {}, "partial": partial or {}}


def singer(value) -> dict:
    return {"singer_state": value}


# Both halves, unicode, floats, nulls, lists, nested IDs, an empty envelope.
SAMPLE = {
    "dev:tap-a-to-target-b": env_(singer({"bookmarks": {"s1": {"k": 1}}}),
                                  singer({"bookmarks": {"s2": {"k": 2}, "s1": {"j": 5}}})),
    "prod:tap-a-to-target-b:blue": env_(singer({"name": "ü-ñ €", "float": 1.5, "none": None,
                                                "rows": [1, {"a": {}}]})),
    "partial-only": env_(partial=singer({"only": "partial"})),
    "nested/id": env_(singer({"n": 1})),
    "empty-singer": env_(singer({})),
    "empty-envelope": env_(),
}


# -- raw stores --------------------------------------------------------------------------
class Db:
    """A SQLite system database with Meltano's schema, read and written with sqlite3."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        with sqlite3.connect(path) as conn:
            conn.execute(MELTANO_DDL)

    def seed(self, states: dict[str, dict]) -> None:
        with sqlite3.connect(self.path) as conn:
            conn.executemany(
                "INSERT OR REPLACE INTO state (state_id, completed_state, partial_state) "
                "VALUES (?, ?, ?)",
                [(i, json.dumps(e["completed"]), json.dumps(e["partial"]))
                 for i, e in states.items()],
            )

    def raw(self) -> dict[str, tuple]:
        with sqlite3.connect(self.path) as conn:
            rows = conn.execute(
                "SELECT state_id, completed_state, partial_state FROM state").fetchall()
        return {i: (c, p) for i, c, p in rows}


def db_expected(states: dict[str, dict]) -> dict[str, tuple]:
    return {i: (json.dumps(e["completed"]), json.dumps(e["partial"])) for i, e in states.items()}


def file_seed(root: Path, states: dict[str, dict]) -> None:
    for state_id, envelope in states.items():
        (root / state_id).mkdir(parents=True, exist_ok=True)
        (root / state_id / "state.json").write_text(json.dumps(envelope), encoding="utf-8")


def file_raw(root: Path) -> dict[str, bytes]:
    found = {}
    for dirpath, _dirs, files in os.walk(root):
        if "state.json" in files:
            found[os.path.relpath(dirpath, root)] = (Path(dirpath) / "state.json").read_bytes()
    return found


def file_expected(states: dict[str, dict]) -> dict[str, bytes]:
    return {i: json.dumps(e).encode() for i, e in states.items()}


def all_files(root: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under ``root`` (locks, temporary files included) with bytes and mtime."""
    found = {}
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            path = Path(dirpath) / name
            found[str(path.relative_to(root))] = (path.read_bytes(), path.stat().st_mtime_ns)
    return found


def stray(root: Path) -> list[str]:
    return sorted(p for p in all_files(root) if not p.endswith("/state.json")
                  and p != "state.json")


# -- fixtures and helpers -------------------------------------------------------------------
class Project:
    def __init__(self, root: Path, env: dict) -> None:
        self.root, self.env = root, env
        self.db = Db(root / ".meltano" / "meltano.db")

    def ext(self, *args, check=True, input=None, **extra_env):
        return state_ext(*args, cwd=self.root, env={**self.env, **extra_env}, check=check,
                         input=input)


@pytest.fixture
def proj(project, env) -> Project:
    """A project on systemdb (SQLite, Meltano's schema) with no state."""
    return Project(project, env)


@pytest.fixture
def dst(tmp_path) -> Path:
    return tmp_path / "dst-store"


def uri(path: Path) -> str:
    return f"file://{path}"


def one_line_error(result, *fragments, after_start=False):
    """Non-zero exit, no traceback, one stderr line (plus migrate's opening info line when
    the failure comes after it started)."""
    assert result.returncode != 0, str(result)
    assert "Traceback" not in result.stderr, str(result)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    if after_start and lines and lines[0].startswith("migrating state"):
        lines = lines[1:]
    assert len(lines) == 1, str(result)
    for fragment in fragments:
        assert fragment in result.stderr, str(result)


def report(result) -> dict:
    return json.loads(result.stdout)


# -- exact transfer ---------------------------------------------------------------------------
def test_both_halves_travel_exactly_systemdb_file_systemdb(proj, dst, tmp_path, env):
    proj.db.seed(SAMPLE)
    before = proj.db.raw()

    result = proj.ext("migrate", "--to", uri(dst), "--format", "json")
    got = report(result)
    assert got["total"] == got["copied"] == len(SAMPLE)
    assert (got["overwritten"], got["identical"], got["conflicts"], got["failed"],
            got["mismatched"], got["deleted_from_source"], got["ok"]) == (0, 0, [], {}, [], 0,
                                                                           True)
    assert got["destination"] == uri(dst) and got["source"].startswith("systemdb")
    assert got["elapsed_seconds"] >= 0 and "states_per_second" in got
    # Meltano's file bytes, nothing else left behind (no locks, no temporary files)
    assert file_raw(dst) == file_expected(SAMPLE)
    assert stray(dst) == []
    assert proj.db.raw() == before  # the source is only read
    summary = result.stderr
    assert f"copied {len(SAMPLE)}" in summary and "states/s" in summary

    # ... and back into another project's system database: Meltano's column bytes.
    other = Project(write_project(tmp_path / "other"), env)
    back = other.ext("migrate", "--from", uri(dst), "--to", "systemdb", "--format", "json")
    assert report(back)["copied"] == len(SAMPLE)
    assert other.db.raw() == db_expected(SAMPLE) == before


@pytest.mark.postgres
def test_file_to_postgres_systemdb_exact_rows(proj, tmp_path, postgres_url):
    import psycopg

    dsn = postgres_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(PG_DDL)
    src = tmp_path / "src-store"
    file_seed(src, SAMPLE)
    pg = {"MELTANO_DATABASE_URI": postgres_url}

    got = report(proj.ext("migrate", "--from", uri(src), "--to", "systemdb",
                          "--format", "json", **pg))
    assert got["copied"] == len(SAMPLE) and got["ok"]
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT state_id, completed_state, partial_state FROM state").fetchall()
    assert {i: (c, p) for i, c, p in rows} == db_expected(SAMPLE)
    assert proj.ext("diff", "--uri", uri(src), "--to", "systemdb", **pg).stdout == ""
    # idempotent
    again = report(proj.ext("migrate", "--from", uri(src), "--to", "systemdb",
                            "--format", "json", **pg))
    assert (again["copied"], again["identical"]) == (0, len(SAMPLE))


# -- plan: dry run, conflicts, identical ---------------------------------------------------------
NEW = {f"dev:new-{i}": env_(singer({"i": i}), singer({"p": i})) for i in range(3)}
SAME = {"same": env_(singer({"s": 1}))}
CONFLICT_SRC = {"clash": env_(singer({"v": "source"}), singer({"p": "source"}))}
CONFLICT_DST = {"clash": env_(singer({"v": "destination"}))}


@pytest.fixture
def planned(proj, dst):
    """Source: 3 new IDs, one identical at the destination, one in conflict."""
    proj.db.seed({**NEW, **SAME, **CONFLICT_SRC})
    file_seed(dst, {**SAME, **CONFLICT_DST})
    return proj, dst


def test_dry_run_writes_nothing_and_reports(planned):
    proj, dst = planned
    before, src_before = all_files(dst), proj.db.raw()

    result = proj.ext("migrate", "--to", uri(dst), "--dry-run", "--format", "json", check=False)
    assert result.returncode == 1, str(result)  # the real run would stop on the conflict
    got = report(result)
    assert got["dry_run"] is True
    assert (got["total"], got["would_copy"], got["identical"], got["conflicts"]) == (
        5, 3, 1, ["clash"])
    assert (got["copied"], got["overwritten"], got["states_per_second"]) == (0, 0, None)
    assert "clash" in result.stderr and "would copy 3" in result.stderr
    assert "nothing was written (dry run)" in result.stderr and "states/s" not in result.stderr

    skipped = report(proj.ext("migrate", "--to", uri(dst), "--dry-run", "--format", "json",
                              "--on-conflict", "skip"))
    assert (skipped["would_copy"], skipped["copied"], skipped["identical"],
            skipped["skipped_conflicts"], skipped["conflicts"], skipped["ok"]) == (
        3, 0, 1, ["clash"], [], True)
    over = report(proj.ext("migrate", "--to", uri(dst), "--dry-run", "--format", "json",
                           "--on-conflict", "overwrite"))
    assert (over["would_copy"], over["would_overwrite"], over["identical"]) == (3, 1, 1)
    assert (over["copied"], over["overwritten"]) == (0, 0)

    assert all_files(dst) == before  # same files, bytes and mtimes
    assert proj.db.raw() == src_before


def test_dry_run_does_not_create_the_destination(proj, tmp_path):
    proj.db.seed(NEW)
    target = tmp_path / "not-yet"
    got = report(proj.ext("migrate", "--to", uri(target), "--dry-run", "--format", "json"))
    assert (got["would_copy"], got["copied"]) == (3, 0)
    assert not target.exists()


def test_conflict_fails_before_anything_is_written(planned):
    proj, dst = planned
    before, src_before = all_files(dst), proj.db.raw()
    result = proj.ext("migrate", "--to", uri(dst), "--format", "json", check=False)
    assert result.returncode == 1, str(result)
    got = report(result)
    assert got["conflicts"] == ["clash"] and got["ok"] is False
    # what was planned is not reported as done
    assert (got["would_copy"], got["copied"], got["overwritten"]) == (3, 0, 0)
    assert "clash" in result.stderr and "Traceback" not in result.stderr
    assert "nothing was written" in result.stderr and "copied 3" not in result.stderr
    assert "states/s" not in result.stderr
    # not even the three IDs that were free to copy
    assert all_files(dst) == before
    # --delete-source changes nothing either
    result = proj.ext("migrate", "--to", uri(dst), "--delete-source", check=False)
    assert result.returncode == 1
    assert all_files(dst) == before
    assert proj.db.raw() == src_before


def test_on_conflict_skip_and_overwrite(planned):
    proj, dst = planned
    got = report(proj.ext("migrate", "--to", uri(dst), "--on-conflict", "skip",
                          "--format", "json"))
    assert (got["copied"], got["identical"], got["skipped_conflicts"], got["ok"]) == (
        3, 1, ["clash"], True)
    assert file_raw(dst) == file_expected({**NEW, **SAME, **CONFLICT_DST})

    got = report(proj.ext("migrate", "--to", uri(dst), "--on-conflict", "overwrite",
                          "--format", "json"))
    assert (got["copied"], got["overwritten"], got["identical"]) == (0, 1, 4)
    assert file_raw(dst) == file_expected({**NEW, **SAME, **CONFLICT_SRC})
    assert stray(dst) == []


def test_identical_state_is_skipped_and_not_rewritten(proj, dst):
    proj.db.seed(SAMPLE)
    proj.ext("migrate", "--to", uri(dst))
    first = all_files(dst)
    result = proj.ext("migrate", "--to", uri(dst), "--format", "json")
    got = report(result)
    assert (got["copied"], got["overwritten"], got["identical"], got["ok"]) == (
        0, 0, len(SAMPLE), True)
    assert all_files(dst) == first  # bytes and mtimes: nothing rewritten


def test_pattern_selects_ids(proj, dst):
    proj.db.seed(SAMPLE)
    got = report(proj.ext("migrate", "--to", uri(dst), "--pattern", "*:tap-a-to-target-b*",
                          "--format", "json"))
    assert got["total"] == got["copied"] == 2
    assert sorted(file_raw(dst)) == ["dev:tap-a-to-target-b", "prod:tap-a-to-target-b:blue"]


def test_delete_source_removes_only_verified_ids(planned):
    proj, dst = planned
    result = proj.ext("migrate", "--to", uri(dst), "--delete-source", "--on-conflict", "skip",
                      "--format", "json")
    got = report(result)
    # the three copies and the identical one are at the destination: deleted at the source;
    # the skipped conflict is not.
    assert got["deleted_from_source"] == 4 and got["ok"]
    assert proj.db.raw() == db_expected(CONFLICT_SRC)
    assert file_raw(dst) == file_expected({**NEW, **SAME, **CONFLICT_DST})


def test_plugin_settings_from_env_with_no_options(planned):
    proj, dst = planned
    settings = {"STATE_EXT_MIGRATE_TO": uri(dst), "STATE_EXT_MIGRATE_ON_CONFLICT": "overwrite"}
    result = proj.ext("migrate", **settings)
    assert "overwrote 1" in result.stderr
    assert file_raw(dst) == file_expected({**NEW, **SAME, **CONFLICT_SRC})
    # the other migrate_* settings too
    other = dst.parent / "other"
    proj.ext("migrate", STATE_EXT_MIGRATE_TO=uri(other), STATE_EXT_MIGRATE_PATTERN="dev:*",
             STATE_EXT_MIGRATE_DELETE_SOURCE="true", STATE_EXT_MIGRATE_CONCURRENCY="2")
    assert file_raw(other) == file_expected(NEW)
    assert proj.db.raw() == db_expected({**SAME, **CONFLICT_SRC})


def test_progress_bar_only_on_a_terminal(planned):
    import pty

    proj, dst = planned
    master, slave = pty.openpty()
    try:
        proc = subprocess.run(
            [str(STATE_EXTENSION), "migrate", "--to", uri(dst), "--on-conflict", "skip",
             "--format", "json"],
            cwd=proj.root, env=proj.env, stdout=subprocess.PIPE, stderr=slave, timeout=120)
        os.close(slave)
        chunks = []
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the terminal's other side is closed
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(master)
    terminal = b"".join(chunks).decode()
    assert proc.returncode == 0, terminal
    assert "plan [" in terminal and "5/5" in terminal and "write [" in terminal, terminal
    assert json.loads(proc.stdout)["copied"] == 3  # stdout stays pure JSON
    # not a terminal: no bar (the other tests' stderr has none either)
    result = proj.ext("migrate", "--to", uri(dst), "--on-conflict", "skip")
    assert "[" not in result.stderr.replace("[y/N]", "")


# -- usage errors -----------------------------------------------------------------------------
def test_same_source_and_destination_is_a_one_line_error(proj, tmp_path):
    proj.db.seed(SAMPLE)
    one_line_error(proj.ext("migrate", "--to", "systemdb", check=False), "same backend")
    store = tmp_path / "store"
    file_seed(store, SAMPLE)
    one_line_error(proj.ext("migrate", "--from", uri(store), "--to", uri(store), check=False),
                   "same backend")
    for command in ("copy", "move"):
        one_line_error(proj.ext(command, "--force", "--uri", uri(store), "--to", uri(store),
                                "nested/id", check=False), "same backend")
    assert file_raw(store) == file_expected(SAMPLE)


@pytest.mark.parametrize("spelling", ["file://{}/", "file://localhost{}", "file:///{}"],
                         ids=["trailing-slash", "localhost", "four-slashes"])
def test_same_directory_spelled_differently_is_the_same_backend(proj, tmp_path, spelling):
    """`file:///d` and `file:///d/` (or `file://localhost/d`) are one store: migrating it
    onto itself with --delete-source must not delete the state."""
    store = tmp_path / "store"
    file_seed(store, SAMPLE)
    other = spelling.format(store)
    result = proj.ext("migrate", "--from", uri(store), "--to", other, "--delete-source",
                      check=False)
    assert file_raw(store) == file_expected(SAMPLE), f"state deleted by: {result}"
    one_line_error(result, "same backend")


def test_move_to_the_same_directory_spelled_differently_keeps_the_state(proj, tmp_path):
    store = tmp_path / "store"
    file_seed(store, SAMPLE)
    result = proj.ext("move", "--force", "--uri", uri(store), "--to", uri(store) + "/",
                      "nested/id", check=False)
    assert file_raw(store) == file_expected(SAMPLE), f"state deleted by: {result}"
    one_line_error(result, "same backend")


def test_missing_to_and_bad_options_exit_2(proj):
    proj.db.seed(SAMPLE)
    result = proj.ext("migrate", check=False)
    assert result.returncode == 2, str(result)
    one_line_error(result, "--to")
    for args in (["--on-conflict", "maybe"], ["--concurrency", "0"], ["--format", "xml"]):
        result = proj.ext("migrate", "--to", "file:///tmp/never-written", *args, check=False)
        assert result.returncode == 2, str(result)
        assert "Traceback" not in result.stderr
    assert not Path("/tmp/never-written").exists()
    result = proj.ext("diff", check=False)
    assert result.returncode == 2, str(result)


@pytest.mark.parametrize("bad", ["nope", "file://relative/dir", "unknownscheme://x/y",
                                 "file:///"])
def test_bad_destination_uri_is_a_one_line_error(proj, bad):
    proj.db.seed(SAMPLE)
    before = proj.db.raw()
    one_line_error(proj.ext("migrate", "--to", bad, "--delete-source", check=False))
    assert proj.db.raw() == before


def test_missing_bucket_is_a_one_line_error(proj, s3_server):  # noqa: F811
    proj.db.seed(SAMPLE)
    before = proj.db.raw()
    creds = {"MELTANO_STATE_BACKEND_S3_AWS_ACCESS_KEY_ID": "testing",
             "MELTANO_STATE_BACKEND_S3_AWS_SECRET_ACCESS_KEY": "testing-secret",
             "MELTANO_STATE_BACKEND_S3_ENDPOINT_URL": s3_server.url,
             "AWS_EC2_METADATA_DISABLED": "true", "AWS_DEFAULT_REGION": "us-east-1"}
    result = proj.ext("migrate", "--to", "s3://no-such-bucket-here/state", "--delete-source",
                      check=False, **creds)
    one_line_error(result, "no-such-bucket-here", "does not exist", after_start=True)
    assert proj.db.raw() == before


def test_unwritable_destination_fails_without_traceback_and_keeps_the_source(proj, tmp_path):
    proj.db.seed(SAMPLE)
    before = proj.db.raw()
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    result = proj.ext("migrate", "--to", uri(blocker / "sub"), "--delete-source",
                      "--format", "json", check=False)
    assert result.returncode == 1, str(result)
    assert "Traceback" not in result.stderr
    if result.stdout:
        got = report(result)
        assert got["ok"] is False and got["deleted_from_source"] == 0
    assert proj.db.raw() == before


# -- resumable ----------------------------------------------------------------------------
def test_kill_9_mid_migration_then_rerun_completes(proj, dst):
    count = 3000
    states = {f"dev:tap-{i:05d}-to-target": env_(singer({"bookmarks": {"s": {"k": i}}}),
                                                 singer({"p": i}) if i % 3 == 0 else None)
              for i in range(count)}
    proj.db.seed(states)
    expected = file_expected(states)
    proc = subprocess.Popen([str(STATE_EXTENSION), "migrate", "--to", uri(dst)],
                            cwd=proj.root, env=proj.env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    first_ids = sorted(states)[:200]
    deadline = time.monotonic() + 60
    try:
        while not any((dst / i / "state.json").exists() for i in first_ids):
            assert proc.poll() is None, "migration finished before it could be interrupted"
            assert time.monotonic() < deadline, "no state written within 60 s"
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL

    written = file_raw(dst)
    assert 0 < len(written) < count, "interrupt came too late to test anything"
    for state_id, data in written.items():  # none partial, none corrupt, none foreign
        assert data == expected[state_id], state_id

    # The killed process left its locks; a shorter lock timeout keeps the test fast.
    fast = {"MELTANO_STATE_BACKEND_LOCK_TIMEOUT_SECONDS": "1"}
    got = report(proj.ext("migrate", "--to", uri(dst), "--format", "json", **fast))
    assert got["ok"] and got["failed"] == {} and got["conflicts"] == []
    assert got["copied"] + got["identical"] == count
    assert got["identical"] >= len(written)
    assert file_raw(dst) == expected
    assert proj.ext("diff", "--to", uri(dst)).stdout == ""


# -- engine properties, through the Python API ---------------------------------------------------
def open_store(kind: str, root: Path, database_uri: str | None = None):
    from state_ext.backends import open_backend
    from state_ext.settings import BackendSettings

    if kind == "file":
        return open_backend(BackendSettings(uri(root), 2, 0.05, {}))
    return open_backend(BackendSettings("systemdb", 2, 0.05, {}, database_uri=database_uri))


SERVER_FIXTURES = {"s3": "s3_server", "gs": "gcs_server", "azure": "azure_server"}


@pytest.fixture(params=["file", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres),
                        "s3", "gs", "azure"])
def destination(request, tmp_path):
    if request.param in SERVER_FIXTURES:
        case = StoreCase(request.param,
                         request.getfixturevalue(SERVER_FIXTURES[request.param]))
        backend = case.backend(f"{request.param}://{case.new_bucket()}/meltano/state",
                               lock_timeout=2)
    elif request.param == "file":
        backend = open_store("file", tmp_path / "dest")
    elif request.param == "sqlite":
        db = Db(tmp_path / "dest.db")
        backend = open_store("systemdb", tmp_path, f"sqlite:///{db.path}")
    else:
        import psycopg

        url = request.getfixturevalue("postgres_url")
        with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"),
                             autocommit=True) as conn:
            conn.execute(PG_DDL)
        backend = open_store("systemdb", tmp_path, url)
    yield backend
    backend.close()


def envelopes(states: dict[str, dict]) -> dict[str, Envelope]:
    return {i: Envelope(e["completed"], e["partial"]) for i, e in states.items()}


def seeded_source(tmp_path, states) -> object:
    root = tmp_path / "src"
    file_seed(root, states)
    return open_store("file", root)


def test_concurrent_writer_between_plan_and_write_is_not_overwritten(tmp_path, destination):
    from state_ext.transfer import transfer

    states = {**NEW, "victim": env_(singer({"by": "migration"})),
              "replaced": env_(singer({"by": "migration"}))}
    source = seeded_source(tmp_path, states)
    destination.put("replaced", Envelope.complete(singer({"old": True})))
    pipeline = Envelope(singer({"by": "pipeline"}), singer({"partial": 1}))
    fired = []

    def progress(phase, done, total):
        if phase == "plan" and done == total and not fired:
            fired.append(phase)  # a pipeline writes after the plan, before the write
            destination.put("victim", pipeline)
            destination.put("replaced", pipeline)

    got = transfer(source, destination, on_conflict="overwrite", progress=progress)
    assert fired
    assert set(got.failed) == {"victim", "replaced"}
    assert all("changed by another process" in reason for reason in got.failed.values())
    assert got.ok is False and got.mismatched == []
    assert destination.get("victim") == pipeline
    assert destination.get("replaced") == pipeline
    for state_id, envelope in envelopes(NEW).items():
        assert destination.get(state_id) == envelope
    assert got.copied == 3
    source.close()


def test_source_changed_after_plan_is_copied_as_it_is_when_written(tmp_path, destination):
    """Absent IDs are read once, at write time: a change made after the plan is what
    gets copied, verified and (with --delete-source) deleted."""
    from state_ext.transfer import transfer

    source = seeded_source(tmp_path, NEW)
    changed, newer = "dev:new-1", Envelope.complete(singer({"newer": True}))

    def progress(phase, done, total):
        if phase == "plan" and done == total:
            source.put(changed, newer)

    got = transfer(source, destination, delete_source=True, progress=progress)
    assert got.ok and got.copied == 3 and got.deleted_from_source == 3
    assert destination.get(changed) == newer
    assert source.get(changed) is None


def test_source_changed_after_write_is_not_deleted(tmp_path, destination):
    from state_ext.transfer import transfer

    source = seeded_source(tmp_path, NEW)
    changed, newer = "dev:new-1", Envelope.complete(singer({"newer": True}))
    before = envelopes(NEW)[changed]

    def progress(phase, done, total):
        if phase == "write" and done == total:
            source.put(changed, newer)  # a pipeline writes the source after we copied it

    got = transfer(source, destination, delete_source=True, progress=progress)
    assert "not deleted from the source" in got.failed[changed]
    assert "changed by another process" in got.failed[changed]
    assert destination.get(changed) == before
    assert source.get(changed) == newer  # kept: what it holds now was never copied
    assert got.deleted_from_source == 2
    assert got.ok is False


def test_source_changed_between_plan_and_write_of_an_overwrite_is_reported(tmp_path, destination):
    """IDs on both sides are planned from a read; if the source moves on before the
    write, the plan is stale and the ID is reported, not copied."""
    from state_ext.transfer import transfer

    source = seeded_source(tmp_path, NEW)
    changed = "dev:new-1"
    destination.put(changed, Envelope.complete(singer({"old": True})))

    def progress(phase, done, total):
        if phase == "plan" and done == total:
            source.put(changed, Envelope.complete(singer({"newer": True})))

    got = transfer(source, destination, on_conflict="overwrite", delete_source=True,
                   progress=progress)
    assert "source changed" in got.failed[changed]
    assert destination.get(changed) == Envelope.complete(singer({"old": True}))
    assert source.get(changed) == Envelope.complete(singer({"newer": True}))
    assert got.deleted_from_source == 2
    assert got.ok is False


@pytest.mark.parametrize("path", ["locked", "created"])
def test_verification_catches_a_store_that_does_not_read_back(tmp_path, path):
    """A state written under the lock is always read back; a created one (new to the
    destination, checked by the store itself) with ``--verify read-back``."""
    from state_ext.backends.file import FileBackend
    from state_ext.settings import BackendSettings
    from state_ext.transfer import transfer

    def flatten(states):
        states = dict(states)
        if "dev:new-0" in states:
            states["dev:new-0"] = Envelope.complete(states["dev:new-0"].effective())
        return states

    class Lossy(FileBackend):
        """Flattens one envelope on write, as Meltano's copy does."""

        def put_many_checked(self, states, expected, concurrency=8):
            return super().put_many_checked(flatten(states), expected, concurrency)

        def create_new_many(self, states, concurrency=4):
            return super().create_new_many(flatten(states), concurrency)

    source = seeded_source(tmp_path, NEW)
    lossy = Lossy(BackendSettings(uri(tmp_path / "lossy"), 2, 0.05, {}))
    if path == "locked":  # dev:new-0 exists there: overwritten under its lock
        lossy.put("dev:new-0", Envelope.complete(singer({"old": True})))
        got = transfer(source, lossy, delete_source=True, on_conflict="overwrite")
    else:
        got = transfer(source, lossy, delete_source=True, verify="read-back")
    assert got.mismatched == ["dev:new-0"] and got.ok is False
    assert source.get("dev:new-0") is not None  # not verified: kept
    assert source.get("dev:new-1") is None and got.deleted_from_source == 2


def test_migrate_reports_failures_with_exit_1(proj, dst):
    """A destination ID locked by another process: reported, exit 1, the rest copied."""
    proj.db.seed(NEW)
    (dst / "dev:new-1").mkdir(parents=True)
    (dst / "dev:new-1" / "lock").write_text(str(time.time() + 3600))  # fresh for an hour
    result = proj.ext("migrate", "--to", uri(dst), "--format", "json", "--delete-source",
                      check=False, MELTANO_STATE_BACKEND_LOCK_TIMEOUT_SECONDS="1")
    assert result.returncode == 1, str(result)
    got = report(result)
    assert list(got["failed"]) == ["dev:new-1"] and "locked" in got["failed"]["dev:new-1"]
    assert "dev:new-1" in result.stderr
    assert sorted(file_raw(dst)) == ["dev:new-0", "dev:new-2"]
    assert sorted(proj.db.raw()) == ["dev:new-1"]  # only verified IDs left the source


# -- diff -----------------------------------------------------------------------------------
def test_diff_markers_exit_codes_and_json(proj, dst):
    proj.db.seed({
        "same": env_(singer({"a": 1}), singer({"b": 2})),
        "differs": env_(singer({"a": 1}), singer({"b": 2})),
        "halves-differ": env_(singer({"a": 1}), singer({"b": 2})),
        "only-src": env_(singer({"x": 1})),
        "dev:only-src": env_(singer({"x": 1})),
    })
    file_seed(dst, {
        "same": env_(singer({"a": 1}), singer({"b": 2})),
        "differs": env_(singer({"a": 1}), singer({"b": 3})),
        # the same effective state, stored flattened: still a difference
        "halves-differ": env_(singer({"a": 1, "b": 2})),
        "only-dst": env_(singer({"y": 1})),
    })
    result = proj.ext("diff", "--to", uri(dst), check=False)
    assert result.returncode == 1, str(result)
    assert result.stdout.splitlines() == [
        "< dev:only-src", "< only-src", "> only-dst", "! differs", "! halves-differ"]
    assert "identical 1" in result.stderr

    result = proj.ext("diff", "--to", uri(dst), "--format", "json", check=False)
    assert result.returncode == 1
    got = report(result)
    assert got["only_in_source"] == ["dev:only-src", "only-src"]
    assert got["only_in_destination"] == ["only-dst"]
    assert got["different"] == ["differs", "halves-differ"]
    assert (got["identical"], got["same"]) == (1, False)

    result = proj.ext("diff", "--to", uri(dst), "--pattern", "dev:*", check=False)
    assert result.returncode == 1 and result.stdout == "< dev:only-src\n"

    same = proj.ext("diff", "--to", uri(dst), "--pattern", "same", "--format", "json")
    assert report(same)["same"] is True and report(same)["identical"] == 1
    assert proj.ext("diff", "--to", uri(dst), "--pattern", "same").stdout == ""

    # after a migration with overwrite: the destination's extra ID is still reported
    proj.ext("migrate", "--to", uri(dst), "--on-conflict", "overwrite")
    result = proj.ext("diff", "--to", uri(dst), check=False)
    assert (result.returncode, result.stdout) == (1, "> only-dst\n")


# -- copy / move --to ---------------------------------------------------------------------------
def test_copy_and_move_to_another_backend(proj, dst):
    proj.db.seed(SAMPLE)
    sid = "dev:tap-a-to-target-b"
    proj.ext("copy", "--force", "--to", uri(dst), sid)  # destination ID defaults to source ID
    proj.ext("copy", "--force", "--to", uri(dst), sid, "renamed")
    assert file_raw(dst) == file_expected({sid: SAMPLE[sid], "renamed": SAMPLE[sid]})
    assert proj.db.raw() == db_expected(SAMPLE)

    # copy over a different state: overwritten exactly (copy always overwrites)
    file_seed(dst, {"partial-only": env_(singer({"old": 1}))})
    proj.ext("copy", "--force", "--to", uri(dst), "partial-only")
    assert file_raw(dst)["partial-only"] == json.dumps(SAMPLE["partial-only"]).encode()

    proj.ext("move", "--force", "--to", uri(dst), "prod:tap-a-to-target-b:blue")
    assert file_raw(dst)["prod:tap-a-to-target-b:blue"] == json.dumps(
        SAMPLE["prod:tap-a-to-target-b:blue"]).encode()
    assert "prod:tap-a-to-target-b:blue" not in proj.db.raw()
    proj.ext("move", "--force", "--to", uri(dst), "nested/id", "moved")
    assert file_raw(dst)["moved"] == json.dumps(SAMPLE["nested/id"]).encode()
    assert "nested/id" not in proj.db.raw()
    assert stray(dst) == []

    # file -> systemdb with --uri as the source
    proj.ext("move", "--force", "--uri", uri(dst), "--to", "systemdb", "moved", "back")
    assert proj.db.raw()["back"] == db_expected(SAMPLE)["nested/id"]
    assert "moved" not in file_raw(dst)


def test_copy_to_errors(proj, dst):
    proj.db.seed(SAMPLE)
    before = proj.db.raw()
    # no confirmation (no terminal; a terminal answering no): nothing written
    result = proj.ext("copy", "--to", uri(dst), "nested/id", check=False, input="y\n")
    assert result.returncode == 1 and "pass --force" in result.stderr
    result = run_at_terminal([STATE_EXTENSION, "move", "--to", uri(dst), "nested/id"],
                             cwd=proj.root, env=proj.env, answer="n\n")
    assert result.returncode == 1 and "Aborted" in result.stderr, str(result)
    assert not dst.exists() or file_raw(dst) == {}
    one_line_error(proj.ext("copy", "--force", "--to", uri(dst), "absent", check=False),
                   "absent")
    result = proj.ext("copy", "--force", "nested/id", check=False)  # no DST and no --to
    assert result.returncode == 2, str(result)
    one_line_error(proj.ext("copy", "--force", "--to", "nope", "nested/id", check=False))
    assert proj.db.raw() == before
    assert not dst.exists() or file_raw(dst) == {}


# -- memory --------------------------------------------------------------------------------
RSS_WRAPPER = """
import resource, subprocess, sys
proc = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
sys.stderr.write(proc.stderr)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)  # KiB on Linux
sys.exit(proc.returncode)
"""


def test_memory_stays_flat_at_20000_states(proj, dst):
    count = 20_000
    with sqlite3.connect(proj.db.path) as conn:
        conn.executemany(
            "INSERT INTO state (state_id, completed_state, partial_state) VALUES (?, ?, ?)",
            ((f"dev:tap-{i:06d}-to-target-x",
              json.dumps(singer({"bookmarks": {"orders": {"replication_key_value": i}}})),
              json.dumps({})) for i in range(count)),
        )
    proc = subprocess.run(
        [sys.executable, "-c", RSS_WRAPPER, str(STATE_EXTENSION), "migrate", "--to", uri(dst)],
        cwd=proj.root, env=proj.env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    peak_mb = int(proc.stdout.strip()) / 1024
    assert f"copied {count}" in proc.stderr
    assert peak_mb < 200, f"peak RSS {peak_mb:.0f} MB"
    written = sum(1 for _ in dst.iterdir())
    assert written == count


def test_file_destination_holds_only_meltanos_layout_after_a_bulk_migration(tmp_path,
                                                                            monkeypatch):
    """Bulk writes leave no lock, no temporary file and no empty folder behind, nested
    IDs included, and the barrier (one syncfs) runs once per migration."""
    from state_ext import posix_io
    from state_ext.transfer import transfer

    states = {**NEW, "nested/a/b": env_(singer({"n": 1}))}
    source = seeded_source(tmp_path, states)
    destination = open_store("file", tmp_path / "dest")
    barriers = []
    real_sync = posix_io.sync_filesystem
    monkeypatch.setattr(posix_io, "sync_filesystem",
                        lambda path: (barriers.append(path), real_sync(path)))
    got = transfer(source, destination)
    assert got.ok and got.copied == 4
    assert barriers == [str(tmp_path / "dest")]
    left = sorted(str(p.relative_to(tmp_path / "dest")) for p in (tmp_path / "dest").rglob("*"))
    assert left == sorted(
        ["dev:new-0", "dev:new-0/state.json", "dev:new-1", "dev:new-1/state.json",
         "dev:new-2", "dev:new-2/state.json", "nested", "nested/a", "nested/a/b",
         "nested/a/b/state.json"]
    )
    assert file_raw(tmp_path / "dest") == file_expected(states)
    destination.flush()  # nothing written since: no second barrier
    assert len(barriers) == 1


@pytest.mark.postgres
def test_postgres_bulk_write_waits_for_a_foreign_insert_then_fails_cleanly(tmp_path,
                                                                            postgres_url):
    """A row another session inserted but has not committed blocks the bulk COPY: after
    lock_timeout_seconds the chunk fails with one clear lock error and writes nothing."""
    import psycopg

    from state_ext.errors import LockTimeoutError
    from state_ext.transfer import transfer

    dsn = postgres_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(PG_DDL)
    source = seeded_source(tmp_path, NEW)
    destination = open_store("systemdb", tmp_path, postgres_url)  # lock timeout 2 s
    with psycopg.connect(dsn) as foreign:  # an open transaction, as a running pipeline
        foreign.execute("INSERT INTO state (state_id, completed_state, partial_state) "
                        "VALUES ('dev:new-1', '{}', '{}')")
        started = time.monotonic()
        with pytest.raises(LockTimeoutError, match="locked by another process"):
            transfer(source, destination)
        assert 1.5 < time.monotonic() - started < 20
        foreign.rollback()
    assert destination.list_ids() == []
    destination.close()


@pytest.fixture(params=["s3", "gs", "azure"])
def object_store(request):
    return StoreCase(request.param, request.getfixturevalue(SERVER_FIXTURES[request.param]))


def test_object_store_migration_waits_for_a_foreign_lock_and_stale_locks_are_taken_over(
        tmp_path, object_store):
    """Meltano's lock objects on the destination: a fresh one makes that ID fail after the
    lock timeout (the others are copied); a stale one is taken over, as Meltano would."""
    from state_ext.transfer import transfer

    bucket = object_store.new_bucket()
    uri_ = f"{object_store.scheme}://{bucket}/meltano/state"
    destination = object_store.backend(uri_, lock_timeout=2)
    object_store.write(bucket, "meltano/state/dev:new-1/lock", str(time.time() + 3600).encode())
    object_store.write(bucket, "meltano/state/dev:new-2/lock", str(time.time() - 60).encode())
    source = seeded_source(tmp_path, NEW)
    started = time.monotonic()
    got = transfer(source, destination)
    assert 1.5 < time.monotonic() - started < 30
    assert list(got.failed) == ["dev:new-1"] and "locked by another process" in got.failed[
        "dev:new-1"]
    assert got.copied == 2
    assert destination.get("dev:new-2") == envelopes(NEW)["dev:new-2"]
    keys = object_store.keys(bucket)
    assert "meltano/state/dev:new-2/lock" not in keys  # taken over, then released
    assert "meltano/state/dev:new-1/lock" in keys  # the foreign fresh lock is left alone
    assert "meltano/state/dev:new-1/state.json" not in keys
    destination.close()


def test_an_incomplete_destination_file_stops_the_plan_before_any_write(tmp_path):
    """What a power loss can leave behind (an empty state.json): the next run names the
    file and writes nothing, so the user can delete it and run again."""
    from state_ext.errors import BackendError
    from state_ext.transfer import transfer

    source = seeded_source(tmp_path, NEW)
    (tmp_path / "dest" / "dev:new-1").mkdir(parents=True)
    (tmp_path / "dest" / "dev:new-1" / "state.json").write_bytes(b"")
    destination = open_store("file", tmp_path / "dest")
    with pytest.raises(BackendError, match=r"dev:new-1/state\.json: stored state is not valid"):
        transfer(source, destination)
    assert file_raw(tmp_path / "dest") == {"dev:new-1": b""}
    (tmp_path / "dest" / "dev:new-1" / "state.json").unlink()
    got = transfer(source, destination)
    assert got.ok and got.copied == 3
    assert file_raw(tmp_path / "dest") == file_expected(NEW)
