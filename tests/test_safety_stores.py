"""Snapshot stores on real object-store servers (moto's S3, fake-gcs-server, Azurite),
restore onto file:// and S3 state backends, history from S3 object versions, and stores
that are missing or unreachable: one line, nothing written."""

from __future__ import annotations

import gzip
import json

import pytest

from tests.support.cli import clean_env, meltano, one_error_line, state_ext
from tests.support.emulators import (  # noqa: F401 - fixtures
    S3_KEY,
    S3_SECRET,
    StoreCase,
    azure_server,
    free_port,
    gcs_server,
    s3_server,
    unique_bucket,
)
from tests.support.safe_runs import STATES, singer


def namespace_env(case: StoreCase) -> dict[str, str]:
    """The state_backend.<ns>.* settings: the snapshot store uses the backends' own."""
    ns = {"gs": "GCS"}.get(case.scheme, case.scheme.upper())
    env = {"AWS_EC2_METADATA_DISABLED": "true", "AWS_DEFAULT_REGION": "us-east-1"}
    for key, value in case.options().items():
        env[f"MELTANO_STATE_BACKEND_{ns}_{key.upper()}"] = value
    if case.scheme == "gs":
        env.update(case.server.env())
    return env


def secrets_of(case: StoreCase) -> list[str]:
    return {"s3": [S3_SECRET], "gs": [],
            "azure": ["AccountKey", getattr(case.server, "connection_string", "")]}[case.scheme]


@pytest.fixture(params=["s3", "gs", "azure"])
def object_store(request):
    fixture = {"s3": "s3_server", "gs": "gcs_server", "azure": "azure_server"}[request.param]
    return StoreCase(request.param, request.getfixturevalue(fixture))


@pytest.fixture
def seeded(meltano_project, tmp_path):
    (tmp_path / "states.json").write_text(json.dumps(STATES))
    state_ext("import", str(tmp_path / "states.json"), cwd=meltano_project, env=clean_env())
    return meltano_project


def test_snapshots_in_an_object_store(seeded, object_store):
    case = object_store
    bucket = case.new_bucket()
    env = clean_env(**namespace_env(case), STATE_EXT_SNAPSHOT_URI=f"{case.scheme}://{bucket}/snaps")

    def cli(*args, check=True):
        return state_ext(*args, cwd=seeded, env=env, check=check)

    name = cli("snapshot", "--label", "pre-run").stdout.strip()
    meta_name = name.replace(".json.gz", ".meta.json")
    assert case.keys(bucket) == [f"snaps/{name}", f"snaps/{meta_name}"]
    document, _ = case.read(bucket, f"snaps/{name}")
    assert gzip.decompress(document).decode() == cli("export").stdout
    meta, _ = case.read(bucket, f"snaps/{meta_name}")
    for secret in secrets_of(case):
        assert secret.encode() not in document + meta
    listed = cli("snapshots", "--format", "json").json()
    assert listed["store"].startswith(f"{case.scheme}://{bucket}/snaps")
    assert [(s["name"], s["states"], s["bytes"]) for s in listed["snapshots"]] == [
        (name, 3, len(document))]

    cli("set", "--force", "dev:tap-c-to-target-b", json.dumps(singer(items=3)))
    failed = cli("guard", check=False)
    assert failed.returncode == 1 and "bookmark moved backwards: 10 → 3" in failed.stderr
    cli("restore", "--latest", "--force")
    assert cli("get", "dev:tap-c-to-target-b").json() == STATES[
        "dev:tap-c-to-target-b"]["completed"]
    assert len(cli("snapshots", "--format", "json").json()["snapshots"]) == 2
    cli("snapshots", "prune", "--keep", "1")
    assert len(case.keys(bucket)) == 2  # the newest document and its sidecar


def test_restore_onto_file_and_s3_backends(meltano_project, s3_server, tmp_path):  # noqa: F811 - fixture
    case = StoreCase("s3", s3_server)
    bucket = case.new_bucket()
    secret_uri = f"s3://{S3_KEY}:{S3_SECRET}@{bucket}/state"
    backends = {
        "file": ({"MELTANO_STATE_BACKEND_URI": f"file://{tmp_path}/state"}),
        "s3": {"MELTANO_STATE_BACKEND_URI": secret_uri,
               "MELTANO_STATE_BACKEND_S3_ENDPOINT_URL": s3_server.url,
               "AWS_EC2_METADATA_DISABLED": "true", "AWS_DEFAULT_REGION": "us-east-1"},
    }
    (tmp_path / "states.json").write_text(json.dumps(STATES))
    for kind, settings in backends.items():
        env = clean_env(**settings)

        def cli(*args, check=True, env=env):
            return state_ext(*args, cwd=meltano_project, env=env, check=check)

        cli("import", str(tmp_path / "states.json"))
        name = cli("snapshot", "--label", kind).stdout.strip()
        cli("clear", "--all", "--force")
        cli("set", "--force", "dev:other-to-target-b", json.dumps(singer(x=1)))
        cli("restore", name, "--force")
        restored = cli("export").json()
        assert restored.pop("dev:other-to-target-b") and restored == STATES, kind
        if kind == "file":  # Meltano reads what the restore wrote
            got = meltano("state", "get", "prod:tap-a-to-target-b", cwd=meltano_project,
                          env=env)
            assert got.json() == STATES["prod:tap-a-to-target-b"]["completed"]
    folder = meltano_project / ".meltano" / "state-ext" / "snapshots"
    metas = [json.loads(p.read_text()) for p in folder.glob("*s3.meta.json")]
    assert metas[0]["source"] == f"s3://***:***@{bucket}/state"
    for path in folder.iterdir():
        data = path.read_bytes()
        assert S3_SECRET.encode() not in (gzip.decompress(data) if path.suffix == ".gz" else data)


def test_history_reads_s3_object_versions(meltano_project, s3_server):  # noqa: F811 - fixture
    case = StoreCase("s3", s3_server)
    bucket = case.new_bucket()
    case.sdk.put_bucket_versioning(Bucket=bucket,
                                   VersioningConfiguration={"Status": "Enabled"})
    env = clean_env(**namespace_env(case), MELTANO_STATE_BACKEND_URI=f"s3://{bucket}/state")
    state_id = "dev:tap-a-to-target-b"

    def cli(*args, check=True):
        return state_ext(*args, cwd=meltano_project, env=env, check=check)

    for value in ("2024-01-01", "2024-02-01", "2024-03-01"):
        cli("set", "--force", state_id, json.dumps(singer(orders=value)))
    found = cli("history", state_id, "--format", "json").json()
    assert found["sources"]["s3 versions"] == "read: 3 record(s)"
    assert found["sources"]["runs table"] == "read: 0 record(s)"  # state-ext writes no rows
    versions = found["versions"]
    assert [v["summary"] for v in versions] == [
        "orders: 2024-02-01 → 2024-03-01", "orders: 2024-01-01 → 2024-02-01",
        "first seen: +orders"]
    assert all(v["ref"].startswith("s3:") for v in versions)
    text = cli("history", state_id)
    assert "source s3 versions: read: 3 record(s)" in text.stderr
    assert text.stdout.splitlines()[0].endswith("orders: 2024-02-01 → 2024-03-01")

    cli("restore", "--version", versions[-1]["ref"], state_id, "--force")
    assert cli("get", state_id).json() == singer(orders="2024-01-01")
    missing = cli("restore", "--version", "s3:nope", state_id, "--force", check=False)
    one_error_line(missing, "No version 's3:nope' in the history")

    plain = case.new_bucket()
    env["MELTANO_STATE_BACKEND_URI"] = f"s3://{plain}/state"
    cli("set", "--force", state_id, json.dumps(singer(orders="2024-01-01")))
    found = cli("history", state_id, "--format", "json").json()
    assert found["sources"]["s3 versions"].startswith("not read: the bucket keeps no")
    assert found["versions"][0]["ref"] == "current"  # then the restore's safety snapshot
    assert found["versions"][1]["ref"].endswith("--pre-restore.json.gz")


def test_missing_or_unreachable_snapshot_store_is_one_line(seeded, s3_server):  # noqa: F811 - fixture
    case = StoreCase("s3", s3_server)
    before = state_ext("export", cwd=seeded, env=clean_env()).json()
    missing = clean_env(**namespace_env(case),
                        STATE_EXT_SNAPSHOT_URI=f"s3://{unique_bucket('none')}/snaps")
    down = dict(missing, MELTANO_STATE_BACKEND_S3_ENDPOINT_URL=f"http://127.0.0.1:{free_port()}",
                MELTANO_STATE_BACKEND_S3_TIMEOUT_SECONDS="2")
    for env, needle in ((missing, "does not exist"), (down, "127.0.0.1")):
        for command in (["snapshot"], ["snapshots"], ["restore", "--latest", "--force"],
                        ["guard"], ["snapshots", "prune", "--keep", "1"]):
            result = state_ext(*command, cwd=seeded, env=env, check=False)
            one_error_line(result, needle)
            assert S3_SECRET not in result.stderr
    assert state_ext("export", cwd=seeded, env=clean_env()).json() == before
