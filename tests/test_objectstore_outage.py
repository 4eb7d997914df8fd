"""A server that stops answering in the middle of an operation: one clear error, in bounded
time, and nothing half-written (every stored state is whole when the server comes back)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from tests.support.cli import STATE_EXTENSION, clean_env, state_ext
from tests.support.emulators import FakeGcsServer, MotoServer, StoreCase
from tests.support.project import write_project


@pytest.fixture(params=["s3", "gs"])
def own_server(request):
    """A server of our own (not the shared one), since we freeze it."""
    server = (MotoServer if request.param == "s3" else FakeGcsServer)().start()
    yield StoreCase(request.param, server)
    os.kill(server.proc.pid, signal.SIGCONT)
    server.close()


def a_state_written(store: StoreCase, bucket: str) -> bool:
    """Whether a state of the import is stored, by a listing of a few keys (the import is
    quick: a full listing could see it only once done)."""
    if store.scheme == "s3":
        page = store.sdk.list_objects_v2(Bucket=bucket, Prefix="p/id-", MaxKeys=5)
        keys = [item["Key"] for item in page.get("Contents", ())]
    else:
        keys = [blob.name for blob in store.sdk.list_blobs(bucket, prefix="p/id-",
                                                           max_results=5)]
    return any(key.endswith("/state.json") for key in keys)


def test_server_frozen_during_import(own_server, tmp_path):
    store = own_server
    bucket = store.new_bucket()
    root = write_project(tmp_path / "project")
    ns = {"gs": "GCS"}.get(store.scheme, "S3")
    env = clean_env(**store.settings_env(f"{store.scheme}://{bucket}/p"),
                    **{f"MELTANO_STATE_BACKEND_{ns}_TIMEOUT_SECONDS": "2",
                       f"MELTANO_STATE_BACKEND_{ns}_MAX_ATTEMPTS": "1"})
    document = {f"id-{i:05d}": {"completed": {"singer_state": {"i": i, "pad": "x" * 200}},
                                "partial": {}} for i in range(3000)}
    proc = subprocess.Popen([str(STATE_EXTENSION), "import"], cwd=root, env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    proc.stdin.write(json.dumps(document))
    proc.stdin.close()
    deadline = time.monotonic() + 60
    while not a_state_written(store, bucket):
        assert time.monotonic() < deadline and proc.poll() is None, proc.stderr.read()
        time.sleep(0.01)
    os.kill(store.server.proc.pid, signal.SIGSTOP)
    frozen = time.monotonic()
    try:
        proc.wait(timeout=90)
        elapsed = time.monotonic() - frozen
        stderr = proc.stderr.read()
    finally:
        os.kill(store.server.proc.pid, signal.SIGCONT)
    assert proc.returncode != 0, stderr
    assert elapsed < 60
    error_lines = [line for line in stderr.splitlines() if bucket in line]
    assert len(error_lines) == 1, stderr
    assert "cannot" in error_lines[0] and "Traceback" not in stderr, stderr

    # The server answers again: every state it holds is whole and exactly what was imported.
    time.sleep(1)
    keys = store.keys(bucket)
    states = [k for k in keys if k.endswith("/state.json")]
    assert 0 < len(states) < len(document)
    for key in states:
        state_id = key[len("p/"):-len("/state.json")]
        body, _ = store.read(bucket, key)
        assert json.loads(body) == document[state_id]
    # Locks left by the interrupted writers are plain Meltano timestamps: stale after
    # lock_timeout_seconds, then taken over by the next writer.
    for key in keys:
        if key.endswith("/lock"):
            float(store.read(bucket, key)[0])
    # And a read against the frozen server fails within the bounded time too.
    os.kill(store.server.proc.pid, signal.SIGSTOP)
    started = time.monotonic()
    result = state_ext("get", "id-00000", cwd=root, env=env, check=False, timeout=60)
    os.kill(store.server.proc.pid, signal.SIGCONT)
    assert result.returncode != 0 and bucket in result.stderr
    assert time.monotonic() - started < 30
