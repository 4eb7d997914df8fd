"""No credential in any output, whatever the command, the log level or the form it came in
(issue 14 item 5). Canary credentials in each form, against a working store (moto accepts
any key) and a failing one (nothing listens, or the key is refused); every command at
``--log-level debug --sdk-log-level debug`` (botocore then logs every request with its
Authorization header), in text and JSON logs. Real processes, real moto server."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.support.cli import clean_env, state_ext
from tests.support.emulators import s3_server, unique_bucket  # noqa: F401 - fixture
from tests.support.project import write_project

KEY_ID, SECRET, TOKEN = "AKIACANARYKEY7QX3ZL", "canary+Secret/Value9kQ", "canaryTokenZZ8c1"
URI_KEY, URI_SECRET = "AKIACANARYURI4MV2", "canaryUriSecret77h"
ACCOUNT_KEY = "Y2FuYXJ5QWNjb3VudEtleVNob3VsZE5ldmVyU2hvdw=="
PG_PASSWORD = "canaryPgPass55w"
PRIVATE_KEY = "-----BEGIN PRIVATE KEY-----\\ncanaryPrivateKeyBody\\n-----END PRIVATE KEY-----\\n"
CANARIES = [KEY_ID, SECRET, TOKEN, URI_KEY, URI_SECRET, ACCOUNT_KEY, PG_PASSWORD,
            "canaryPrivateKeyBody", SECRET.replace("/", "%2F").replace("+", "%2B")]
NOWHERE = "http://127.0.0.1:1"  # nothing listens: every request fails

COMMANDS = [
    ["list"], ["get", "dev:a"], ["set", "--force", "dev:a", '{"singer_state": {"x": 1}}'],
    ["merge", "dev:a", '{"singer_state": {"y": 2}}'], ["export"], ["config"],
    ["snapshot"], ["guard"], ["clear", "--force", "dev:zz"],
]


def forms(moto_url: str, bucket: str, tmp_path) -> dict[str, tuple[dict, str]]:
    """name -> (environment, state backend URI) for each way a credential arrives."""
    s3 = {"AWS_EC2_METADATA_DISABLED": "true", "AWS_DEFAULT_REGION": "us-east-1",
          "MELTANO_STATE_BACKEND_S3_MAX_ATTEMPTS": "1",
          "MELTANO_STATE_BACKEND_S3_TIMEOUT_SECONDS": "3"}
    settings = {"MELTANO_STATE_BACKEND_S3_AWS_ACCESS_KEY_ID": KEY_ID,
                "MELTANO_STATE_BACKEND_S3_AWS_SECRET_ACCESS_KEY": SECRET}
    chain = {"AWS_ACCESS_KEY_ID": KEY_ID, "AWS_SECRET_ACCESS_KEY": SECRET,
             "AWS_SESSION_TOKEN": TOKEN}
    gcs_key = json.dumps({"type": "service_account", "project_id": "p", "private_key_id": "k1",
                          "private_key": PRIVATE_KEY.replace("\\n", "\n"),
                          "client_email": "a@p.iam.gserviceaccount.com", "client_id": "1",
                          "token_uri": "https://oauth2.googleapis.com/token"})
    azure = (f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
             f"AccountKey={ACCOUNT_KEY};BlobEndpoint=http://127.0.0.1:1/devstoreaccount1;")
    uri = f"s3://{bucket}/state"
    return {
        "s3 settings, working": ({**s3, **settings,
                                  "MELTANO_STATE_BACKEND_S3_ENDPOINT_URL": moto_url}, uri),
        "s3 settings, failing": ({**s3, **settings,
                                  "MELTANO_STATE_BACKEND_S3_ENDPOINT_URL": NOWHERE}, uri),
        "s3 uri, working": ({**s3, "MELTANO_STATE_BACKEND_S3_ENDPOINT_URL": moto_url},
                            f"s3://{URI_KEY}:{URI_SECRET}@{bucket}/state"),
        "aws chain, working": ({**s3, **chain, "AWS_ENDPOINT_URL_S3": moto_url}, uri),
        "aws chain, failing": ({**s3, **chain, "AWS_ENDPOINT_URL_S3": NOWHERE}, uri),
        "azure connection string, failing": (
            {"MELTANO_STATE_BACKEND_AZURE_CONNECTION_STRING": azure,
             "MELTANO_STATE_BACKEND_AZURE_MAX_ATTEMPTS": "1"}, "azure://container/state"),
        "gcs key json, failing": (
            {"MELTANO_STATE_BACKEND_GCS_APPLICATION_CREDENTIALS_JSON": gcs_key,
             "STORAGE_EMULATOR_HOST": NOWHERE, "MELTANO_STATE_BACKEND_GCS_MAX_ATTEMPTS": "1"},
            "gs://bucket/state"),
        "postgres password, failing": (
            {"MELTANO_DATABASE_URI":
             f"postgresql://meltano:{PG_PASSWORD}@127.0.0.1:1/meltano"}, "systemdb"),
    }


@pytest.fixture(scope="module")
def outcomes(s3_server, tmp_path_factory):  # noqa: F811
    bucket = unique_bucket()
    s3_server.create_bucket(bucket)
    root = write_project(tmp_path_factory.mktemp("redaction") / "project")
    calls = []
    for name, (env, uri) in forms(s3_server.url, bucket, root).items():
        base = clean_env(MELTANO_STATE_BACKEND_URI=uri, **env)
        for json_logs in (False, True):
            run_env = {**base, "MELTANO_LOG_JSON": "true"} if json_logs else base
            for command in COMMANDS:
                calls.append((name, json_logs, command, run_env))

    def one(call):
        name, json_logs, command, env = call
        result = state_ext("--log-level", "debug", "--sdk-log-level", "debug", *command,
                           cwd=root, env=env, check=False, timeout=120)
        return name, json_logs, command, result

    with ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(one, calls))


def test_no_canary_in_any_output(outcomes):
    leaks = [(name, json_logs, command, canary)
             for name, json_logs, command, result in outcomes
             for canary in CANARIES if canary in result.stdout + result.stderr]
    assert leaks == []


def test_the_forms_really_were_exercised(outcomes):
    """Each working form reached moto (its commands succeeded) and logged the SDK's wire
    traffic; each failing one failed: the redaction was put to the test."""
    by_form: dict[str, list] = {}
    for name, _json, command, result in outcomes:
        by_form.setdefault(name, []).append((command, result))
    for name, results in by_form.items():
        listed = [r for c, r in results if c == ["list"]]
        if name.endswith("working"):
            assert all(r.returncode == 0 for r in listed), (name, [str(r) for r in listed])
            assert any("Authorization" in r.stderr for r in listed), name
        else:
            assert all(r.returncode != 0 for r in listed), (name, [str(r) for r in listed])
