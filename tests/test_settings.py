"""Resolving state_backend.* and database_uri the way Meltano does.

The rules are Meltano 4.4.1's (precedence, env var names, namespaces, $VAR expansion,
a file URI with four slashes, the env Meltano passes to a utility), as
state_ext/settings.py's docstring lists them. In-process, except the few checks that are
about what the `state_extension` executable prints.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from state_ext.errors import ConfigurationError
from state_ext.redact import redact_uri
from state_ext.settings import (
    REDACTED,
    ProjectSettings,
    expand_env_vars,
    find_project_root,
    to_env_var,
)
from tests.support.cli import state_ext
from tests.support.project import write_project

URI = "state_backend.uri"
TIMEOUT = "state_backend.lock_timeout_seconds"


def settings(root, environ=None) -> ProjectSettings:
    return ProjectSettings(root, environ=dict(environ or {}))


def write_dotenv(root: Path, **values: str) -> None:
    (root / ".env").write_text("".join(f"{k}={v}\n" for k, v in values.items()))


# -- precedence --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "in_env, in_dotenv, in_yml, expected, source",
    [
        (True, True, True, "file:///from-env", "env"),
        (False, True, True, "file:///from-dotenv", ".env"),
        (True, False, True, "file:///from-env", "env"),
        (True, True, False, "file:///from-env", "env"),
        (False, False, True, "file:///from-yml", "meltano.yml"),
        (False, True, False, "file:///from-dotenv", ".env"),
        (False, False, False, "systemdb", "default"),
    ],
)
def test_uri_precedence(project, in_env, in_dotenv, in_yml, expected, source):
    if in_yml:
        write_project(project, state_backend={"uri": "file:///from-yml"})
    if in_dotenv:
        write_dotenv(project, MELTANO_STATE_BACKEND_URI="file:///from-dotenv")
    environ = {"MELTANO_STATE_BACKEND_URI": "file:///from-env"} if in_env else {}
    value = settings(project, environ).get(URI)
    assert (value.value, value.source) == (expected, source)
    assert value.env_var == "MELTANO_STATE_BACKEND_URI"


def test_precedence_for_a_number_setting(project):
    s = settings(project)
    assert s.get(TIMEOUT).source == "default"
    assert s.number(TIMEOUT) == 10
    assert s.number("state_backend.lock_retry_seconds") == 1

    write_project(project, state_backend={"lock_timeout_seconds": 7})
    s = settings(project)
    assert (s.number(TIMEOUT), s.get(TIMEOUT).source) == (7, "meltano.yml")

    write_dotenv(project, MELTANO_STATE_BACKEND_LOCK_TIMEOUT_SECONDS="8")
    s = settings(project)
    assert (s.number(TIMEOUT), s.get(TIMEOUT).source) == (8, ".env")

    s = settings(project, {"MELTANO_STATE_BACKEND_LOCK_TIMEOUT_SECONDS": "9.5"})
    assert (s.number(TIMEOUT), s.get(TIMEOUT).source) == (9.5, "env")
    assert s.backend_settings("file:///x").lock_timeout_seconds == 9.5


def test_precedence_is_per_setting(project):
    write_project(project, state_backend={"uri": "file:///yml", "lock_timeout_seconds": 3,
                                          "lock_retry_seconds": 2})
    write_dotenv(project, MELTANO_STATE_BACKEND_LOCK_RETRY_SECONDS="4")
    s = settings(project, {"MELTANO_STATE_BACKEND_URI": "file:///env"})
    assert [(v.name, v.value, v.source) for v in s.describe()[:3]] == [
        (URI, "file:///env", "env"),
        (TIMEOUT, 3, "meltano.yml"),
        ("state_backend.lock_retry_seconds", "4", ".env"),
    ]
    backend = s.backend_settings()
    assert (backend.uri, backend.lock_timeout_seconds, backend.lock_retry_seconds) == (
        "file:///env", 3, 4)


def test_env_var_names():
    assert to_env_var("state_backend.uri") == "MELTANO_STATE_BACKEND_URI"
    assert to_env_var("state_backend.s3.aws_secret_access_key") == (
        "MELTANO_STATE_BACKEND_S3_AWS_SECRET_ACCESS_KEY")
    assert to_env_var("state_backend.my-store.user name") == (
        "MELTANO_STATE_BACKEND_MY_STORE_USER_NAME")


# -- nested and dotted keys in meltano.yml -------------------------------------------------


def test_nested_keys(project):
    write_project(project, state_backend={
        "uri": "s3://bucket/prefix",
        "lock_timeout_seconds": 4,
        "s3": {"endpoint_url": "http://nested:9000", "aws_access_key_id": "AKIDNESTED"},
    })
    s = settings(project)
    assert s.get(URI).value == "s3://bucket/prefix"
    assert s.get("state_backend.s3.endpoint_url").value == "http://nested:9000"
    assert s.get("state_backend.s3.endpoint_url").source == "meltano.yml"
    backend = s.backend_settings()
    assert backend.scheme == "s3"
    assert backend.lock_timeout_seconds == 4
    assert backend.options == {"endpoint_url": "http://nested:9000",
                               "aws_access_key_id": "AKIDNESTED"}


def test_dotted_top_level_key(project):
    write_project(project, **{"state_backend.lock_timeout_seconds": 5,
                              "state_backend.uri": "file:///dotted"})
    s = settings(project)
    assert (s.get(TIMEOUT).value, s.get(TIMEOUT).source) == (5, "meltano.yml")
    assert s.number(TIMEOUT) == 5
    assert s.get(URI).value == "file:///dotted"


def test_dotted_key_inside_the_mapping(project):
    write_project(project, state_backend={"uri": "s3://b/p", "s3.endpoint_url": "http://dotted"})
    s = settings(project)
    assert s.get("state_backend.s3.endpoint_url").value == "http://dotted"
    assert s.backend_settings().options == {"endpoint_url": "http://dotted"}


def test_nested_mapping_and_top_level_dotted_key_together(project):
    write_project(project, state_backend={"uri": "file:///nested"},
                  **{"state_backend.lock_timeout_seconds": 6})
    s = settings(project)
    assert s.get(URI).value == "file:///nested"
    assert s.number(TIMEOUT) == 6


def test_env_beats_nested_yml_key(project):
    write_project(project, state_backend={"uri": "s3://b/p", "s3": {"endpoint_url": "http://yml"}})
    s = settings(project, {"MELTANO_STATE_BACKEND_S3_ENDPOINT_URL": "http://env"})
    value = s.get("state_backend.s3.endpoint_url")
    assert (value.value, value.source) == ("http://env", "env")
    assert s.backend_settings().options["endpoint_url"] == "http://env"


def test_empty_or_odd_meltano_yml(project):
    (project / "meltano.yml").write_text("")
    assert settings(project).get(URI).value == "systemdb"
    (project / "meltano.yml").write_text("- a list\n")
    with pytest.raises(ConfigurationError):
        settings(project).get(URI)
    (project / "meltano.yml").write_text("state_backend: [unclosed\n")
    with pytest.raises(ConfigurationError) as info:
        settings(project).get(URI)
    assert "\n" not in str(info.value)


# -- $VAR expansion ----------------------------------------------------------------------


def test_expand_env_vars_function():
    env = {"A": "1", "B_2": "two", "lower": "l"}
    assert expand_env_vars("x$A-${B_2}-$MISSING-${lower}", env) == "x1-two--l"
    assert expand_env_vars("\\$A and \\${A}", env) == "$A and ${A}"
    assert expand_env_vars("no vars", env) == "no vars"


@pytest.mark.parametrize("form", ["$MELTANO_PROJECT_ROOT", "${MELTANO_PROJECT_ROOT}"])
def test_expansion_of_project_root(project, form):
    write_project(project, state_backend={"uri": f"file://{form}/state"})
    value = settings(project).get(URI)
    assert value.value == f"file://{project.resolve()}/state"
    assert value.source == "meltano.yml"


def test_expansion_of_sys_dir_root_default_and_override(project, tmp_path):
    write_project(project, state_backend={"uri": "file://${MELTANO_SYS_DIR_ROOT}/state"})
    assert settings(project).get(URI).value == f"file://{project.resolve()}/.meltano/state"
    other = tmp_path / "sysdir"
    s = settings(project, {"MELTANO_SYS_DIR_ROOT": str(other)})
    assert s.get(URI).value == f"file://{other}/state"
    assert s.get("database_uri").value == f"sqlite:///{other}/meltano.db"


def test_expansion_uses_process_env_and_dotenv(project):
    write_project(project, state_backend={
        "uri": "s3://$BUCKET/${PREFIX}",
        "s3": {"endpoint_url": "http://${S3_HOST}:$S3_PORT"},
    })
    write_dotenv(project, BUCKET="dotenv-bucket", S3_HOST="minio", S3_PORT="9000")
    s = settings(project, {"PREFIX": "env-prefix", "S3_PORT": "9999"})
    assert s.get(URI).value == "s3://dotenv-bucket/env-prefix"
    # the process environment wins over .env for the same variable
    assert s.get("state_backend.s3.endpoint_url").value == "http://minio:9999"


def test_expansion_of_an_env_var_setting(project):
    s = settings(project, {"MELTANO_STATE_BACKEND_URI": "file://${MELTANO_PROJECT_ROOT}/env-state"})
    assert s.get(URI).value == f"file://{project.resolve()}/env-state"
    assert s.get(URI).source == "env"


def test_value_made_only_of_missing_variables_is_unset(project):
    write_project(project, state_backend={"uri": "$NOT_SET_ANYWHERE"})
    assert settings(project).get(URI).value == "systemdb"


def test_escaped_dollar_stays_literal_in_the_backend_uri(project):
    """Meltano expands once: `\\$HOME` becomes a literal `$HOME`, never the home dir."""
    write_project(project, state_backend={"uri": "file:///tmp/a\\$HOME/state"})
    s = settings(project, {"HOME": "/root"})
    assert s.get(URI).value == "file:///tmp/a$HOME/state"
    assert s.backend_settings().uri == "file:///tmp/a$HOME/state"


def test_four_slash_sys_dir_uri_resolves(project):
    write_project(project, state_backend={"uri": "file:///${MELTANO_SYS_DIR_ROOT}/state"})
    value = settings(project).get(URI).value
    assert value == f"file:///{project.resolve()}/.meltano/state"
    assert value.startswith("file:////")


def test_four_slash_sys_dir_uri_end_to_end(project, env):
    write_project(project, state_backend={"uri": "file:///${MELTANO_SYS_DIR_ROOT}/state"})
    state_ext("set", "--force", "dev:tap-a-to-target-b", '{"singer_state": {"x": 1}}',
              cwd=project, env=env)
    stored = project / ".meltano" / "state" / "dev:tap-a-to-target-b" / "state.json"
    assert stored.read_text() == '{"completed": {"singer_state": {"x": 1}}, "partial": {}}'
    assert not (project / ".meltano" / "meltano.db").exists()
    result = state_ext("get", "dev:tap-a-to-target-b", cwd=project, env=env)
    assert result.stdout == '{"singer_state":{"x":1}}\n'


# -- meltano.yml `env:` ----------------------------------------------------------------------


def test_meltano_yml_env_block_acts_as_environment(project):
    write_project(project, state_backend={"uri": "file:///yml"},
                  env={"MELTANO_STATE_BACKEND_URI": "file:///env-block"})
    write_dotenv(project, MELTANO_STATE_BACKEND_URI="file:///dotenv")
    value = settings(project).get(URI)
    assert (value.value, value.source) == ("file:///env-block", "env")


def test_meltano_yml_env_block_beats_the_terminal_like_meltano(project):
    # Meltano: env = {**os.environ, **project.env, **meltano.yml env:}
    write_project(project, env={"MELTANO_STATE_BACKEND_URI": "file:///env-block"})
    s = settings(project, {"MELTANO_STATE_BACKEND_URI": "file:///terminal"})
    assert s.get(URI).value == "file:///env-block"


def test_meltano_yml_env_block_feeds_expansion(project):
    write_project(project, state_backend={"uri": "file://${STATE_HOME}/s"},
                  env={"STATE_HOME": "/srv/state"})
    assert settings(project).get(URI).value == "file:///srv/state/s"


# -- project root ------------------------------------------------------------------------


def test_project_root_discovered_from_cwd(project, monkeypatch):
    sub = project / "a" / "b"
    sub.mkdir(parents=True)
    monkeypatch.chdir(sub)
    assert find_project_root(None, {}) == project.resolve()
    assert settings(None).root == project.resolve()


def test_no_project_root(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    s = settings(None)
    assert s.root is None
    value = s.get("database_uri")
    assert value.value is None and value.source == "unset"
    assert s.get(URI).value == "systemdb"


def test_meltano_project_root_env_beats_cwd(project, tmp_path, monkeypatch):
    other = write_project(tmp_path / "other", state_backend={"uri": "file:///other"})
    monkeypatch.chdir(project)
    s = settings(None, {"MELTANO_PROJECT_ROOT": str(other)})
    assert s.root == other.resolve()
    assert s.get(URI).value == "file:///other"


def test_explicit_project_root_beats_env_and_cwd(project, tmp_path, monkeypatch):
    other = write_project(tmp_path / "other", state_backend={"uri": "file:///other"})
    third = write_project(tmp_path / "third")
    monkeypatch.chdir(third)
    s = ProjectSettings(other, environ={"MELTANO_PROJECT_ROOT": str(project)})
    assert s.root == other.resolve()
    assert s.get(URI).value == "file:///other"
    # the project variables follow the chosen root
    write_project(other, state_backend={"uri": "file://$MELTANO_PROJECT_ROOT/s"})
    s = ProjectSettings(other, environ={"MELTANO_PROJECT_ROOT": str(project)})
    assert s.get(URI).value == f"file://{other.resolve()}/s"


def test_explicit_project_root_without_meltano_yml_fails(tmp_path):
    with pytest.raises(ConfigurationError) as info:
        ProjectSettings(tmp_path / "nowhere", environ={})
    assert "meltano.yml" in str(info.value)


def test_project_root_discovery_in_the_cli(project, env, tmp_path):
    """cwd discovery < MELTANO_PROJECT_ROOT < --project-root, as `config` reports it."""
    sub = project / "deep" / "er"
    sub.mkdir(parents=True)
    other = write_project(tmp_path / "other", state_backend={"uri": "file:///other"})
    third = write_project(tmp_path / "third", state_backend={"uri": "file:///third"})
    calls = [
        ({}, []),
        ({"MELTANO_PROJECT_ROOT": str(other)}, []),
        ({"MELTANO_PROJECT_ROOT": str(other)}, ["--project-root", str(third)]),
    ]
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(
            lambda call: state_ext("config", "--format", "json", *call[1], cwd=sub,
                                   env=dict(env, **call[0])), calls))
    shown = [r.json() for r in results]
    assert [s["project_root"] for s in shown] == [
        str(project.resolve()), str(other.resolve()), str(third.resolve())]
    assert [s["settings"][URI]["value"] for s in shown] == [
        "systemdb", "file:///other", "file:///third"]


# -- database_uri ------------------------------------------------------------------------


def test_database_uri_default(project):
    value = settings(project).get("database_uri")
    assert value.value == f"sqlite:///{project.resolve()}/.meltano/meltano.db"
    assert value.value.startswith("sqlite:////")
    assert value.source == "default"
    assert settings(project).backend_settings().database_uri == value.value


def test_database_uri_overrides(project):
    write_project(project, database_uri="sqlite:///$MELTANO_PROJECT_ROOT/custom.db")
    value = settings(project).get("database_uri")
    assert (value.value, value.source) == (
        f"sqlite:///{project.resolve()}/custom.db", "meltano.yml")
    write_dotenv(project, MELTANO_DATABASE_URI="sqlite:////dotenv.db")
    assert settings(project).get("database_uri").value == "sqlite:////dotenv.db"
    value = settings(project, {"MELTANO_DATABASE_URI": "postgresql://u@h/db"}).get("database_uri")
    assert (value.value, value.source) == ("postgresql://u@h/db", "env")


# -- backend namespaces -------------------------------------------------------------------


def test_custom_namespace_from_env(project):
    environ = {
        "MELTANO_STATE_BACKEND_MSM_USERNAME": "bob",
        "MELTANO_STATE_BACKEND_MSM_PASSWORD": "pw",
        "MELTANO_STATE_BACKEND_S3_ENDPOINT_URL": "http://not-for-msm",
    }
    s = settings(project, environ)
    backend = s.backend_settings("msm://host/x")
    assert backend.scheme == "msm"
    assert backend.options == {"username": "bob", "password": "pw"}
    names = {v.name: v for v in s.describe("msm://host/x")}
    assert names["state_backend.msm.username"].value == "bob"
    assert names["state_backend.msm.password"].sensitive
    assert names["state_backend.msm.password"].display_value() == REDACTED
    assert "state_backend.s3.endpoint_url" not in names


def test_custom_namespace_from_meltano_yml_and_dotenv(project):
    write_project(project, state_backend={"uri": "msm://host/x", "msm": {"region": "eu"}})
    write_dotenv(project, MELTANO_STATE_BACKEND_MSM_USERNAME="alice")
    backend = settings(project).backend_settings()
    assert backend.options == {"region": "eu", "username": "alice"}


def test_namespace_does_not_leak_across_schemes(project):
    environ = {"MELTANO_STATE_BACKEND_MSM_USERNAME": "bob",
               "MELTANO_STATE_BACKEND_S3_ENDPOINT_URL": "http://s3"}
    s = settings(project, environ)
    assert s.backend_settings("s3://b/p").options == {"endpoint_url": "http://s3"}
    assert s.backend_settings("file:///x").options == {}
    assert s.backend_settings("systemdb").options == {}


def test_gs_scheme_reads_the_gcs_namespace(project):
    environ = {
        "MELTANO_STATE_BACKEND_GCS_APPLICATION_CREDENTIALS_PATH": "/keys/sa.json",
        "MELTANO_STATE_BACKEND_GS_IGNORED": "x",
    }
    s = settings(project, environ)
    backend = s.backend_settings("gs://bucket/prefix")
    assert backend.scheme == "gs"
    assert backend.options == {"application_credentials_path": "/keys/sa.json"}
    names = [v.name for v in s.describe("gs://bucket/prefix")]
    assert "state_backend.gcs.application_credentials_path" in names
    assert "state_backend.gcs.application_credentials_json" in names


def test_azure_namespace(project):
    write_project(project, state_backend={"uri": "azure://container/p",
                                          "azure": {"storage_account_url": "https://acct"}})
    assert settings(project).backend_settings().options == {"storage_account_url": "https://acct"}


@pytest.mark.parametrize("uri", ["", "nonsense", "/abs/path", "://x"])
def test_bad_uris_are_configuration_errors(project, uri):
    with pytest.raises(ConfigurationError):
        settings(project).backend_settings(uri)


# -- numbers ----------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["abc", "10s", "ten"])
def test_non_numeric_lock_timeout_is_a_configuration_error(project, value):
    s = settings(project, {"MELTANO_STATE_BACKEND_LOCK_TIMEOUT_SECONDS": value})
    with pytest.raises(ConfigurationError) as info:
        s.backend_settings("file:///x")
    message = str(info.value)
    assert TIMEOUT in message and repr(value) in message and "\n" not in message


def test_negative_lock_timeout_is_refused(project):
    write_project(project, state_backend={"lock_timeout_seconds": -1})
    with pytest.raises(ConfigurationError):
        settings(project).backend_settings("file:///x")


def test_non_numeric_lock_timeout_is_a_one_line_cli_error(project, env, tmp_path):
    env["MELTANO_STATE_BACKEND_LOCK_TIMEOUT_SECONDS"] = "abc"
    result = state_ext("list", "--uri", f"file://{tmp_path}/store", cwd=project, env=env,
                       check=False)
    assert result.returncode == 1, str(result)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, str(result)
    assert "lock_timeout_seconds" in lines[0] and "abc" in lines[0]
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


# -- redaction ---------------------------------------------------------------------------


def test_redact_uri_function():
    # for s3 the user part is the access key ID: hidden as well
    assert redact_uri("s3://KEY:SECRET@bucket/p") == "s3://***:***@bucket/p"
    assert redact_uri("s3://AK:se/cr/et@bucket/p") == "s3://***:***@bucket/p"
    assert redact_uri("postgresql://u@h/db?password=pw") == "postgresql://u@h/db?password=***"
    assert redact_uri("postgresql://u:pw@h:5432/db") == "postgresql://u:***@h:5432/db"
    assert redact_uri("postgresql://u:p@ss@h/db") == "postgresql://u:***@h/db"
    assert redact_uri("file:///x/y") == "file:///x/y"
    assert redact_uri("systemdb") == "systemdb"


def _assert_hidden(result, *secrets):
    both = result.stdout + result.stderr
    for secret in secrets:
        assert secret not in both, f"secret {secret!r} leaked:\n{result}"


def test_config_never_prints_secrets(project, env):
    secrets = {
        "uri": "UriS3cretValue+x9",
        "env": "EnvS3cretValue42",
        "db": "DbPassw0rdSecret",
    }
    key_id = "AKIDFROMENVVAR"  # sensitive in Meltano's settings, so redacted by `config`
    env.update({
        "MELTANO_STATE_BACKEND_URI": f"s3://AKIDINURI:{secrets['uri']}@my-bucket/prefix",
        "MELTANO_STATE_BACKEND_S3_AWS_SECRET_ACCESS_KEY": secrets["env"],
        "MELTANO_STATE_BACKEND_S3_AWS_ACCESS_KEY_ID": key_id,
        "MELTANO_STATE_BACKEND_S3_ENDPOINT_URL": "http://127.0.0.1:1",
        "MELTANO_DATABASE_URI": f"postgresql://meltano:{secrets['db']}@127.0.0.1:1/meltano",
    })
    text = state_ext("config", cwd=project, env=env)
    _assert_hidden(text, key_id, *secrets.values())
    assert "state_backend.s3.aws_secret_access_key" in text.stdout
    assert "my-bucket" in text.stdout and "http://127.0.0.1:1" in text.stdout
    assert "127.0.0.1:1/meltano" in text.stdout

    as_json = state_ext("config", "--format", "json", cwd=project, env=env)
    _assert_hidden(as_json, key_id, *secrets.values())
    shown = as_json.json()["settings"]
    assert shown["state_backend.s3.aws_secret_access_key"]["source"] == "env"
    assert shown["state_backend.s3.aws_secret_access_key"]["value"] not in (None, "")
    assert shown["state_backend.s3.endpoint_url"]["value"] == "http://127.0.0.1:1"
    assert "my-bucket" in shown["state_backend.uri"]["value"]
    assert shown["database_uri"]["source"] == "env"

    # nor in the error of a failing command, even with debug logs
    failing = state_ext("--log-level", "debug", "list", cwd=project, env=env, check=False)
    assert failing.returncode != 0
    _assert_hidden(failing, *secrets.values())
    env["MELTANO_STATE_BACKEND_URI"] = "systemdb"
    failing = state_ext("--log-level", "debug", "list", cwd=project, env=env, check=False)
    assert failing.returncode != 0
    _assert_hidden(failing, *secrets.values())


def test_config_with_uri_option_never_prints_its_secret(project, env):
    result = state_ext("config", "--format", "json", "--uri", "s3://KEYID:OptionS3cret@b/p",
                       cwd=project, env=env)
    _assert_hidden(result, "OptionS3cret")
    assert result.json()["settings"][URI]["source"] == "--uri"


def test_config_hides_an_aws_style_secret_containing_slashes(project, env):
    """AWS secret keys contain '/' (AWS's own example key below)."""
    secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    env["MELTANO_STATE_BACKEND_URI"] = f"s3://AKIDEXAMPLE:{secret}@bucket/prefix"
    env["MELTANO_STATE_BACKEND_S3_ENDPOINT_URL"] = "http://127.0.0.1:1"
    fragments = [secret, "wJalrXUtnFEMI", "bPxRfiCYEXAMPLEKEY"]
    for args in (["config"], ["config", "--format", "json"]):
        _assert_hidden(state_ext(*args, cwd=project, env=env), *fragments)
    _assert_hidden(state_ext("list", cwd=project, env=env, check=False), *fragments)


def test_config_hides_a_password_given_as_a_query_parameter(project, env):
    env["MELTANO_DATABASE_URI"] = "postgresql://meltano@127.0.0.1:1/meltano?password=QueryS3cret"
    for args in (["config"], ["config", "--format", "json"]):
        _assert_hidden(state_ext(*args, cwd=project, env=env), "QueryS3cret")
