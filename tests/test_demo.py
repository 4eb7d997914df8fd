"""`bash scripts/demo.sh` on a fresh clone, with nothing but Python on PATH (issue 9 item 7).

The clone is of the committed HEAD, as a new user gets it; node, npm and PostgreSQL's
programs are hidden from PATH, so the demo proves it needs none of them. It must show the
migrate summary and the diff result, and Meltano must read the migrated store.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.support.cli import REPO_ROOT, clean_env

pytestmark = pytest.mark.meltano

HIDDEN = {"node", "nodejs", "npm", "npx", "psql", "initdb", "pg_ctl", "postgres"}


def python_only_path(folder: Path) -> str:
    """A PATH with every program of the system's bin folders except node, npm, PostgreSQL."""
    folder.mkdir()
    for bin_dir in ("/usr/local/bin", "/usr/bin", "/bin"):
        for program in sorted(Path(bin_dir).iterdir()) if Path(bin_dir).is_dir() else ():
            link = folder / program.name
            if program.name in HIDDEN or link.exists() or link.is_symlink():
                continue
            link.symlink_to(program)
    return str(folder)


def test_demo_runs_on_a_fresh_clone_with_python_only(tmp_path):
    clone = tmp_path / "state-ext"
    subprocess.run(["git", "clone", "-q", str(REPO_ROOT), str(clone)], check=True)
    env = clean_env(PATH=python_only_path(tmp_path / "bin"))
    env.pop("VIRTUAL_ENV", None)
    proc = subprocess.run(["bash", "scripts/demo.sh"], cwd=clone, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not (clone / ".tools" / "azurite").exists()
    assert "5 state(s): copied 5" in proc.stderr, proc.stderr[-3000:]
    assert "only in source 0, only in destination 0, different 0, identical 5" in proc.stderr
    migrated = clone / ".meltano" / "demo-migrated-state"
    assert len([p for p in migrated.rglob("state.json")]) == 5
    assert proc.stdout.count("prod:tap-github-to-target-postgres") == 2  # list, export
    assert os.path.isfile(clone / ".venv-meltano" / "bin" / "meltano")
