"""Custom backends from the ``meltano.state_backends`` entry-point group (the msm:// add-on).

The add-on (tests/support/msm_plugin) is installed by bootstrap into both .venv and
.venv-meltano, so Meltano and state-ext load the same code over the same SQLite file.
"""

from __future__ import annotations

import pytest

from state_ext.backends import available_schemes, open_backend
from state_ext.backends.plugins import PluginBackend
from state_ext.errors import BackendError
from state_ext.model import Envelope
from state_ext.settings import BackendSettings
from tests.support.cli import clean_env, meltano, state_ext
from tests.support.project import write_project


@pytest.fixture
def msm(tmp_path, monkeypatch):
    monkeypatch.setenv("MSM_DATA_DIR", str(tmp_path))
    return tmp_path


def test_registered_and_loaded_with_kwargs(msm):
    assert "msm" in available_schemes()
    settings = BackendSettings("msm://localhost/meltano", 7, 1,
                               {"username": "alice", "password": "s3cret-pw"})
    with open_backend(settings) as backend:
        assert isinstance(backend, PluginBackend)
        assert backend.manager.username == "alice"
        assert backend.manager.lock_timeout_seconds == 7
        backend.put("a/b", Envelope.complete({"singer_state": {"x": 1}}))
        backend.update("a/b", lambda cur: cur.merged_with_partial({"singer_state": {"y": 2}}))
        assert backend.list_ids() == ["a/b"]
        assert backend.list_ids("z*") == []
        assert backend.get("a/b").effective() == {"singer_state": {"x": 1, "y": 2}}
        assert backend.delete("a/b") is True and backend.get("a/b") is None
    assert (msm / "meltano.sqlite3").is_file()


def test_credentials_from_uri_and_errors_redacted(msm):
    with open_backend(BackendSettings("msm://bob:pw-one@localhost/db", 10, 1, {})) as backend:
        backend.put("x", Envelope.complete({"singer_state": {}}))
    with pytest.raises(BackendError) as info:
        open_backend(BackendSettings("msm://bob:pw-two@localhost/db", 10, 1, {}))
    assert "Authentication failed" in str(info.value) and "pw-two" not in str(info.value)
    with pytest.raises(BackendError, match="Password is required"):
        open_backend(BackendSettings("msm://localhost/db", 10, 1, {"username": "bob"}))


@pytest.mark.meltano
def test_meltano_and_state_ext_share_the_add_on(msm, tmp_path, meltano_bin):
    root = write_project(tmp_path / "project", state_backend={
        "uri": "msm://localhost/shared", "msm": {"username": "carol"}})
    (root / ".env").write_text("MELTANO_STATE_BACKEND_MSM_PASSWORD=pw-from-dotenv\n")
    env = clean_env(MSM_DATA_DIR=str(msm))
    meltano("state", "set", "--force", "m", '{"singer_state": {"by": "meltano"}}', cwd=root,
            env=env)
    state_ext("merge", "m", '{"singer_state": {"and": "state-ext"}}', cwd=root, env=env)
    state_ext("set", "--force", "e", '{"singer_state": {"by": "state-ext"}}', cwd=root, env=env)
    exported = meltano("state", "export", cwd=root, env=env).json()
    assert exported == {
        "m": {"completed": {"singer_state": {"by": "meltano"}},
              "partial": {"singer_state": {"and": "state-ext"}}},
        "e": {"completed": {"singer_state": {"by": "state-ext"}}, "partial": {}},
    }
    assert state_ext("list", cwd=root, env=env).stdout.split() == ["e", "m"]
    env["MELTANO_STATE_BACKEND_MSM_PASSWORD"] = "wrong-pw"
    result = state_ext("get", "m", cwd=root, env=env, check=False)
    assert result.returncode != 0 and "Authentication failed" in result.stderr
    assert "wrong-pw" not in result.stderr
