"""Locks, with real processes: state-ext and Meltano exclude each other, nothing is lost.

file:// follows Meltano's protocol (``<dir>/<id>/lock`` holding a float UTC epoch, stale
after ``lock_timeout_seconds``); the system database relies on its own locks (SQLite's
write lock, PostgreSQL row and advisory locks).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import psycopg
import pytest

from tests.support.cli import STATE_EXTENSION, clean_env, meltano, meltano_path, state_ext
from tests.support.postgres import wait_until
from tests.support.project import meltano_seeded_db, write_project

ID = "dev:tap-a-to-target-b"
SEED = {
    ID: {
        "completed": {"singer_state": {"bookmarks": {"base": {"v": 0}}}},
        "partial": {"singer_state": {"bookmarks": {"part": {"v": 1}}}},
    },
}
SEED_BOOKMARKS = {"base": {"v": 0}, "part": {"v": 1}}


# -- helpers ---------------------------------------------------------------------------
def deep_merge(src: dict, dest: dict) -> dict:
    """Meltano's merge, written out again so that the test does not trust state_ext's."""
    out = dict(dest)
    for key, value in src.items():
        if isinstance(value, dict):
            node = out.get(key)
            out[key] = deep_merge(value, node if isinstance(node, dict) else {})
        else:
            out[key] = value
    return out


def effective(envelope: dict) -> dict:
    return deep_merge(envelope.get("partial") or {}, envelope.get("completed") or {})


def bookmarks(envelope: dict) -> dict:
    return effective(envelope)["singer_state"]["bookmarks"]


def stream(name: str, value: int = 1) -> str:
    return json.dumps({"singer_state": {"bookmarks": {name: {"v": value}}}})


def file_project(root: Path, *, with_db: Path | None = None) -> tuple[Path, Path]:
    store = root / "state"
    write_project(root, state_backend={"uri": f"file://{store}"})
    for state_id, envelope in SEED.items():
        (store / state_id).mkdir(parents=True)
        (store / state_id / "state.json").write_text(json.dumps(envelope))
    if with_db is not None:
        (root / ".meltano").mkdir()
        shutil.copyfile(with_db, root / ".meltano" / "meltano.db")
    return root, store


def read_file_state(store: Path, state_id: str = ID) -> dict:
    return json.loads((store / state_id / "state.json").read_text())


@pytest.fixture(scope="module")
def template_db(tmp_path_factory):
    return meltano_seeded_db(tmp_path_factory, SEED)


@pytest.fixture(scope="module")
def pg_template(postgres_server, tmp_path_factory):
    """A PostgreSQL database with Meltano's schema and SEED, made once by the real meltano."""
    url = postgres_server.create_database()
    root = write_project(tmp_path_factory.mktemp("pg-template"))
    (root / "seed.json").write_text(json.dumps(SEED))
    meltano("state", "import", "seed.json", cwd=root, env=clean_env(MELTANO_DATABASE_URI=url))
    name = url.rsplit("/", 1)[1]
    with _pg_connect(postgres_server, "postgres", autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{name}" WITH IS_TEMPLATE true')
    return name


@pytest.fixture
def pg_db(postgres_server, pg_template):
    """A fresh copy of the template: (SQLAlchemy URL, database name)."""
    name = f"t_{os.urandom(6).hex()}"
    with _pg_connect(postgres_server, "postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{pg_template}"')
    return postgres_server.url(name), name


def _pg_connect(server, dbname: str, **kwargs):
    return psycopg.connect(f"host=127.0.0.1 port={server.port} user=postgres dbname={dbname}",
                           **kwargs)


def read_db_state(rows) -> dict | None:
    if not rows:
        return None
    completed, partial = rows[0]
    return {"completed": json.loads(completed), "partial": json.loads(partial)}


def read_sqlite_state(db: Path, state_id: str = ID) -> dict | None:
    con = sqlite3.connect(db, timeout=30)
    try:
        return read_db_state(con.execute(
            "SELECT completed_state, partial_state FROM state WHERE state_id = ?", (state_id,)
        ).fetchall())
    finally:
        con.close()


def read_pg_state(server, dbname: str, state_id: str = ID) -> dict | None:
    with _pg_connect(server, dbname) as conn:
        return read_db_state(conn.execute(
            "SELECT completed_state, partial_state FROM state WHERE state_id = %s", (state_id,)
        ).fetchall())


def popen(args, *, cwd, env) -> subprocess.Popen:
    return subprocess.Popen([str(a) for a in args], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen, timeout: float = 120) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def wait_for_lock_attempt(proc: subprocess.Popen, directory: Path, timeout: float = 30) -> None:
    """Best effort: the ID's folder changes when a writer tries to create its lock."""
    before = directory.stat().st_mtime_ns
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None \
            and directory.stat().st_mtime_ns == before:
        time.sleep(0.05)


def wait_for_open_file(proc: subprocess.Popen, path: Path, timeout: float = 30) -> None:
    """Until ``proc`` has ``path`` open (it reached the database), or exited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        fds = Path(f"/proc/{proc.pid}/fd")
        try:
            if any(os.path.realpath(fd) == str(path.resolve()) for fd in fds.iterdir()):
                return
        except OSError:  # a descriptor closed while we looked
            pass
        time.sleep(0.05)


def file_backend(store: Path, timeout: float = 10, retry: float = 1):
    from state_ext.backends import open_backend
    from state_ext.settings import BackendSettings

    return open_backend(BackendSettings(
        uri=f"file://{store}", lock_timeout_seconds=timeout, lock_retry_seconds=retry))


# -- file:// lock protocol -------------------------------------------------------------
def test_waits_for_a_meltano_lock_and_writes_once_it_is_gone(tmp_path):
    root, store = file_project(tmp_path / "p")
    lock = store / ID / "lock"
    meltano_lock = str(datetime.now(timezone.utc).timestamp())  # what Meltano writes
    lock.write_text(meltano_lock)
    seeded = (store / ID / "state.json").read_bytes()
    # A long lock timeout: the lock must not turn stale while a busy machine starts us.
    env = clean_env(MELTANO_STATE_BACKEND_LOCK_TIMEOUT_SECONDS="60",
                    MELTANO_STATE_BACKEND_LOCK_RETRY_SECONDS="0.2")

    started = time.monotonic()
    proc = popen([STATE_EXTENSION, "set", ID, stream("ours", 7), "--force"], cwd=root, env=env)
    wait_for_lock_attempt(proc, store / ID)
    time.sleep(1.0)
    assert proc.poll() is None, f"did not wait for the lock: {finish(proc)}"
    assert (store / ID / "state.json").read_bytes() == seeded
    assert lock.read_text() == meltano_lock
    lock.unlink()  # Meltano is done
    code, out, err = finish(proc, timeout=30)
    elapsed = time.monotonic() - started

    assert code == 0, err
    assert elapsed >= 1.0
    assert read_file_state(store) == {
        "completed": {"singer_state": {"bookmarks": {"ours": {"v": 7}}}}, "partial": {}}
    assert sorted(os.listdir(store / ID)) == ["state.json"], "our lock or a temp file was left"


@pytest.mark.parametrize("command", ["set", "merge"])
def test_a_stale_lock_is_taken_over_at_once(tmp_path, command):
    root, store = file_project(tmp_path / "p")
    (store / ID / "lock").write_text(str(time.time() - 120))  # a crashed writer's lock
    # Anything but a take-over would wait 30 s (the lock timeout) first.
    env = clean_env(MELTANO_STATE_BACKEND_LOCK_TIMEOUT_SECONDS="30")
    args = ["set", ID, stream("ours", 7), "--force"] if command == "set" else \
        ["merge", ID, stream("ours", 7)]

    started = time.monotonic()
    result = state_ext(*args, cwd=root, env=env, timeout=90)
    elapsed = time.monotonic() - started

    assert elapsed < 20, f"waited {elapsed:.1f} s for a stale lock"
    expected = {"ours": {"v": 7}}
    if command == "merge":
        expected = {**SEED_BOOKMARKS, **expected}
    assert bookmarks(read_file_state(store)) == expected, str(result)
    assert sorted(os.listdir(store / ID)) == ["state.json"], "the stale lock was not removed"


def test_our_lock_is_a_float_epoch_that_meltano_reads_as_fresh(tmp_path):
    _, store = file_project(tmp_path / "p")
    lock = store / ID / "lock"
    is_locked = (
        "import sys\n"
        "from meltano.core.state_store.filesystem import LocalFilesystemStateStoreManager as M\n"
        "print(M(uri=sys.argv[1], lock_timeout_seconds=10).is_locked(sys.argv[2]))\n"
    )
    meltano_python = meltano_path().parent / "python"

    with file_backend(store).transaction(ID):
        content = lock.read_text()
        assert re.fullmatch(r"\d+\.\d+", content), content
        assert abs(float(content) - time.time()) < 30
        seen = subprocess.run([meltano_python, "-c", is_locked, f"file://{store}", ID],
                              capture_output=True, text=True, timeout=120)
        assert seen.returncode == 0, seen.stderr
        assert seen.stdout.strip() == "True", "Meltano does not see our lock as held"
        assert lock.read_text() == content, "Meltano removed or changed our lock"
    assert not lock.exists()


def _replace(path: Path, content: str) -> None:
    """Another writer's lock: a new file (new inode) renamed over ours."""
    tmp = path.with_name("foreign.tmp")
    tmp.write_text(content)
    os.replace(tmp, path)


@pytest.mark.parametrize("how", ["replaced", "rewritten-in-place", "recreated-same-content"])
def test_release_never_deletes_a_lock_we_do_not_own(tmp_path, how):
    _, store = file_project(tmp_path / "p")
    lock = store / ID / "lock"
    foreign = str(time.time() + 0.5)
    with file_backend(store).transaction(ID) as slot:
        ours = lock.read_text()
        if how == "replaced":
            _replace(lock, foreign)
        elif how == "rewritten-in-place":
            with open(lock, "w") as handle:
                handle.write(foreign)
        else:  # another writer that happened to write the same text
            foreign = ours
            _replace(lock, foreign)
        slot.read()
    assert lock.is_file(), "our release deleted another writer's lock"
    assert lock.read_text() == foreign


def test_release_survives_a_lock_removed_under_us(tmp_path):
    _, store = file_project(tmp_path / "p")
    with file_backend(store).transaction(ID) as slot:
        (store / ID / "lock").unlink()
        slot.write(slot.read())
    assert sorted(os.listdir(store / ID)) == ["state.json"]


def test_meltano_waits_for_our_lock_and_both_writes_land(tmp_path, template_db):
    root, store = file_project(tmp_path / "p", with_db=template_db)
    db = root / ".meltano" / "meltano.db"
    # Meltano steals a lock older than its lock timeout: keep that well above our hold.
    env = clean_env(MELTANO_STATE_BACKEND_LOCK_TIMEOUT_SECONDS="120")
    seeded = (store / ID / "state.json").read_bytes()

    def meltano_recorded_its_job() -> bool:
        con = sqlite3.connect(db, timeout=30)
        try:
            return con.execute("SELECT count(*) FROM runs WHERE job_name = ?",
                               (ID,)).fetchone()[0] > 0
        finally:
            con.close()

    with file_backend(store).transaction(ID) as slot:
        current = slot.read()
        started = time.monotonic()
        proc = popen([meltano_path(), "state", "merge", ID, stream("meltano", 2)], cwd=root,
                     env=env)
        # Meltano writes its `runs` row, then takes the state lock: from here it waits.
        wait_until(lambda: proc.poll() is not None or meltano_recorded_its_job(), timeout=90)
        time.sleep(2.0)
        assert proc.poll() is None, f"meltano did not wait for our lock: {finish(proc)}"
        assert (store / ID / "state.json").read_bytes() == seeded, "meltano wrote under our lock"
        slot.write(current.merged_with_partial(json.loads(stream("ext", 3))))
    code, out, err = finish(proc, timeout=90)
    duration = time.monotonic() - started

    assert code == 0, err
    assert duration >= 2.0
    assert bookmarks(read_file_state(store)) == {**SEED_BOOKMARKS, "ext": {"v": 3},
                                                 "meltano": {"v": 2}}
    assert sorted(os.listdir(store / ID)) == ["state.json"]


# -- many writers at once --------------------------------------------------------------
WRITERS = 8


@pytest.mark.parametrize("backend", ["file", "sqlite", "postgres", "postgres-new-id"])
def test_concurrent_merges_all_land(tmp_path, backend, request):
    root = tmp_path / "p"
    env = clean_env()
    state_id = ID
    if backend == "file":
        root, store = file_project(root)

        def final():
            return read_file_state(store)
    elif backend == "sqlite":
        template_db = request.getfixturevalue("template_db")
        write_project(root)
        (root / ".meltano").mkdir()
        shutil.copyfile(template_db, root / ".meltano" / "meltano.db")

        def final():
            return read_sqlite_state(root / ".meltano" / "meltano.db")
    else:
        server = request.getfixturevalue("postgres_server")
        url, dbname = request.getfixturevalue("pg_db")
        write_project(root)
        env["MELTANO_DATABASE_URI"] = url
        if backend == "postgres-new-id":
            state_id = "dev:tap-new-to-target-new"  # every writer races to insert the row

        def final():
            return read_pg_state(server, dbname, state_id)

    procs = [popen([STATE_EXTENSION, "merge", state_id, stream(f"s{i}", i)], cwd=root, env=env)
             for i in range(WRITERS)]
    results = [finish(p) for p in procs]

    failed = [r for r in results if r[0] != 0]
    assert not failed, failed
    expected = {f"s{i}": {"v": i} for i in range(WRITERS)}
    if state_id == ID:
        expected = {**SEED_BOOKMARKS, **expected}
    assert bookmarks(final()) == expected
    if backend == "file":
        assert sorted(os.listdir(store / ID)) == ["state.json"]


# -- system databases: their own locks -------------------------------------------------
HOLD_SQLITE_WRITE_LOCK = """
import json, sqlite3, sys
con = sqlite3.connect(sys.argv[1], isolation_level=None)
con.execute("BEGIN IMMEDIATE")
if len(sys.argv) > 2:
    con.execute("UPDATE state SET partial_state = ? WHERE state_id = ?", (sys.argv[3], sys.argv[2]))
print("locked", flush=True)
sys.stdin.read()
con.execute("COMMIT")
"""


def hold_sqlite_write_lock(db: Path, *update) -> subprocess.Popen:
    """Another process inside a write transaction (SQLite's POSIX locks are per process)."""
    holder = subprocess.Popen([sys.executable, "-c", HOLD_SQLITE_WRITE_LOCK, str(db), *update],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    return holder


@pytest.fixture
def sqlite_project(tmp_path, template_db):
    root = write_project(tmp_path / "p")
    (root / ".meltano").mkdir()
    shutil.copyfile(template_db, root / ".meltano" / "meltano.db")
    return root


def test_sqlite_merge_waits_for_another_writer_then_merges_onto_its_commit(sqlite_project):
    db = sqlite_project / ".meltano" / "meltano.db"
    theirs = {"singer_state": {"bookmarks": {"part": {"v": 1}, "theirs": {"v": 4}}}}
    holder = hold_sqlite_write_lock(db, ID, json.dumps(theirs))
    try:
        proc = popen([STATE_EXTENSION, "merge", ID, stream("ours", 5)], cwd=sqlite_project,
                     env=clean_env())
        wait_for_open_file(proc, db)
        time.sleep(1.5)
        assert proc.poll() is None, f"did not wait for the writer: {finish(proc)}"
    finally:
        holder.communicate("", timeout=30)
    code, out, err = finish(proc)
    assert code == 0, err
    assert bookmarks(read_sqlite_state(db)) == {**SEED_BOOKMARKS, "theirs": {"v": 4},
                                                "ours": {"v": 5}}


def test_sqlite_reads_do_not_wait_for_a_writer(sqlite_project):
    """Meltano's `state get` reads while another process writes (WAL): so must we."""
    holder = hold_sqlite_write_lock(sqlite_project / ".meltano" / "meltano.db")
    try:
        env = clean_env(MELTANO_STATE_BACKEND_LOCK_TIMEOUT_SECONDS="1")
        result = state_ext("get", ID, cwd=sqlite_project, env=env, check=False)
        listing = state_ext("list", cwd=sqlite_project, env=env, check=False)
    finally:
        holder.communicate("", timeout=30)
    assert result.returncode == 0, str(result)
    assert result.json() == {"singer_state": {"bookmarks": SEED_BOOKMARKS}}
    assert listing.returncode == 0, str(listing)
    assert listing.stdout == f"{ID}\n"


def test_postgres_merge_waits_for_a_row_lock_then_merges_onto_its_commit(
        tmp_path, postgres_server, pg_db):
    url, dbname = pg_db
    root = write_project(tmp_path / "p")
    theirs = {"singer_state": {"bookmarks": {"part": {"v": 1}, "theirs": {"v": 4}}}}
    with _pg_connect(postgres_server, dbname) as conn:
        conn.execute("UPDATE state SET partial_state = %s WHERE state_id = %s",
                     (json.dumps(theirs), ID))  # row locked until commit
        proc = popen([STATE_EXTENSION, "merge", ID, stream("ours", 5)], cwd=root,
                     env=clean_env(MELTANO_DATABASE_URI=url))
        with _pg_connect(postgres_server, dbname, autocommit=True) as watcher:
            wait_until(lambda: proc.poll() is not None or watcher.execute(
                "SELECT count(*) FROM pg_locks WHERE NOT granted").fetchone()[0] > 0, timeout=60)
        assert proc.poll() is None, f"did not wait for the row lock: {finish(proc)}"
        conn.commit()
    code, out, err = finish(proc)
    assert code == 0, err
    assert bookmarks(read_pg_state(postgres_server, dbname)) == {
        **SEED_BOOKMARKS, "theirs": {"v": 4}, "ours": {"v": 5}}


BOUND = 10  # seconds: a 1 s lock timeout plus a slow start on a busy machine


def test_postgres_lock_that_is_never_released_fails_in_bounded_time(
        tmp_path, postgres_server, pg_db):
    """As for a file lock and SQLite: give up after state_backend.lock_timeout_seconds."""
    url, dbname = pg_db
    root = write_project(tmp_path / "p")
    env = clean_env(MELTANO_DATABASE_URI=url, MELTANO_STATE_BACKEND_LOCK_TIMEOUT_SECONDS="1")
    with _pg_connect(postgres_server, dbname) as conn:
        before = read_pg_state(postgres_server, dbname)
        conn.execute("SELECT 1 FROM state WHERE state_id = %s FOR UPDATE", (ID,))
        started = time.monotonic()
        try:
            result = state_ext("merge", ID, stream("ours"), cwd=root, env=env, check=False,
                               timeout=BOUND)
        except subprocess.TimeoutExpired:
            pytest.fail(f"`state_extension merge` still waited for a row lock after {BOUND} s "
                        "with state_backend.lock_timeout_seconds=1")
        elapsed = time.monotonic() - started
        conn.rollback()
    assert result.returncode != 0, str(result)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.stderr, str(result)
    assert elapsed < BOUND
    assert read_pg_state(postgres_server, dbname) == before
