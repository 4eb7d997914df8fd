"""Throw-away projects that all hold the same states, and a byte-exact picture of them.

Used by the tests that prove bad or hostile input leaves a store as it was
(``test_bad_input``, ``test_hostile_input``, ``test_hostile_stored``,
``test_state_limits``): ``make_project`` seeds one project per case on a backend
(``file``, ``sqlite`` from a template database Meltano made, ``pg-closed`` for a
PostgreSQL nobody listens on), ``snapshot`` takes every file's bytes and the SQLite rows.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tests.support.cli import clean_env
from tests.support.postgres import free_port
from tests.support.project import write_project

SECRET = "s3cr3tpw"
GOOD = '{"singer_state": {"bookmarks": {"new": {"v": 9}}}}'
ID = "target"

# What every store holds before a case runs (Meltano's export document).
SEED = {
    "keep": {"completed": {"singer_state": {"bookmarks": {"k": {"v": 1}}}}, "partial": {}},
    ID: {
        "completed": {"singer_state": {"bookmarks": {"t": {"v": 2}}}},
        "partial": {"singer_state": {"bookmarks": {"p": {"v": 3}}}},
    },
    "dev:tap-a-to-target-b": {"completed": {"singer_state": {"x": 1}}, "partial": {}},
}


@dataclass
class Ctx:
    """One case's throw-away project."""

    backend: str
    root: Path
    env: dict

    @property
    def store(self) -> Path:
        return self.root / "state"

    @property
    def db(self) -> Path:
        return self.root / ".meltano" / "meltano.db"


def make_project(backend: str, root: Path, template_db: Path | None) -> Ctx:
    env = clean_env()
    if backend == "file":
        write_project(root, state_backend={"uri": f"file://{root}/state"})
        for state_id, envelope in SEED.items():
            (root / "state" / state_id).mkdir(parents=True)
            (root / "state" / state_id / "state.json").write_text(json.dumps(envelope))
    else:
        write_project(root)
    if backend == "sqlite":
        (root / ".meltano").mkdir()
        shutil.copyfile(template_db, root / ".meltano" / "meltano.db")
    if backend == "pg-closed":
        env["MELTANO_DATABASE_URI"] = (
            f"postgresql+psycopg://user:{SECRET}@127.0.0.1:{free_port()}/db"
        )
    (root / "good.json").write_text(GOOD)
    (root / "bad.json").write_text("{bad")
    return Ctx(backend, root, env)


def snapshot(ctx: Ctx):
    """Every folder and every file's bytes under the project, and the SQLite state rows.

    SQLite's -shm file is left out: it is a shared-memory index that readers update, and
    it holds no data (that is in the database and its -wal file, which do count). So is
    the safety-snapshot folder: a command that deletes or overwrites snapshots what it is
    about to change before it tries, and that copy may stay when the write then fails.
    """
    tree = {}
    for path in sorted(ctx.root.rglob("*")):
        rel = path.relative_to(ctx.root).as_posix()
        if rel.endswith(".db-shm") or rel == ".meltano" or rel.startswith(".meltano/state-ext"):
            continue
        if path.is_dir() and not path.is_symlink():
            tree[rel + "/"] = None
        else:
            tree[rel] = path.read_bytes()
    return tree, db_rows(ctx.db)


def db_rows(db: Path):
    """The state table, read from a copy: a reader would leave -wal/-shm files next to a
    WAL-mode database (Meltano's), and those must not count as a change."""
    if not db.is_file():
        return None
    with tempfile.TemporaryDirectory() as scratch:
        copy = Path(scratch) / "copy.db"
        shutil.copyfile(db, copy)
        wal = db.with_name(db.name + "-wal")
        if wal.is_file():
            shutil.copyfile(wal, copy.with_name("copy.db-wal"))
        con = sqlite3.connect(copy, timeout=30)
        try:
            return con.execute(
                "SELECT state_id, completed_state, partial_state, updated_at FROM state "
                "ORDER BY state_id"
            ).fetchall()
        except sqlite3.DatabaseError as exc:
            return f"no readable state table: {exc}"
        finally:
            con.close()
