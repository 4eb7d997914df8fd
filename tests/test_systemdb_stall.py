"""A PostgreSQL system database that stops answering ends a command in one line, not a hang.

The server is frozen with SIGSTOP (every process of it: it accepts TCP connections in the
kernel and then answers nothing, like a black-holed host) and thawed with SIGCONT
afterwards. It is this file's own throw-away cluster, so freezing it disturbs no other
test. With ``STATE_EXT_STALL_TIMEOUT_SECONDS=3`` each command must end well within the
generous bound below, with one line naming the database (password redacted).
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from tests.support.cli import clean_env, state_ext
from tests.support.postgres import PostgresServer
from tests.support.project import write_project

PASSWORD = "s3cret-pg-pass"
BOUND = 60  # seconds: "it ended", not a speed test
SEED = '{"singer_state": {"bookmarks": {"s": {"k": 1}}}}'


@pytest.fixture
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


def freeze(server: PostgresServer) -> None:
    for pid in server_pids(server):
        os.kill(pid, signal.SIGSTOP)


def thaw(server: PostgresServer) -> None:
    if (server.data / "postmaster.pid").exists():
        for pid in server_pids(server):
            os.kill(pid, signal.SIGCONT)


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


def test_frozen_postgres_ends_list_get_set_in_one_line(own_postgres, tmp_path):
    root = write_project(tmp_path / "project")
    env = clean_env(MELTANO_DATABASE_URI=meltano_schema(own_postgres),
                    STATE_EXT_STALL_TIMEOUT_SECONDS="3")
    state_ext("set", "--force", "dev:a-to-b", SEED, cwd=root, env=env)
    assert state_ext("list", cwd=root, env=env).stdout == "dev:a-to-b\n"

    freeze(own_postgres)
    try:
        for args in (["list"], ["get", "dev:a-to-b"],
                     ["set", "--force", "dev:a-to-b", '{"singer_state": {"x": 2}}']):
            started = time.monotonic()
            result = state_ext(*args, cwd=root, env=env, check=False, timeout=BOUND + 30)
            assert time.monotonic() - started < BOUND, str(result)
            assert result.returncode != 0, str(result)
            assert result.stdout == "", str(result)
            lines = result.stderr.strip().splitlines()
            assert len(lines) == 1, str(result)
            assert "Traceback" not in result.stderr
            assert f"127.0.0.1:{own_postgres.port}" in lines[0], str(result)
            assert PASSWORD not in result.stderr
    finally:
        thaw(own_postgres)

    # Answering again: the refused write changed nothing.
    result = state_ext("get", "dev:a-to-b", cwd=root, env=env)
    assert result.stdout == '{"singer_state":{"bookmarks":{"s":{"k":1}}}}\n'
