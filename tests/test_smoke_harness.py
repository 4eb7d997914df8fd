from tests.support.cli import meltano, state_ext


def test_state_ext_reads_what_meltano_imported(meltano_project):
    meltano("state", "set", "--force", "dev:tap-a-to-target-b", '{"singer_state": {"x": 1}}',
            cwd=meltano_project)
    result = state_ext("get", "dev:tap-a-to-target-b", cwd=meltano_project)
    assert result.stdout == '{"singer_state":{"x":1}}\n'


def test_postgres_systemdb(postgres_url, project, env):
    env["MELTANO_DATABASE_URI"] = postgres_url
    meltano("state", "set", "--force", "a", '{"singer_state": {"y": 2}}', cwd=project, env=env)
    result = state_ext("get", "a", cwd=project, env=env)
    assert result.stdout == '{"singer_state":{"y":2}}\n'
    state_ext("merge", "a", '{"singer_state": {"z": 3}}', cwd=project, env=env)
    result = meltano("state", "get", "a", cwd=project, env=env)
    assert result.json() == {"singer_state": {"y": 2, "z": 3}}
