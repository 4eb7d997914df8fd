"""A store that stops answering (SIGSTOP: what a network black hole or a stuck proxy looks
like) ends the command within the stall window, whatever the size of the job.

Every backend call is bounded by progress, not by size: the command fails once no request
has completed for ``stall_timeout_seconds`` (env ``STATE_EXT_STALL_TIMEOUT_SECONDS``; 3 s
here, with the SDKs' own read timeouts at 60 s so that only the stall window can end the
wait), with one line naming the service, the bucket and what was waiting. After SIGCONT a
re-run completes exactly. Plugin backends get a watchdog around each call (the msm://
add-on's ``MSM_FREEZE_ON`` knob hangs its calls).

Knobs: ``STATE_EXT_STRESS=1`` (or ``STATE_EXT_STALL_TRIALS=<n>``) repeats the frozen-server
trial; ``STATE_EXT_STRESS_REPORT=<file>`` appends one JSON line of figures per trial.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.support.cli import STATE_EXTENSION, clean_env, state_ext
from tests.support.emulators import AzuriteServer, FakeGcsServer, MotoServer, StoreCase
from tests.support.project import write_project

STALL = 3
ENDED_WITHIN = 60  # generous: "it ended", not a speed measure
STRESS = os.environ.get("STATE_EXT_STRESS") == "1"
TRIALS = int(os.environ.get("STATE_EXT_STALL_TRIALS", 3 if STRESS else 1))
STATES = int(os.environ.get("STATE_EXT_STALL_STATES", 3000))
SERVICE = {"s3": "S3", "gs": "GCS", "azure": "Azure"}
SERVERS = {"s3": MotoServer, "gs": FakeGcsServer, "azure": AzuriteServer}


@pytest.fixture(params=["s3", "gs", "azure"])
def own_server(request):
    """A server of our own (not the shared one), since we freeze it."""
    server = SERVERS[request.param]().start()
    yield StoreCase(request.param, server)
    os.kill(server.proc.pid, signal.SIGCONT)
    server.close()


def seed_file_store(path: Path, count: int) -> dict:
    """Meltano's file:// layout, written directly (fast)."""
    states = {}
    for i in range(count):
        state_id = f"dev:tap-{i:05d}-to-target"
        envelope = {"completed": {"singer_state": {"i": i, "pad": "x" * 100}}, "partial": {}}
        (path / state_id).mkdir(parents=True)
        (path / state_id / "state.json").write_text(json.dumps(envelope))
        states[state_id] = envelope
    return states


def store_env(store: StoreCase, uri: str, **extra) -> dict:
    ns = {"gs": "GCS"}.get(store.scheme, store.scheme.upper())
    return clean_env(**{
        **store.settings_env(uri),
        "STATE_EXT_STALL_TIMEOUT_SECONDS": str(STALL),
        f"MELTANO_STATE_BACKEND_{ns}_TIMEOUT_SECONDS": "60",
        "MELTANO_STATE_BACKEND_LOCK_TIMEOUT_SECONDS": "2",
        **extra,
    })


def frozen_while(store: StoreCase, args: list[str], root, env, *, started=None) -> tuple:
    """Run ``args``; once ``started()`` is true, freeze the server. (returncode, stderr,
    seconds from the freeze to the end)."""
    proc = subprocess.Popen([str(STATE_EXTENSION), *args], cwd=root, env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    pid = store.server.proc.pid
    try:
        deadline = time.monotonic() + 120
        while started is not None and not started():
            assert proc.poll() is None, f"ended before the freeze: {proc.communicate()}"
            assert time.monotonic() < deadline, "the operation never started"
            time.sleep(0.05)
        os.kill(pid, signal.SIGSTOP)
        frozen = time.monotonic()
        try:
            _, stderr = proc.communicate(timeout=ENDED_WITHIN)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, stderr = proc.communicate()
            pytest.fail(f"still waiting {ENDED_WITHIN} s after the server froze: {stderr}")
        return proc.returncode, stderr, time.monotonic() - frozen
    finally:
        os.kill(pid, signal.SIGCONT)
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def the_one_line(store: StoreCase, bucket: str, stderr: str, what: str) -> str:
    assert "Traceback" not in stderr and "never retrieved" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if "cannot" in line or "rror" in line]
    assert len(errors) == 1 and bucket in errors[0], stderr
    line = errors[0]
    assert SERVICE[store.scheme] in line and f"cannot {what}" in line, line
    assert "no answer" in line and "stall_timeout_seconds" in line, line
    return line


def report(figures: dict) -> None:
    path = os.environ.get("STATE_EXT_STRESS_REPORT")
    if path:
        with open(path, "a") as out:
            out.write(json.dumps(figures) + "\n")


def test_frozen_server_mid_migrate_then_reads(own_server, tmp_path):
    store = own_server
    root = write_project(tmp_path / "project")
    source_dir = tmp_path / "source"
    states = seed_file_store(source_dir, STATES)
    source = f"file://{source_dir}"
    for trial in range(TRIALS):
        bucket = store.new_bucket()
        dest = f"{store.scheme}://{bucket}/p"
        env = store_env(store, dest)

        def some_written(bucket=bucket) -> bool:
            return sum(k.endswith("/state.json") for k in store.keys(bucket)) >= 50

        code, stderr, waited = frozen_while(
            store, ["migrate", "--from", source, "--to", dest], root, env, started=some_written)
        assert code != 0, stderr
        line = the_one_line(store, bucket, stderr, "write states")
        written = len([k for k in store.keys(bucket) if k.endswith("/state.json")])
        assert 0 < written < STATES, line

        # Reads against the frozen server: list, get and export end the same way.
        for args, what in ((["list", "--uri", dest], "list state"),
                           (["get", "--uri", dest, "dev:tap-00000-to-target"],
                            "read state 'dev:tap-00000-to-target'")):
            code2, stderr2, waited2 = frozen_while(store, args, root, env)
            assert code2 != 0, stderr2
            the_one_line(store, bucket, stderr2, what)
            waited = max(waited, waited2)

        # The server answers again: a re-run completes exactly (with the default window:
        # 3 s is for the freezes, a loaded machine can make a healthy listing slower).
        healthy = {**env, "STATE_EXT_STALL_TIMEOUT_SECONDS": "30"}
        rerun = state_ext("migrate", "--from", source, "--to", dest, cwd=root, env=healthy,
                          timeout=600)
        exported = state_ext("export", "--uri", dest, cwd=root, env=healthy,
                             timeout=300).json()
        assert exported == states, rerun.stderr
        leftovers = [k for k in store.keys(bucket) if not k.endswith("/state.json")]
        report({"test": "frozen-server", "store": store.scheme, "trial": trial,
                "states": STATES, "written_before_freeze": written,
                "worst_seconds_to_fail": round(waited, 1), "lost": 0, "corrupt": 0,
                "leftovers": len(leftovers)})


# -- plugin backends: a watchdog around every call ------------------------------------------
@pytest.mark.parametrize("method, args, what", [
    ("get", ["get", "a"], "read state 'a'"),
    ("get_state_ids", ["list"], "list state"),
    ("set", ["merge", "a", '{"singer_state": {"y": 2}}'], "write state 'a'"),
])
def test_plugin_backend_watchdog(tmp_path, method, args, what):
    root = write_project(tmp_path / "project", state_backend={
        "uri": "msm://localhost/stall", "msm": {"username": "ann"}})
    env = clean_env(MSM_DATA_DIR=str(tmp_path), MELTANO_STATE_BACKEND_MSM_PASSWORD="pw",
                    STATE_EXT_STALL_TIMEOUT_SECONDS=str(STALL),
                    MELTANO_STATE_BACKEND_LOCK_TIMEOUT_SECONDS="2")
    state_ext("set", "--force", "a", '{"singer_state": {"x": 1}}', cwd=root, env=env)
    started = time.monotonic()
    result = state_ext(*args, cwd=root, env={**env, "MSM_FREEZE_ON": method}, check=False,
                       timeout=ENDED_WITHIN)
    waited = time.monotonic() - started
    assert result.returncode != 0, result
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if "msm" in line]
    assert len(lines) == 1, result.stderr
    assert f"cannot {what}" in lines[0] and "no answer within" in lines[0], lines[0]
    assert "stall_timeout_seconds" in lines[0], lines[0]
    report({"test": "plugin-watchdog", "store": f"msm:{method}", "trial": 0,
            "worst_seconds_to_fail": round(waited, 1), "lost": 0, "corrupt": 0,
            "leftovers": 0})
    # The add-on answers again: the same command completes, and nothing was half-written.
    state_ext(*args, cwd=root, env=env)
    assert state_ext("get", "a", cwd=root, env=env).json()["singer_state"]["x"] == 1


def test_lock_wait_longer_than_the_stall_window_is_progress(tmp_path):
    """A lock wait whose polls get answers is not a stall: a merge waits out a foreign
    lock for longer than the window, then writes."""
    store_dir = tmp_path / "state"
    root = write_project(tmp_path / "project", state_backend={"uri": f"file://{store_dir}"})
    server = MotoServer().start()
    try:
        store = StoreCase("s3", server)
        bucket = store.new_bucket()
        uri = f"s3://{bucket}/p"
        env = store_env(store, uri, STATE_EXT_STALL_TIMEOUT_SECONDS="2",
                        MELTANO_STATE_BACKEND_LOCK_TIMEOUT_SECONDS="4")
        state_ext("set", "--force", "a", '{"singer_state": {"x": 1}}', cwd=root, env=env)
        from datetime import datetime, timezone

        store.write(bucket, "p/a/lock", str(datetime.now(timezone.utc).timestamp()).encode())
        documents = json.dumps({f"b{i}": {"completed": {"singer_state": {"i": i}},
                                          "partial": {}} for i in range(20)} |
                               {"a": {"completed": {"singer_state": {"x": 2}}, "partial": {}}})
        result = state_ext("import", cwd=root, env=env, input=documents, timeout=ENDED_WITHIN)
        assert result.returncode == 0, result
        assert state_ext("get", "a", cwd=root, env=env).json() == {"singer_state": {"x": 2}}
    finally:
        server.close()


def test_frozen_ftp_server_ends_a_read_within_the_window(tmp_path, monkeypatch):
    """A sync fsspec filesystem (FTP, whose own timeout is set to 120 s here) is bounded by
    the stall window too: a frozen server ends the read in one line naming the setting,
    and closing the backend afterwards does not hang (in process, connected first)."""
    from state_ext.backends import open_backend
    from state_ext.errors import BackendError
    from state_ext.settings import BackendSettings
    from tests.support.emulators import FtpServer

    server = FtpServer(tmp_path / "ftp-root").start()
    try:
        seed = tmp_path / "ftp-root" / "state" / "dev:a-to-b"
        seed.mkdir(parents=True)
        (seed / "state.json").write_text('{"completed": {"singer_state": {}}, "partial": {}}')
        monkeypatch.setenv("STATE_EXT_STALL_TIMEOUT_SECONDS", str(STALL))
        options = {"port": server.port, "username": server.user, "password": server.password,
                   "timeout": 120}
        backend = open_backend(BackendSettings("ftp://127.0.0.1/state", 2, 0.1, options))
        assert backend.list_ids() == ["dev:a-to-b"]
        os.kill(server.proc.pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            with pytest.raises(BackendError) as failure:
                backend.get("dev:a-to-b")
            took = time.monotonic() - started
            backend.close()
        finally:
            os.kill(server.proc.pid, signal.SIGCONT)
        assert "no answer" in failure.value.message and "stall_timeout_seconds" in \
            failure.value.message, failure.value.message
        assert server.password not in failure.value.message
        assert took < ENDED_WITHIN, took
    finally:
        server.close()
