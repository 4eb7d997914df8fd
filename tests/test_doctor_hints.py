"""`doctor`'s hints that need a real service: a snapshot store on S3 without bucket
versioning (moto), and credentials the service refuses (Azurite checks the account key's
signature: a wrong key is rejected, and the hint says the credential came from the
settings). Neither hint appears when the store is right.
"""

from __future__ import annotations

import pytest

from tests.support.cli import clean_env, state_ext
from tests.support.emulators import (  # noqa: F401 - the servers are fixtures
    StoreCase,
    azure_server,
    s3_server,
)

PROJECT = "version: 1\nproject_id: doctor-hints\n"


def doctor(project, env):
    return state_ext("doctor", "--format", "json", cwd=project, env=env, check=False)


def test_a_snapshot_store_bucket_without_versioning_gets_a_hint(s3_server, tmp_path):  # noqa: F811
    (tmp_path / "meltano.yml").write_text(PROJECT)
    case = StoreCase("s3", s3_server)
    bucket = case.new_bucket()
    env = clean_env(**case.settings_env(f"file://{tmp_path}/state"),
                    STATE_EXT_SNAPSHOT_URI=f"s3://{bucket}/snapshots")
    result = doctor(tmp_path, env)
    assert result.returncode == 0, str(result)
    hints = result.json()["hints"]
    assert len(hints) == 1 and "without versioning" in hints[0], hints
    assert f"s3://{bucket}/snapshots" in hints[0]

    case.sdk.put_bucket_versioning(Bucket=bucket,
                                   VersioningConfiguration={"Status": "Enabled"})
    assert doctor(tmp_path, env).json()["hints"] == []


def test_a_local_snapshot_store_gets_no_versioning_hint(tmp_path):
    (tmp_path / "meltano.yml").write_text(PROJECT)
    env = clean_env(MELTANO_STATE_BACKEND_URI=f"file://{tmp_path}/state")
    result = doctor(tmp_path, env)
    assert result.returncode == 0 and result.json()["hints"] == [], str(result)


@pytest.mark.parametrize("wrong", [True, False])
def test_credentials_the_service_refuses_get_a_hint(azure_server, tmp_path, wrong):  # noqa: F811
    case = StoreCase("azure", azure_server)
    container = case.new_bucket()
    uri = f"azure://{container}/state"
    env = clean_env(**case.settings_env(uri))
    if wrong:  # a well-formed key of the right length that is not the account's
        good = env["MELTANO_STATE_BACKEND_AZURE_CONNECTION_STRING"]
        key = good.split("AccountKey=", 1)[1].split(";", 1)[0]
        bad = "A" * (len(key) - 2) + "=="
        env["MELTANO_STATE_BACKEND_AZURE_CONNECTION_STRING"] = good.replace(key, bad)
    result = doctor(tmp_path, env)
    refused = [h for h in result.json()["hints"] if "refused the credentials" in h]
    if wrong:
        assert result.returncode == 1
        assert len(refused) == 1, result.json()
        assert "state_backend.azure.connection_string" in refused[0]
        assert bad not in result.stdout + result.stderr
    else:
        assert result.returncode == 0 and refused == [], str(result)
