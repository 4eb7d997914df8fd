"""Store failures at any moment are one stderr line, in the user's words, with no traceback.

Real servers (moto, fake-gcs-server, Azurite) behind a real TCP proxy that breaks the network
on cue (tests/support/emulators.py ``FaultProxy``): connections refused mid-import, responses
cut mid-body during an export, a server that accepts and never answers, a server killed
outright. The real ``state_extension`` runs as a subprocess each time.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import time

import pytest

from tests.support.cli import STATE_EXTENSION, clean_env, state_ext
from tests.support.emulators import (  # noqa: F401 - fixtures
    AZURE_KEY,
    FaultProxy,
    MotoServer,
    StoreCase,
    azure_server,
    gcs_server,
    s3_server,
    store,
)
from tests.support.project import write_project
from tests.support.stderr import one_line as only_line

COUNT = 3000
USER_TERMS = ("connection refused", "was dropped", "timed out", "does not exist",
              "credentials were rejected", "access denied")


def one_line(stderr: str) -> str:
    """The only stderr line, saying what happened in the user's terms."""
    line = only_line(stderr)
    assert any(term in line for term in USER_TERMS), line
    return line


def namespace(store: StoreCase) -> str:
    return {"gs": "GCS"}.get(store.scheme, store.scheme.upper())


def env_through(store: StoreCase, proxy_url: str, uri: str, **extra: str) -> dict:
    """The settings both CLIs read, with the server's address replaced by ``proxy_url``."""
    env = {k: v.replace(store.server.url, proxy_url)
           for k, v in store.settings_env(uri).items()}
    ns = namespace(store)
    return clean_env(**env, **{f"MELTANO_STATE_BACKEND_{ns}_TIMEOUT_SECONDS": "8",
                               f"MELTANO_STATE_BACKEND_{ns}_MAX_ATTEMPTS": "1"}, **extra)


def document(count: int = COUNT) -> dict:
    return {f"id-{i:05d}": {"completed": {"singer_state": {"i": i}}, "partial": {}}
            for i in range(count)}


def stored_ids(store: StoreCase, bucket: str) -> set[str]:
    return {k[len("p/"):-len("/state.json")] for k in store.keys(bucket)
            if k.startswith("p/id-") and k.endswith("/state.json")}


def start_import(root, env, doc) -> subprocess.Popen:
    proc = subprocess.Popen([str(STATE_EXTENSION), "import"], cwd=root, env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    proc.stdin.write(json.dumps(doc))
    proc.stdin.close()
    return proc


def finish(proc: subprocess.Popen) -> str:
    proc.wait(timeout=90)
    return proc.stderr.read()


def wait_for_states(store, bucket, proc, at_least: int) -> None:
    deadline = time.monotonic() + 90
    while len(stored_ids(store, bucket)) < at_least:
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline, "the import wrote nothing"
        time.sleep(0.05)


def test_store_gone_mid_import_says_how_much_was_written(store, tmp_path):
    """The network to the store goes away (connections reset, new ones refused) during a
    3,000-state import: one line, N of M, and running the import again completes it."""
    bucket = store.new_bucket()
    root = write_project(tmp_path / "project")
    uri = f"{store.scheme}://{bucket}/p"
    proxy = FaultProxy(store.server.port)
    doc = document()
    proc = start_import(root, env_through(store, proxy.url, uri), doc)
    wait_for_states(store, bucket, proc, 50)
    proxy.shut()
    stderr = finish(proc)

    assert proc.returncode == 1
    line = one_line(stderr)
    assert bucket in line and "running the same command again completes it" in line, line
    written = int(re.search(rf"(\d+) of {COUNT} states were written", line)[1])
    landed = stored_ids(store, bucket)
    assert 50 <= written <= len(landed) < COUNT, (written, len(landed))
    # only writes in flight (16) can land unconfirmed, each at most twice over: a create
    # that landed but whose answer was lost is retried by the SDK and then finds itself
    assert len(landed) - written <= 32
    for state_id in sorted(landed)[:20]:  # what landed is whole
        body, _ = store.read(bucket, f"p/{state_id}/state.json")
        assert json.loads(body) == doc[state_id]

    rerun = state_ext("import", cwd=root, input=json.dumps(doc), timeout=300,
                      env=env_through(store, store.server.url, uri))
    assert rerun.returncode == 0
    assert stored_ids(store, bucket) == set(doc)


def test_connection_dropped_mid_response_during_export(store, tmp_path):
    """Responses cut after their headers: 'dropped', not '400: Not enough data'."""
    bucket = store.new_bucket()
    root = write_project(tmp_path / "project")
    uri = f"{store.scheme}://{bucket}/p"
    with store.backend(uri) as backend:
        backend.put_many(_envelopes(document(200)))
    proxy = FaultProxy(store.server.port)
    try:
        proxy.drop_responses()
        result = state_ext("export", cwd=root, env=env_through(store, proxy.url, uri),
                           check=False, timeout=90)
    finally:
        proxy.shut()
    assert result.returncode == 1 and result.stdout == ""
    line = one_line(result.stderr)
    assert "was dropped" in line and bucket in line, line
    assert "400:" not in line and "Not enough data" not in line, line


def _envelopes(doc: dict) -> dict:
    from state_ext.model import Envelope

    return {k: Envelope(v["completed"], v["partial"]) for k, v in doc.items()}


@pytest.mark.parametrize("command", [["list"], ["get", "x"], ["set", "--force", "x",
                                                               '{"singer_state": {}}']])
def test_server_that_never_answers_times_out_in_one_line(s3_server, tmp_path, command):
    """A socket that accepts connections and never answers: 'timed out', within bounds."""
    silent = socket.create_server(("127.0.0.1", 0))
    port = silent.getsockname()[1]
    store = StoreCase("s3", s3_server)
    root = write_project(tmp_path / "project")
    try:
        started = time.monotonic()
        result = state_ext(*command, cwd=root, check=False, timeout=90,
                           env=env_through(store, f"http://127.0.0.1:{port}", "s3://bkt/p"))
        elapsed = time.monotonic() - started
    finally:
        silent.close()
    assert result.returncode == 1
    line = one_line(result.stderr)
    assert "timed out" in line and "state_backend.s3.timeout_seconds" in line, line
    assert elapsed < 30


def test_real_server_killed_during_import(tmp_path):
    """The issue's case: moto killed (SIGKILL) during a 3,000-state import."""
    server = MotoServer().start()
    try:
        store = StoreCase("s3", server)
        bucket = store.new_bucket()
        root = write_project(tmp_path / "project")
        proc = start_import(root, env_through(store, server.url, f"s3://{bucket}/p"), document())
        wait_for_states(store, bucket, proc, 20)
        server.proc.kill()
        stderr = finish(proc)
    finally:
        server.close()
    assert proc.returncode == 1
    line = one_line(stderr)
    assert re.search(rf"\d+ of {COUNT} states were written", line), line


def test_rejected_credentials_are_one_line(azure_server, tmp_path):
    """Azurite checks the account key: a wrong one is 'access denied' (403)."""
    store = StoreCase("azure", azure_server)
    bucket = store.new_bucket()
    root = write_project(tmp_path / "project")
    wrong = azure_server.connection_string.replace(AZURE_KEY, "d3Jvbmc=" * 11)
    for command in (["list"], ["set", "--force", "x", '{"singer_state": {}}']):
        result = state_ext(*command, cwd=root, check=False, env=clean_env(
            MELTANO_STATE_BACKEND_URI=f"azure://{bucket}/p",
            MELTANO_STATE_BACKEND_AZURE_CONNECTION_STRING=wrong))
        assert result.returncode == 1
        line = one_line(result.stderr)
        assert "access denied" in line and "d3Jvbmc" not in line, line


def test_missing_bucket_is_one_line(store, tmp_path):
    root = write_project(tmp_path / "project")
    uri = f"{store.scheme}://no-such-bucket-{int(time.time())}/p"
    for command in (["list"], ["export"], ["import"]):
        result = state_ext(*command, cwd=root, check=False, input=json.dumps(document(3)),
                           env=env_through(store, store.server.url, uri))
        assert result.returncode == 1
        assert "does not exist" in one_line(result.stderr)


@pytest.mark.parametrize("uri, problem", [
    ("s3://bkt/../x", "a '..' path segment"),
    ("gs://bkt/a/./b", "a '.' path segment"),
    ("azure://container/a//b", "an empty path segment ('//')"),
    ("s3://bkt/p/lock", "a last segment 'lock'"),
    ("gs://bkt/p/state.json", "a last segment 'state.json'"),
    ("memory://bkt/../x", "a '..' path segment"),
])
def test_prefixes_meltano_would_store_literally_are_refused(uri, problem, tmp_path):
    """Meltano 4.4.1 writes such keys as they are (``../x/<id>/state.json``): refused."""
    root = write_project(tmp_path / "project")
    for args in (["list", "--uri", uri], ["migrate", "--to", uri, "--from", "memory://ok/p"]):
        result = state_ext(*args, cwd=root, check=False, env=clean_env(
            AZURE_STORAGE_CONNECTION_STRING="AccountName=a;AccountKey=a2V5;"))
        assert result.returncode == 1
        line = only_line(result.stderr)
        assert f"Invalid state backend URI {uri!r}" in line and problem in line, line


def test_store_gone_mid_migrate_is_one_error_line(s3_server, tmp_path):
    """migrate writes concurrently on the event loop: when the destination goes away, no
    asyncio or aiohttp leftover follows the error, and the error says how far it got."""
    store = StoreCase("s3", s3_server)
    bucket = store.new_bucket()
    root = write_project(tmp_path / "project")
    source = f"file://{tmp_path / 'source'}"
    state_ext("import", cwd=root, env=clean_env(MELTANO_STATE_BACKEND_URI=source),
              input=json.dumps(document()))
    proxy = FaultProxy(store.server.port)
    env = env_through(store, proxy.url, f"s3://{bucket}/p")
    proc = subprocess.Popen([str(STATE_EXTENSION), "migrate", "--from", source, "--to",
                             f"s3://{bucket}/p"], cwd=root, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_states(store, bucket, proc, 50)
    proxy.shut()
    proc.wait(timeout=90)
    stderr = proc.stderr.read()
    assert proc.returncode == 1
    for noise in ("Traceback", "never retrieved", "Exception ignored", "Unclosed"):
        assert noise not in stderr, stderr
    errors = [line for line in stderr.splitlines() if "cannot" in line]
    assert len(errors) == 1 and bucket in errors[0], stderr
    assert any(term in errors[0] for term in USER_TERMS), errors[0]
    written = re.search(r"; (\d+) of (\d+) state\(s\) were written and verified before the "
                        r"failure; running the same command again completes it", errors[0])
    assert written and int(written.group(2)) == len(document()), errors[0]
    assert int(written.group(1)) <= len(store.keys(bucket))
