"""The EDK side of state-ext: describe, initialize, invoke, logging, a light `--help`.

What is checked is Meltano 4.4's EDK contract: the describe formats and logging options
of meltano-edk, the environment Meltano passes to a utility and how it re-logs stderr
(README: "Behaviour under Meltano").
"""

from __future__ import annotations

import json
import sys
from concurrent.futures import ThreadPoolExecutor
from importlib import resources

import pytest
import yaml

from tests.support.cli import run, state_ext

STATE_COMMANDS = ["list", "get", "set", "merge", "clear", "copy", "move", "export", "import"]
HEAVY_MODULES = ["sqlalchemy", "s3fs", "gcsfs", "adlfs", "boto3", "botocore", "google.cloud",
                 "azure.storage"]


def parallel(calls):
    """[(args, kwargs), ...] -> results, two at a time."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = [pool.submit(state_ext, *args, check=False, **kwargs) for args, kwargs in calls]
        return [f.result() for f in futures]


def bundle_text(name: str) -> str:
    return (resources.files("files_state_ext") / "bundle" / "state-ext" / name).read_text()


def nonblank(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


# -- describe --------------------------------------------------------------------------


def test_describe_json_and_yaml(tmp_path, env):
    as_json, as_yaml = parallel([
        (["describe", "--format", "json"], {"cwd": tmp_path, "env": env}),
        (["describe", "--format", "yaml"], {"cwd": tmp_path, "env": env}),
    ])
    for result in (as_json, as_yaml):
        assert result.returncode == 0, str(result)
        assert "Traceback" not in result.stderr

    data = json.loads(as_json.stdout)
    commands = {c["name"]: c for c in data["commands"]}
    assert "state_extension" in commands, data
    listed = commands["state_extension"]["commands"]
    for name in ["describe", "initialize", "invoke", *STATE_COMMANDS]:
        assert name in listed, (name, listed)
    assert commands["state_extension"]["pass_through_cli"] is False
    assert commands["state_extension"]["description"]

    assert yaml.safe_load(as_yaml.stdout) == data


def test_describe_text_names_the_commands(tmp_path, env):
    as_text, default = parallel([
        (["describe", "--format", "text"], {"cwd": tmp_path, "env": env}),
        (["describe"], {"cwd": tmp_path, "env": env}),
    ])
    assert as_text.returncode == 0 and default.returncode == 0, (str(as_text), str(default))
    assert default.stdout == as_text.stdout  # text is the default format
    # the text form must describe the commands, not only print the class names
    assert "state_extension" in as_text.stdout, as_text.stdout
    for name in STATE_COMMANDS:
        assert name in as_text.stdout, (name, as_text.stdout)


# -- initialize ------------------------------------------------------------------------


def test_initialize_creates_the_working_folder_and_is_idempotent(project, env):
    folder = project / "state-ext"
    first = state_ext("initialize", cwd=project, env=env)
    assert first.stdout == ""  # stdout is for data only
    assert (folder / "README.md").read_text() == bundle_text("README.md")
    assert (folder / ".gitignore").read_text() == bundle_text("gitignore")
    assert "exports/" in (folder / ".gitignore").read_text()
    assert (folder / "exports").is_dir()
    assert not (folder / "gitignore").exists()

    (folder / "README.md").write_text("my notes\n")
    (folder / "exports" / "keep.json").write_text("{}")
    second = state_ext("initialize", cwd=project, env=env)
    assert second.returncode == 0
    assert (folder / "README.md").read_text() == "my notes\n"
    assert (folder / ".gitignore").read_text() == bundle_text("gitignore")
    assert (folder / "exports" / "keep.json").read_text() == "{}"

    state_ext("initialize", "--force", cwd=project, env=env)
    assert (folder / "README.md").read_text() == bundle_text("README.md")
    assert (folder / "exports" / "keep.json").read_text() == "{}"  # --force never deletes


def test_initialize_targets_meltano_project_root_and_project_root_option(project, env, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    other = tmp_path / "other"
    other.mkdir()
    (other / "meltano.yml").write_text("version: 1\n")
    env_root = dict(env, MELTANO_PROJECT_ROOT=str(project))
    by_env, by_option = parallel([
        (["initialize"], {"cwd": elsewhere, "env": env_root}),
        (["initialize", "--project-root", str(other)], {"cwd": elsewhere, "env": env}),
    ])
    assert by_env.returncode == 0 and by_option.returncode == 0, (str(by_env), str(by_option))
    assert (project / "state-ext" / "README.md").is_file()
    assert (other / "state-ext" / "README.md").is_file()
    assert list(elsewhere.iterdir()) == []


def test_initialize_outside_a_project_fails_with_one_line(tmp_path, env):
    lonely = tmp_path / "lonely"
    lonely.mkdir()
    result = state_ext("initialize", cwd=lonely, env=env, check=False)
    assert result.returncode != 0, str(result)
    assert "Traceback" not in result.stderr
    assert len(nonblank(result.stderr)) == 1, str(result)
    assert "meltano.yml" in result.stderr
    assert result.stdout == ""
    assert list(lonely.iterdir()) == []


# -- invoke ----------------------------------------------------------------------------


def _seed_file_store(root):
    for state_id, value in [("dev:tap-a-to-target-b", 1), ("a/b", 2)]:
        folder = root / state_id
        folder.mkdir(parents=True)
        (folder / "state.json").write_text(json.dumps(
            {"completed": {"singer_state": {"v": value}}, "partial": {}}))


def test_invoke_runs_the_state_commands(project, env, tmp_path):
    store = tmp_path / "store"
    _seed_file_store(store)
    uri = f"file://{store}"
    listed, got, bad = parallel([
        (["invoke", "list", "--uri", uri], {"cwd": project, "env": env}),
        (["invoke", "get", "dev:tap-a-to-target-b", "--format", "pretty", "--uri", uri],
         {"cwd": project, "env": env}),
        (["invoke", "get", "a//b", "--uri", uri], {"cwd": project, "env": env}),
    ])
    assert listed.returncode == 0, str(listed)
    assert listed.stdout == "a/b\ndev:tap-a-to-target-b\n"
    assert got.returncode == 0, str(got)
    assert got.stdout == json.dumps({"singer_state": {"v": 1}}, indent=2) + "\n"
    assert bad.returncode == 1, str(bad)
    assert "Traceback" not in bad.stderr and "a//b" in bad.stderr
    assert bad.stdout == ""


# -- logging ---------------------------------------------------------------------------

NO_STATE = "No state IDs found."


@pytest.fixture
def empty_store_args(tmp_path):
    return ["--uri", f"file://{tmp_path / 'empty-store'}"]


def test_logging_options(project, env, empty_store_args):
    def call(*args, **extra_env):
        return ([*args, "list", *empty_store_args],
                {"cwd": project, "env": dict(env, **extra_env)})

    plain, levels, levels_env, as_json, as_json_env, quiet, quiet_env = parallel([
        call(),
        call("--log-levels"),
        call(LOG_LEVELS="true"),
        call("--meltano-log-json"),
        call(MELTANO_LOG_JSON="true"),
        call("--log-level", "error"),
        call(LOG_LEVEL="error"),
    ])
    for result in (plain, levels, levels_env, as_json, as_json_env, quiet, quiet_env):
        assert result.returncode == 0, str(result)
        assert result.stdout == ""

    assert NO_STATE in plain.stderr
    assert "[info" not in plain.stderr  # no level by default (EDK)

    for result in (levels, levels_env):
        line = next(line for line in nonblank(result.stderr) if NO_STATE in line)
        assert "[info" in line, str(result)

    for result in (as_json, as_json_env):
        lines = nonblank(result.stderr)
        assert lines, str(result)
        events = [json.loads(line) for line in lines]  # every stderr line is JSON
        assert any(e.get("event") == NO_STATE for e in events), str(result)

    for result in (quiet, quiet_env):
        assert NO_STATE not in result.stderr, str(result)


def test_logging_options_apply_to_invoked_commands(project, env, empty_store_args):
    """`state_extension --log-... invoke list` must log like `state_extension --log-... list`."""
    levels, as_json, quiet = parallel([
        ([opt, *rest, "invoke", "list", *empty_store_args], {"cwd": project, "env": env})
        for opt, *rest in (["--log-levels"], ["--meltano-log-json"], ["--log-level", "error"])
    ])
    for result in (levels, as_json, quiet):
        assert result.returncode == 0, str(result)
    assert "[info" in levels.stderr, str(levels)
    assert [json.loads(line)["event"] for line in nonblank(as_json.stderr)] == [NO_STATE], (
        str(as_json))
    assert NO_STATE not in quiet.stderr, str(quiet)


def test_errors_keep_their_level_and_are_one_line(project, env, empty_store_args):
    result = state_ext("--log-levels", "get", "../x", *empty_store_args,
                       cwd=project, env=env, check=False)
    assert result.returncode == 1
    lines = nonblank(result.stderr)
    assert len(lines) == 1 and "[error" in lines[0], str(result)


# -- a light --help --------------------------------------------------------------------

IMPORT_CHECK = """
import json, sys
from state_ext.cli import app
for argv in {argvs!r}:
    sys.argv = ["state_extension", *argv]
    try:
        app()
    except SystemExit as exc:
        assert exc.code in (0, None), (argv, exc.code)
heavy = {heavy!r}
print(json.dumps(sorted(m for m in sys.modules if m in heavy or m.split(".")[0] in heavy)))
"""


def _loaded(argvs, heavy, tmp_path, env):
    script = IMPORT_CHECK.format(argvs=argvs, heavy=heavy)
    result = run([sys.executable, "-c", script], cwd=tmp_path, env=env)
    assert result.returncode == 0, str(result)
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_top_level_help_imports_nothing_heavy(tmp_path, env):
    heavy = [*HEAVY_MODULES, "structlog", "rich", "meltano"]
    assert _loaded([["--help"], []], heavy, tmp_path, env) == []


def test_command_help_imports_no_database_or_cloud_sdk(tmp_path, env):
    argvs = [[name, "--help"] for name in ["describe", "initialize", "invoke", *STATE_COMMANDS,
                                          "config"]]
    assert _loaded(argvs, HEAVY_MODULES, tmp_path, env) == []


def test_a_state_command_logs_without_importing_rich(tmp_path, env):
    """structlog imports rich only for pretty tracebacks; ours are plain lines, so rich
    (about 40 ms of start-up) stays out even when logging is configured and a command runs
    against a store (state_ext.startup)."""
    store = f"--uri=file://{tmp_path / 'store'}"
    loaded = _loaded([["list", store], ["get", "any", store]], ["rich", "structlog"],
                     tmp_path, env)
    assert "structlog" in loaded and "rich" not in loaded, loaded
