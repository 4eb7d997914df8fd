"""A generic fsspec protocol end to end: ``ftp://`` against a real FTP server (pyftpdlib).

The server serves a folder of this machine, so what state-ext writes over FTP can be
compared file for file with what it writes through ``file://``, and read by the real
Meltano's ``file://`` backend. Settings come from the environment as strings (the port
too) and are typed as ``FTPFileSystem`` declares them. Every failure is one line.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.support.cli import clean_env, meltano, state_ext
from tests.support.emulators import FtpServer, free_port
from tests.support.project import write_project
from tests.support.stderr import one_line

A, NESTED = "dev:tap-a-to-target-b", "team/dev:tap-c-to-target-d"


@pytest.fixture(scope="module")
def ftp(tmp_path_factory):
    server = FtpServer(tmp_path_factory.mktemp("ftp-root")).start()
    yield server
    server.close()


def ftp_env(server: FtpServer, path: str = "state", **extra: str) -> dict:
    """The backend as a user configures it: URI without port, settings as env strings."""
    settings = {"MELTANO_STATE_BACKEND_URI": f"ftp://127.0.0.1/{path}",
                "MELTANO_STATE_BACKEND_FTP_PORT": str(server.port),
                "MELTANO_STATE_BACKEND_FTP_USERNAME": server.user,
                "MELTANO_STATE_BACKEND_FTP_PASSWORD": server.password,
                "MELTANO_STATE_BACKEND_LOCK_RETRY_SECONDS": "0.1"}
    return clean_env(**{**settings, **extra})


def tree(root: Path) -> dict[str, object]:
    """Every file under ``root``: JSON parsed, anything else as text."""
    found = {}
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            path = Path(dirpath) / name
            text = path.read_text()
            found[str(path.relative_to(root))] = json.loads(text) if name.endswith(".json") \
                else text
    return found


SCRIPT = [
    ["set", "--force", A, '{"singer_state": {"bookmarks": {"s1": {"v": 1}}}}'],
    ["merge", A, '{"singer_state": {"bookmarks": {"s2": {"v": 2}}}}'],
    ["set", "--force", NESTED, '{"singer_state": {"n": 1}}'],
    ["set", "--force", "dev:gone", '{"singer_state": {}}'],
    ["clear", "--force", "dev:gone"],
]
IMPORTED = {"prod:x-to-y": {"completed": {"singer_state": {"i": 1}},
                            "partial": {"singer_state": {"j": 2}}}}


def run_script(root: Path, env: dict) -> dict:
    for args in SCRIPT:
        state_ext(*args, cwd=root, env=env)
    state_ext("import", cwd=root, env=env, input=json.dumps(IMPORTED))
    listed = state_ext("list", cwd=root, env=env).stdout.split()
    exported = state_ext("export", cwd=root, env=env).json()
    effective = state_ext("get", A, cwd=root, env=env).json()
    return {"list": listed, "export": exported, "get": effective}


def test_ftp_end_to_end_is_meltano_file_layout(ftp, tmp_path):
    root = write_project(tmp_path / "project")
    over_ftp = run_script(root, ftp_env(ftp, "e2e/state"))
    local = tmp_path / "local-state"
    over_file = run_script(root, clean_env(MELTANO_STATE_BACKEND_URI=f"file://{local}"))

    assert over_ftp == over_file
    assert over_ftp["list"] == sorted([A, NESTED, "prod:x-to-y"])
    assert over_ftp["get"] == {"singer_state": {"bookmarks": {"s1": {"v": 1}, "s2": {"v": 2}}}}
    # The same files, byte for byte in meaning, and no lock or temporary file left behind.
    on_server = tree(ftp.root / "e2e" / "state")
    assert on_server == tree(local)
    assert sorted(on_server) == sorted(
        [f"{A}/state.json", f"{NESTED}/state.json", "prod:x-to-y/state.json"])
    assert not (ftp.root / "e2e" / "state" / "dev:gone").exists()

    # The real Meltano reads what state-ext wrote over FTP through its own file:// backend,
    # and state-ext reads over FTP what Meltano writes there.
    meltano_env = clean_env(MELTANO_STATE_BACKEND_URI=f"file://{ftp.root / 'e2e' / 'state'}")
    got = meltano("state", "get", A, cwd=root, env=meltano_env).stdout
    assert json.loads(got.strip().splitlines()[-1]) == over_ftp["get"]
    meltano("state", "set", "--force", "dev:by-meltano", '{"singer_state": {"m": 1}}',
            cwd=root, env=meltano_env)
    read = state_ext("get", "dev:by-meltano", cwd=root, env=ftp_env(ftp, "e2e/state"))
    assert read.json() == {"singer_state": {"m": 1}}


def test_ftp_clear_all_and_copy_to_file(ftp, tmp_path):
    root = write_project(tmp_path / "project")
    env = ftp_env(ftp, "copy/state")
    state_ext("import", cwd=root, env=env, input=json.dumps(
        {f"id-{i}": {"completed": {"singer_state": {"i": i}}, "partial": {}} for i in range(20)}))
    target = tmp_path / "copied"
    state_ext("migrate", "--to", f"file://{target}", cwd=root, env=env)
    assert state_ext("diff", "--to", f"file://{target}", cwd=root, env=env).returncode == 0
    cleared = state_ext("clear", "--all", "--force", cwd=root, env=env)
    assert "20 state(s) were successfully cleared" in cleared.stderr
    assert state_ext("list", "--format", "json", cwd=root, env=env).json() == []


def failure(root: Path, env: dict, *args: str) -> str:
    result = state_ext(*(args or ("list",)), cwd=root, env=env, check=False, timeout=90)
    assert result.returncode == 1, str(result)
    return one_line(result.stderr)


def test_ftp_failures_are_one_line(ftp, tmp_path):
    root = write_project(tmp_path / "project")
    dead = free_port()
    cases = [
        (ftp_env(ftp, MELTANO_STATE_BACKEND_FTP_PORT=str(dead)),
         f"cannot reach the ftp endpoint at 127.0.0.1:{dead}: connection refused"),
        (ftp_env(ftp, MELTANO_STATE_BACKEND_URI="ftp://no-such-host.invalid/state"),
         "host name does not resolve"),
        (ftp_env(ftp, MELTANO_STATE_BACKEND_FTP_PORT="twenty-one"),
         "Setting state_backend.ftp.port must be an integer, got 'twenty-one'"),
        (ftp_env(ftp, MELTANO_STATE_BACKEND_FTP_TLS="maybe"),
         "Setting state_backend.ftp.tls must be true or false, got 'maybe'"),
        (ftp_env(ftp, MELTANO_STATE_BACKEND_URI="ftp:///state"),
         "missing 1 required positional argument: 'host'"),
        (ftp_env(ftp, MELTANO_STATE_BACKEND_FTP_PASSWORD="wrong-password"), "access denied"),
    ]
    for env, expected in cases:
        line = failure(root, env)
        assert expected in line, line
        assert "wrong-password" not in line and ftp.password not in line, line


def test_ftp_without_write_permission_is_access_denied(tmp_path):
    server = FtpServer(tmp_path / "ro-root", read_only=True).start()
    try:
        root = write_project(tmp_path / "project")
        line = failure(root, ftp_env(server), "set", "--force", A, '{"singer_state": {}}')
    finally:
        server.close()
    assert "access denied" in line, line


def test_ftp_server_gone_after_start_is_one_line(tmp_path):
    """The server answers the login, then disappears before the next command."""
    server = FtpServer(tmp_path / "gone-root").start()
    root = write_project(tmp_path / "project")
    env = ftp_env(server)
    state_ext("set", "--force", A, '{"singer_state": {}}', cwd=root, env=env)
    server.close()
    line = failure(root, env, "get", A)
    assert "connection refused" in line, line


def test_settings_are_typed_as_the_filesystem_declares():
    from fsspec.implementations.ftp import FTPFileSystem

    from state_ext.backends.fsspec_options import typed_options

    typed = typed_options(FTPFileSystem, "ftp", {
        "port": "2121", "tls": "no", "timeout": "2.5", "block_size": "4096",
        "username": "0042", "encoding": "latin-1", "skip_instance_cache": "true"})
    assert typed == {"port": 2121, "tls": False, "timeout": 2.5, "block_size": 4096,
                     "username": "0042", "encoding": "latin-1", "skip_instance_cache": True}


def test_typed_settings_from_the_environment_reach_the_server(ftp, tmp_path):
    root = write_project(tmp_path / "project")
    env = ftp_env(ftp, "typed/state", MELTANO_STATE_BACKEND_FTP_TIMEOUT="7.5",
                  MELTANO_STATE_BACKEND_FTP_TLS="false",
                  MELTANO_STATE_BACKEND_FTP_BLOCK_SIZE="65536")
    state_ext("set", "--force", A, '{"singer_state": {"t": 1}}', cwd=root, env=env)
    assert state_ext("get", A, cwd=root, env=env).json() == {"singer_state": {"t": 1}}
    config = state_ext("config", cwd=root, env=env).stdout
    assert "state_backend.ftp.password: (redacted)" in config, config
