"""A PostgreSQL system database that stops answering ends a command in one line, not a hang.

The server is frozen with SIGSTOP (every process of it: it accepts TCP connections in the
kernel and then answers nothing, like a black-holed host) and thawed with SIGCONT
afterwards. It is this file's own throw-away cluster, so freezing it disturbs no other
test. With ``STATE_EXT_STALL_TIMEOUT_SECONDS=3`` each command must end well within the
generous bound below, with one line naming the database (password redacted).

A live server can stall a command too: a read of a table someone holds in ACCESS
EXCLUSIVE mode waits for it, and only the statement timeout (the same window) ends it.
And a server frozen while a statement runs keeps its timers frozen too: the client's
watchdog cuts that connection (after the lock timeout plus twice the window).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.support.cli import STATE_EXTENSION, clean_env, state_ext
from tests.support.postgres import PostgresServer, wait_until
from tests.support.project import write_project

PASSWORD = "s3cret-pg-pass"
BOUND = 60  # seconds: "it ended", not a speed test
SEED = '{"singer_state": {"bookmarks": {"s": {"k": 1}}}}'


@pytest.fixture(scope="module")
def own_postgres():
    server = PostgresServer().start()
    try:
        yield server
    finally:
        thaw(server)
        server.stop()


def server_pids(server: PostgresServer) -> list[int]:
    """The postmaster and every process it started."""
    postmaster = int((server.data / "postmaster.pid").read_text().split()[0])
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == postmaster:
                children.append(int(entry.name))
    return [postmaster, *children]


def signal_all(server: PostgresServer, signum: int) -> None:
    for pid in server_pids(server):
        with contextlib.suppress(ProcessLookupError):  # a backend that ended meanwhile
            os.kill(pid, signum)


def freeze(server: PostgresServer) -> None:
    signal_all(server, signal.SIGSTOP)


def thaw(server: PostgresServer) -> None:
    if (server.data / "postmaster.pid").exists():
        signal_all(server, signal.SIGCONT)


def meltano_schema(server: PostgresServer) -> str:
    """A database with Meltano's ``state`` table; its URL carries a password (the test
    cluster trusts everyone, so any password connects) that must never be printed."""
    import psycopg

    url = server.create_database()
    with psycopg.connect(f"host=127.0.0.1 port={server.port} user=postgres "
                         f"dbname={url.rsplit('/', 1)[1]}", autocommit=True) as conn:
        conn.execute("CREATE TABLE state (state_id VARCHAR(900) PRIMARY KEY, "
                     "partial_state TEXT, completed_state TEXT, updated_at TIMESTAMP)")
    return url.replace("postgres@", f"postgres:{PASSWORD}@")


def seeded(server: PostgresServer, tmp_path) -> tuple[Path, dict, str]:
    """A project on a fresh database of ``server`` holding one state."""
    root = write_project(tmp_path / "project")
    url = meltano_schema(server)
    env = clean_env(MELTANO_DATABASE_URI=url, STATE_EXT_STALL_TIMEOUT_SECONDS="3")
    state_ext("set", "--force", "dev:a-to-b", SEED, cwd=root, env=env)
    assert state_ext("list", cwd=root, env=env).stdout == "dev:a-to-b\n"
    return root, env, url


def one_line_in_time(args, root, env, *needles: str) -> str:
    started = time.monotonic()
    result = state_ext(*args, cwd=root, env=env, check=False, timeout=BOUND + 30)
    assert time.monotonic() - started < BOUND, str(result)
    assert result.returncode != 0 and result.stdout == "", str(result)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, str(result)
    for needle in needles:
        assert needle in lines[0], str(result)
    assert PASSWORD not in result.stderr
    return lines[0]


def test_frozen_postgres_ends_list_get_set_in_one_line(own_postgres, tmp_path):
    root, env, _ = seeded(own_postgres, tmp_path)

    freeze(own_postgres)
    try:
        for args in (["list"], ["get", "dev:a-to-b"],
                     ["set", "--force", "dev:a-to-b", '{"singer_state": {"x": 2}}']):
            one_line_in_time(args, root, env, f"127.0.0.1:{own_postgres.port}")
    finally:
        thaw(own_postgres)

    # Answering again: the refused write changed nothing.
    result = state_ext("get", "dev:a-to-b", cwd=root, env=env)
    assert result.stdout == '{"singer_state":{"bookmarks":{"s":{"k":1}}}}\n'


def test_a_read_blocked_by_a_table_lock_ends_after_the_stall_window(own_postgres, tmp_path):
    """A live server, but the ``state`` table held in ACCESS EXCLUSIVE mode (as a schema
    migration holds it): a read would wait forever without the statement timeout."""
    import psycopg

    root, env, url = seeded(own_postgres, tmp_path)
    database = url.rsplit("/", 1)[1]
    with psycopg.connect(f"host=127.0.0.1 port={own_postgres.port} user=postgres "
                         f"dbname={database}") as holder:
        holder.execute("LOCK TABLE state IN ACCESS EXCLUSIVE MODE")
        for args in (["list"], ["get", "dev:a-to-b"]):
            one_line_in_time(args, root, env, "statement timeout", database)
        holder.rollback()
    result = state_ext("get", "dev:a-to-b", cwd=root, env=env)
    assert result.stdout == '{"singer_state":{"bookmarks":{"s":{"k":1}}}}\n'


def test_a_server_frozen_mid_statement_is_cut_by_the_client(own_postgres, tmp_path):
    """``list`` waits on a table lock (a statement in flight), then the server freezes:
    its statement_timeout can no longer fire, so the client must give up by itself."""
    import psycopg

    root, env, url = seeded(own_postgres, tmp_path)
    env["MELTANO_STATE_BACKEND_LOCK_TIMEOUT_SECONDS"] = "1"
    dsn = f"host=127.0.0.1 port={own_postgres.port} user=postgres dbname={url.rsplit('/', 1)[1]}"
    with psycopg.connect(dsn) as holder, psycopg.connect(dsn, autocommit=True) as monitor:
        holder.execute("LOCK TABLE state IN ACCESS EXCLUSIVE MODE")
        started = time.monotonic()
        proc = subprocess.Popen([str(STATE_EXTENSION), "list"], cwd=root, env=env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            wait_until(lambda: monitor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND query LIKE 'SELECT state.state_id%'").fetchone()[0] > 0, timeout=30)
            freeze(own_postgres)
            try:
                stdout, stderr = proc.communicate(timeout=BOUND)
            finally:
                thaw(own_postgres)
        finally:
            proc.kill()
        assert time.monotonic() - started < BOUND
        holder.rollback()
    assert proc.returncode != 0 and stdout == "", stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    assert "the server stopped answering" in lines[0] and PASSWORD not in stderr, stderr
    assert f"127.0.0.1:{own_postgres.port}" in lines[0], stderr
