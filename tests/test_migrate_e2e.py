"""Issue 4 item 9: a real Meltano project migrates its state and resumes from it.

In each case the real ``meltano run tap-mini target-mini`` runs twice on the old backend
(the second run with ``--state-strategy merge``, so the stored envelope holds both a
completed and a partial half), state-ext migrates the state, the project is switched to
the new backend (environment variables, as ``meltano config`` would), and the third
``meltano run`` must resume from the migrated bookmark: tap_mini writes the state it was
given to ``$TAP_MINI_ARGV_FILE``. The migrated bytes are compared with what Meltano
itself stores (``json.dumps`` of the envelope, or of each half in the ``state`` table).

Cases: systemdb (SQLite) -> S3 through ``meltano invoke state-ext:migrate`` with no
arguments (``migrate_to`` in the plugin's config); file:// -> GCS; SQLite systemdb ->
PostgreSQL systemdb. Meltano calls cost seconds each, so every case makes as few as it can.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from tests.support.cli import STATE_EXTENSION, clean_env, meltano, state_ext
from tests.support.emulators import StoreCase, gcs_server, s3_server  # noqa: F401 - fixtures
from tests.support.project import write_project

pytestmark = pytest.mark.meltano

SINGER = Path(__file__).resolve().parent / "support" / "singer"
RUN_ID = "dev:tap-mini-to-target-mini"


def plugins(migrate_to: str | None = None) -> dict:
    state_ext_plugin = {
        "name": "state-ext",
        "namespace": "state_ext",
        "executable": str(STATE_EXTENSION),  # no pip_url: nothing to install
        "settings": [{"name": "migrate_to"}, {"name": "migrate_on_conflict"}],
        "commands": {"migrate": {"args": "migrate"}},
    }
    if migrate_to:
        state_ext_plugin["config"] = {"migrate_to": migrate_to}
    return {
        "extractors": [{"name": "tap-mini", "namespace": "tap_mini",
                        "executable": str(SINGER / "tap_mini.py"), "capabilities": ["state"]}],
        "loaders": [{"name": "target-mini", "namespace": "target_mini",
                     "executable": str(SINGER / "target_mini.py")}],
        "utilities": [state_ext_plugin],
    }


def bookmark(last_id: int, new: int) -> dict:
    return {"bookmarks": {"items": {"last_id": last_id, "new": new}}}


# What the two runs leave: run 1 (3 records) completes; run 2 (merge strategy) resumes
# after id 3, emits 4 and 5, and Meltano stores its STATE messages as partial state.
MIGRATED = {"completed": {"singer_state": bookmark(3, 3)},
            "partial": {"singer_state": bookmark(5, 2)}}


class Pipeline:
    def __init__(self, root: Path, env: dict) -> None:
        self.root, self.env = root, env
        self.seen = root / "tap-received.json"

    def run(self, total: int, *options: str, env: dict | None = None) -> dict:
        """One `meltano run`; returns the state the tap was given."""
        self.seen.unlink(missing_ok=True)
        run_env = {**(env or self.env), "TAP_MINI_TOTAL": str(total),
                   "TAP_MINI_ARGV_FILE": str(self.seen)}
        meltano("run", *options, "tap-mini", "target-mini", cwd=self.root, env=run_env)
        return json.loads(self.seen.read_text())["state"]

    def two_runs(self) -> None:
        assert self.run(3) == {}
        assert self.run(5, "--state-strategy", "merge") == bookmark(3, 3)

    def ext(self, *args, env: dict | None = None, check=True):
        return state_ext(*args, cwd=self.root, env=env or self.env, check=check)

    def resume(self, new_env: dict) -> None:
        """The run after the switch resumes from the migrated bookmark (id 5)."""
        assert self.run(7, env=new_env) == bookmark(5, 2)
        assert self.ext("export", env=new_env).json() == {
            RUN_ID: {"completed": {"singer_state": bookmark(7, 2)}, "partial": {}}}


def sqlite_rows(root: Path) -> dict:
    with sqlite3.connect(root / ".meltano" / "meltano.db") as conn:
        rows = conn.execute("SELECT state_id, completed_state, partial_state FROM state")
        return {i: (c, p) for i, c, p in rows.fetchall()}


def halves(envelope: dict) -> tuple[str, str]:
    return json.dumps(envelope["completed"]), json.dumps(envelope["partial"])


def test_systemdb_to_s3_through_meltano_invoke(tmp_path, s3_server):  # noqa: F811
    s3 = StoreCase("s3", s3_server)
    bucket = s3.new_bucket()
    target = f"s3://{bucket}/state"
    root = write_project(tmp_path / "project", plugins=plugins(migrate_to=target))
    new_env = clean_env(**s3.settings_env(target))  # S3 settings for both tools
    old_env = {k: v for k, v in new_env.items() if k != "MELTANO_STATE_BACKEND_URI"}
    pipeline = Pipeline(root, old_env)

    pipeline.two_runs()
    assert sqlite_rows(root) == {RUN_ID: halves(MIGRATED)}  # Meltano stored both halves

    invoked = meltano("invoke", "state-ext:migrate", cwd=root, env=old_env)
    assert "copied 1" in invoked.stderr, str(invoked)
    key = f"state/{RUN_ID}/state.json"
    assert s3.keys(bucket) == [key]
    assert s3.read(bucket, key)[0] == json.dumps(MIGRATED).encode()
    assert sqlite_rows(root) == {RUN_ID: halves(MIGRATED)}  # source untouched

    pipeline.resume(new_env)
    assert sqlite_rows(root) == {RUN_ID: halves(MIGRATED)}  # the old store is no longer used


def test_file_to_gcs(tmp_path, gcs_server):  # noqa: F811
    gcs = StoreCase("gs", gcs_server)
    bucket = gcs.new_bucket()
    target = f"gs://{bucket}/meltano/state"
    state_dir = tmp_path / "state"
    root = write_project(tmp_path / "project", plugins=plugins())
    new_env = clean_env(**gcs.settings_env(target))
    old_env = {**new_env, "MELTANO_STATE_BACKEND_URI": f"file://{state_dir}"}
    pipeline = Pipeline(root, old_env)

    pipeline.two_runs()
    source_file = state_dir / RUN_ID / "state.json"
    assert source_file.read_bytes() == json.dumps(MIGRATED).encode()

    result = pipeline.ext("migrate", "--to", target, "--format", "json")
    assert (result.json()["copied"], result.json()["ok"]) == (1, True)
    key = f"meltano/state/{RUN_ID}/state.json"
    assert gcs.keys(bucket) == [key]
    assert gcs.read(bucket, key)[0] == json.dumps(MIGRATED).encode()
    assert pipeline.ext("diff", "--to", target).stdout == ""

    pipeline.resume(new_env)
    assert source_file.read_bytes() == json.dumps(MIGRATED).encode()


@pytest.mark.postgres
def test_sqlite_systemdb_to_postgres_systemdb(tmp_path, postgres_url):
    import psycopg

    root = write_project(tmp_path / "project", plugins=plugins())
    old_env = clean_env()
    new_env = clean_env(MELTANO_DATABASE_URI=postgres_url)
    pipeline = Pipeline(root, old_env)

    pipeline.two_runs()
    assert sqlite_rows(root) == {RUN_ID: halves(MIGRATED)}
    meltano("state", "list", cwd=root, env=new_env)  # Meltano creates its schema

    # One command, as the issue asks: the project's SQLite systemdb to a PostgreSQL one.
    direct = pipeline.ext("migrate", "--to", postgres_url, "--format", "json", check=False)
    if direct.returncode != 0:
        # Not expressible today (see the report); finish through a file:// hop so the
        # resume below is still checked, and fail at the end.
        hop = f"file://{tmp_path / 'hop'}"
        pipeline.ext("migrate", "--to", hop)
        pipeline.ext("migrate", "--from", hop, "--to", "systemdb", env=new_env)

    dsn = postgres_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT state_id, completed_state, partial_state FROM state")
        assert {i: (c, p) for i, c, p in rows.fetchall()} == {RUN_ID: halves(MIGRATED)}

    pipeline.resume(new_env)
    assert sqlite_rows(root) == {RUN_ID: halves(MIGRATED)}
    assert direct.returncode == 0, (
        "no single `migrate` command moves SQLite systemdb state to a PostgreSQL systemdb: "
        f"{direct}")
