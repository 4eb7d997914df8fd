"""`doctor` against real stores: every probe passes on file:// and S3 (moto) and leaves
no scratch state behind; a store that cannot be reached fails at the listing, skips the
rest, exits 1 and keeps secrets out of its output; a database URL given as
state_backend.uri gets the hint that Meltano would not accept it.
"""

from __future__ import annotations

import pytest

from tests.support.cli import clean_env, state_ext
from tests.support.emulators import (  # noqa: F401 - s3_server is a fixture
    StoreCase,
    free_port,
    s3_server,
    unreachable_s3_env,
)

STEPS = ["list", "read", "write", "read back", "delete"]


@pytest.fixture(params=["file", "s3"])
def reachable(request, tmp_path):
    if request.param == "file":
        return f"file://{tmp_path}/state", clean_env()
    store = StoreCase("s3", request.getfixturevalue("s3_server"))
    uri = f"s3://{store.new_bucket()}/meltano"
    return uri, clean_env(**store.settings_env(uri))


def test_every_probe_passes_and_nothing_is_left(reachable, tmp_path):
    uri, env = reachable
    state_ext("set", "--force", "--uri", uri, "dev:a-to-b", '{"singer_state": {}}',
              cwd=tmp_path, env=env)
    result = state_ext("doctor", "--uri", uri, "--format", "json", cwd=tmp_path, env=env)
    doc = result.json()
    assert doc["ok"] is True and doc["hints"] == []
    assert [(s["step"], s["ok"]) for s in doc["steps"]] == [(n, True) for n in STEPS]
    assert doc["steps"][0]["detail"] == "1 state(s)"
    assert state_ext("list", "--uri", uri, cwd=tmp_path, env=env).stdout == "dev:a-to-b\n"
    text = state_ext("doctor", "--uri", uri, cwd=tmp_path, env=env).stdout.splitlines()
    assert text[0].split() == ["backend", uri]
    assert [line.split()[1] for line in text[1:]] == ["ok", "ok", "ok", "back", "ok"]


def test_an_unreachable_store_fails_at_the_listing(tmp_path):
    env = unreachable_s3_env("very-secret-value")
    result = state_ext("doctor", "--uri", "s3://bucket/state", "--format", "json",
                       cwd=tmp_path, env=env, check=False)
    assert result.returncode == 1
    steps = result.json()["steps"]
    assert [(s["step"], s["ok"]) for s in steps] == [
        ("list", False), ("read", None), ("write", None), ("delete", None)]
    assert "bucket 'bucket'" in steps[0]["detail"]
    assert "very-secret-value" not in result.stdout + result.stderr
    assert result.stderr.strip().splitlines()[-1] == \
        "doctor: 1 step(s) failed on s3://bucket/state"


def test_a_database_url_as_state_backend_uri_gets_a_hint(tmp_path):
    url = f"postgresql://meltano:pw-secret@127.0.0.1:{free_port()}/meltano"
    result = state_ext("doctor", "--format", "json", cwd=tmp_path, check=False,
                       env=clean_env(MELTANO_STATE_BACKEND_URI=url))
    assert result.returncode == 1
    doc = result.json()
    assert doc["steps"][0]["ok"] is False
    assert doc["hints"] == [
        "state_backend.uri is a database URL: Meltano does not accept one there (it looks "
        "for an add-on named after the scheme). Keep state_backend.uri systemdb and set "
        "database_uri (MELTANO_DATABASE_URI) to that database"]
    assert "pw-secret" not in result.stdout + result.stderr
