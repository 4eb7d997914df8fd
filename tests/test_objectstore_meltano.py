"""Object stores shared by the real meltano CLI and state_extension, on real local servers.

Meltano calls are slow (seconds each), so every test does as few as it can.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time

import pytest

from state_ext.model import Envelope
from tests.support.cli import clean_env, meltano, state_ext
from tests.support.emulators import (  # noqa: F401 - fixtures
    S3_KEY,
    S3_SECRET,
    MotoServer,
    azure_server,
    gcs_server,
    s3_server,
    store,
)
from tests.support.project import write_project

pytestmark = pytest.mark.meltano


@pytest.fixture
def shared(store, tmp_path, meltano_bin):
    """(store, bucket, project root, env) with state_backend.* set for both tools."""
    bucket = store.new_bucket()
    root = write_project(tmp_path / "project")
    env = clean_env(**store.settings_env(f"{store.scheme}://{bucket}/meltano/state"))
    return store, bucket, root, env


def test_both_directions_byte_identical(shared):
    store, bucket, root, env = shared
    imported = {f"dev:tap-{i}-to-target": {"completed": {"singer_state": {"i": i}},
                                           "partial": {}} for i in range(25)}
    meltano("state", "set", "--force", "from-meltano", '{"singer_state": {"a": 1}}',
            cwd=root, env=env)
    state_ext("set", "--force", "from-ext", '{"singer_state": {"a": 1}}', cwd=root, env=env)
    state_ext("merge", "from-meltano", '{"singer_state": {"b": 2}}', cwd=root, env=env)
    state_ext("import", cwd=root, env=env, input=json.dumps(imported))
    meltano("state", "merge", "from-ext", '{"singer_state": {"c": 3}}', cwd=root, env=env)

    # Meltano reads what state-ext wrote, merged and imported, and the reverse.
    exported = meltano("state", "export", cwd=root, env=env).json()
    assert exported == {
        "from-meltano": {"completed": {"singer_state": {"a": 1}},
                         "partial": {"singer_state": {"b": 2}}},
        "from-ext": {"completed": {"singer_state": {"a": 1}},
                     "partial": {"singer_state": {"c": 3}}},
        **imported,
    }
    assert state_ext("export", cwd=root, env=env).json() == exported
    assert state_ext("list", cwd=root, env=env).stdout.split() == sorted(exported)
    assert store.keys(bucket) == sorted(f"meltano/state/{i}/state.json" for i in exported)
    # Identical bytes, whoever wrote last; we always send Content-Type: application/json
    # (Meltano does on S3 and GCS; its Azure backend leaves application/octet-stream).
    by_ext = store.read(bucket, "meltano/state/from-meltano/state.json")
    by_meltano = store.read(bucket, "meltano/state/from-ext/state.json")
    assert by_ext[1] == "application/json"
    assert by_meltano[1] == (
        "application/octet-stream" if store.scheme == "azure" else "application/json")
    assert by_ext[0] == Envelope({"singer_state": {"a": 1}},
                                 {"singer_state": {"b": 2}}).to_json().encode()
    assert by_meltano[0] == Envelope({"singer_state": {"a": 1}},
                                     {"singer_state": {"c": 3}}).to_json().encode()


def test_state_ext_waits_for_meltanos_lock(shared):
    """A Meltano-style lock (plain float, no precondition) holds state-ext off until released."""
    store, bucket, root, env = shared
    store.write(bucket, "meltano/state/busy/lock", str(time.time()).encode())
    release = threading.Timer(3, store.delete, (bucket, "meltano/state/busy/lock"))
    release.start()
    started = time.monotonic()
    state_ext("set", "--force", "busy", '{"singer_state": {"v": 1}}', cwd=root, env=env)
    release.join()
    assert time.monotonic() - started >= 3
    assert store.keys(bucket) == ["meltano/state/busy/state.json"]


def test_meltano_waits_for_state_ext_lock(shared):
    """While state-ext holds the lock, Meltano's write waits; state-ext's write lands first."""
    store, bucket, root, env = shared
    uri = env["MELTANO_STATE_BACKEND_URI"]
    with store.backend(uri) as backend, backend.transaction("shared") as slot:
        proc = subprocess.Popen(
            [str(meltano.__globals__["meltano_path"]()), "state", "set", "--force", "shared",
             '{"singer_state": {"by": "meltano"}}'],
            cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(4)  # Meltano has started and is polling our lock
        assert proc.poll() is None
        slot.write(Envelope.complete({"singer_state": {"by": "state-ext"}}))
        assert json.loads(store.read(bucket, "meltano/state/shared/state.json")[0])[
            "completed"] == {"singer_state": {"by": "state-ext"}}
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    final = state_ext("get", "shared", cwd=root, env=env).json()
    assert final == {"singer_state": {"by": "meltano"}}


def test_only_our_prefix_is_listed(shared):
    store, bucket, root, env = shared
    store.write(bucket, "meltano/state-other/zzz/state.json",
                b'{"completed": {"singer_state": {}}, "partial": {}}')
    store.write(bucket, "meltano/state/a/b/state.json",
                b'{"completed": {"singer_state": {"n": 1}}, "partial": {}}')
    assert state_ext("list", cwd=root, env=env).stdout.split() == ["a/b"]
    assert state_ext("get", "a/b", cwd=root, env=env).json() == {"singer_state": {"n": 1}}


def test_bad_input_leaves_store_untouched(shared):
    store, bucket, root, env = shared
    result = state_ext("import", cwd=root, env=env, input='{"ok": {"completed": {}}, "bad": 3}',
                       check=False)
    assert result.returncode != 0 and "bad" in result.stderr
    result = state_ext("set", "--force", "x", "{not json", cwd=root, env=env, check=False)
    assert result.returncode != 0 and "Invalid JSON" in result.stderr
    assert store.keys(bucket) == []
