"""`locks` on the system database: the `runs` row a killed `meltano run` leaves in state
RUNNING, live while its heartbeat is recent (Meltano itself then refuses the next run of
that state ID) and stale by Meltano's rule once no heartbeat came for 5 minutes (Meltano
then runs again). The run is real, killed with SIGKILL while its tap is still working.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import time

import pytest

from tests.support.cli import clean_env, meltano, meltano_path, state_ext
from tests.support.project import write_project
from tests.support.safe_runs import plugins

pytestmark = pytest.mark.meltano
STATE_ID = "dev:tap-mini-to-target-mini"


def running_rows(db) -> list[tuple]:
    with sqlite3.connect(db) as con:
        return con.execute("SELECT id, last_heartbeat_at FROM runs "
                           "WHERE state = 'RUNNING'").fetchall()


def test_a_killed_run_is_listed_live_then_stale_as_meltano_judges_it(tmp_path, meltano_bin):
    root = write_project(tmp_path / "proj", plugins=plugins())
    env = clean_env()
    db = root / ".meltano" / "meltano.db"
    meltano("state", "list", cwd=root, env=env)  # the system database
    run = subprocess.Popen([str(meltano_path()), "run", "tap-mini", "target-mini"], cwd=root,
                           env={**env, "TAP_MINI_SLEEP": "120"}, start_new_session=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not any(beat for _, beat in running_rows(db)):
            assert time.monotonic() < deadline, "meltano run never recorded a heartbeat"
            time.sleep(0.2)
    finally:
        os.killpg(run.pid, signal.SIGKILL)  # meltano and its tap and target, at once
        run.wait()
    (row_id, _), = running_rows(db)

    listed = state_ext("locks", "--format", "json", cwd=root, env=env).json()
    assert listed["locks"] == []
    (found,) = listed["running"]
    assert (found["state_id"], found["run_row"], found["stale"]) == (STATE_ID, row_id, False)
    assert found["age_seconds"] < 60 and found["last_heartbeat_at"]
    text = state_ext("locks", cwd=root, env=env).stdout.splitlines()
    assert text[1].split()[:3] == [STATE_ID, "live", text[1].split()[2]]
    assert f"runs row {row_id} RUNNING" in text[1]
    blocked = meltano("run", "tap-mini", "target-mini", cwd=root, env=env, check=False)
    assert blocked.returncode != 0  # Meltano agrees: the pipeline counts as running
    assert f"Another '{STATE_ID}' pipeline is already running" in blocked.stdout + blocked.stderr

    with sqlite3.connect(db) as con:  # what the row looks like ten minutes later
        con.execute("UPDATE runs SET last_heartbeat_at = datetime('now', '-10 minutes') "
                    "WHERE id = ?", (row_id,))
    (found,) = state_ext("locks", "--format", "json", cwd=root, env=env).json()["running"]
    assert found["stale"] is True and found["age_seconds"] > 590
    meltano("run", "tap-mini", "target-mini", cwd=root, env=env)  # Meltano agrees again
    assert state_ext("locks", "--format", "json", cwd=root, env=env).json()["running"] == []
