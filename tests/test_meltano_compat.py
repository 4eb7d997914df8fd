"""state-ext and the real Meltano 4.4 share one store, both ways, on three stores.

Each test runs on the SQLite system database, a PostgreSQL system database
(``MELTANO_DATABASE_URI``) and a ``file://`` store (``MELTANO_STATE_BACKEND_URI``), with the
same environment for both tools. Meltano writes with ``state set``/``merge``/``import`` and
real ``meltano run`` pipelines (tests/support/singer: a tiny tap and target), state-ext
reads; state-ext writes, Meltano reads (and a real run hands state-ext's state to the tap).
Besides what the two CLIs print, the raw rows and files are compared with the exact bytes
Meltano writes (``json.dumps`` of each half / of the whole envelope).

Meltano calls cost ~1-1.5 s each (a run ~3 s), so each test batches its writes first and
compares everything afterwards.
"""

from __future__ import annotations

import json
import os
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.cli import meltano, state_ext
from tests.support.project import write_project

pytestmark = pytest.mark.meltano

SINGER = Path(__file__).resolve().parent / "support" / "singer"
PLUGINS = {
    "extractors": [{
        "name": "tap-mini",
        "namespace": "tap_mini",
        "executable": str(SINGER / "tap_mini.py"),
        "capabilities": ["state"],
    }],
    "loaders": [{
        "name": "target-mini",
        "namespace": "target_mini",
        "executable": str(SINGER / "target_mini.py"),
    }],
}
RUN_ID = "dev:tap-mini-to-target-mini"  # default_environment dev + tap-mini-to-target-mini


def envelope(completed: dict | None = None, partial: dict | None = None) -> dict:
    return {"completed": completed or {}, "partial": partial or {}}


def singer(value) -> dict:
    return {"singer_state": value}


def bookmark(stream: str, last_id: int, new: int) -> dict:
    """The singer_state tap_mini emits (and target_mini echoes) after a run."""
    return singer({"bookmarks": {stream: {"last_id": last_id, "new": new}}})


@dataclass
class Store:
    """One state store, as both tools see it through the same project and environment."""

    kind: str  # sqlite | postgres | file
    root: Path
    env: dict
    state_dir: Path | None = None
    postgres_url: str | None = None
    _schema_ready: bool = field(default=False)

    # -- the two CLIs --------------------------------------------------------------
    def meltano(self, *args, check=True, **extra_env):
        env = {**self.env, **extra_env}
        return meltano(*args, cwd=self.root, env=env, check=check)

    def ext(self, *args, check=True, input=None):
        return state_ext(*args, cwd=self.root, env=self.env, check=check, input=input)

    def ensure_schema(self) -> None:
        """A system database with Meltano's schema (state-ext never creates it)."""
        if self.kind == "postgres" and not self._schema_ready:
            self.meltano("state", "list")
        self._schema_ready = True

    # -- the raw store -------------------------------------------------------------
    def raw(self) -> dict:
        """Every stored state as the store holds it: file text, or the two DB columns."""
        if self.kind == "file":
            found = {}
            for dirpath, _dirs, files in os.walk(self.state_dir):
                if "state.json" in files:
                    state_id = os.path.relpath(dirpath, self.state_dir)
                    found[state_id] = (Path(dirpath) / "state.json").read_text(encoding="utf-8")
            return found
        query = "SELECT state_id, completed_state, partial_state FROM state"
        if self.kind == "sqlite":
            with sqlite3.connect(self.root / ".meltano" / "meltano.db") as conn:
                rows = conn.execute(query).fetchall()
        else:
            import psycopg

            dsn = self.postgres_url.replace("postgresql+psycopg://", "postgresql://")
            with psycopg.connect(dsn) as conn:
                rows = conn.execute(query).fetchall()
        return {state_id: (completed, partial) for state_id, completed, partial in rows}

    def expected_raw(self, env: dict):
        """What Meltano itself stores for an envelope: ``json.dumps`` with defaults."""
        if self.kind == "file":
            return json.dumps({"completed": env["completed"], "partial": env["partial"]})
        return (json.dumps(env["completed"]), json.dumps(env["partial"]))

    def assert_raw(self, expected: dict[str, dict]) -> None:
        assert self.raw() == {i: self.expected_raw(e) for i, e in expected.items()}

    def stray_files(self) -> list[str]:
        """Anything in a file store besides <id>/state.json: locks, temp files, empty dirs."""
        if self.kind != "file":
            return []
        stray = []
        for dirpath, dirs, files in os.walk(self.state_dir):
            rel = os.path.relpath(dirpath, self.state_dir)
            stray += [os.path.join(rel, f) for f in files if f != "state.json"]
            if rel != "." and not dirs and not files:
                stray.append(rel + "/")
        return sorted(stray)


STORES = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    pytest.param("file", id="file"),
]


@pytest.fixture(params=STORES)
def store(request, tmp_path, env) -> Store:
    kind = request.param
    if kind == "sqlite":
        root = request.getfixturevalue("meltano_project")  # SQLite schema made by meltano
        write_project(root, plugins=PLUGINS)
        return Store(kind, root, env)
    root = write_project(tmp_path / "project", plugins=PLUGINS)
    if kind == "postgres":
        url = request.getfixturevalue("postgres_url")
        env["MELTANO_DATABASE_URI"] = url
        return Store(kind, root, env, postgres_url=url)
    state_dir = tmp_path / "state"
    env["MELTANO_STATE_BACKEND_URI"] = f"file://{state_dir}"
    assert env["MELTANO_STATE_BACKEND_URI"].startswith("file:///")
    return Store(kind, root, env, state_dir=state_dir)


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line]


# -- 1. Meltano writes, state-ext reads ------------------------------------------------
def test_state_ext_reads_what_meltano_wrote(store):
    plain, absent = "manual-job", "dev:tap-no-to-target-no"
    first = singer({"bookmarks": {"s1": {"k": 1}}, "rows": [1, 2], "name": "ü-ñ €"})
    merged = singer({"bookmarks": {"s2": {"k": 2}, "s1": {"j": 5}}, "rows": [3],
                     "none": None, "float": 1.5, "nested": [{"a": {}}]})

    store.meltano("state", "set", "--force", plain, json.dumps(first))
    store.meltano("state", "merge", plain, json.dumps(merged))
    # A complete run (overwrite), then a full refresh of another stream (partial state).
    store.meltano("run", "tap-mini", "target-mini", TAP_MINI_TOTAL="3")
    store.meltano("run", "--full-refresh", "tap-mini", "target-mini",
                  TAP_MINI_TOTAL="2", TAP_MINI_STREAM="others")

    expected = {
        plain: envelope(first, merged),
        RUN_ID: envelope(bookmark("items", 3, 3), bookmark("others", 2, 2)),
    }
    effective = {
        plain: singer({"bookmarks": {"s1": {"k": 1, "j": 5}, "s2": {"k": 2}}, "rows": [3],
                       "name": "ü-ñ €", "none": None, "float": 1.5, "nested": [{"a": {}}]}),
        RUN_ID: singer({"bookmarks": {"items": {"last_id": 3, "new": 3},
                                      "others": {"last_id": 2, "new": 2}}}),
    }
    # Meltano wrote what we think it writes (so the comparisons below mean something).
    store.assert_raw(expected)

    m_list, e_list = store.meltano("state", "list"), store.ext("list")
    assert lines(e_list.stdout) == sorted(lines(m_list.stdout)) == sorted(expected)

    m_export, e_export = store.meltano("state", "export"), store.ext("export")
    assert e_export.json() == m_export.json() == expected

    for state_id, state in effective.items():
        m_get, e_get = store.meltano("state", "get", state_id), store.ext("get", state_id)
        assert e_get.json() == m_get.json() == state, state_id
        assert e_get.stdout == m_get.stdout, state_id  # same compact rendering

    m_pretty = store.meltano("state", "get", "--format", "pretty", plain)
    e_pretty = store.ext("get", "--format", "pretty", plain)
    assert e_pretty.stdout == m_pretty.stdout
    assert e_pretty.json() == effective[plain]

    # An ID without state: `meltano state get` prints {} and exits 0 (reference §2.2).
    assert store.ext("get", absent).stdout == "{}\n"


def test_state_ext_reads_meltano_import_with_missing_halves(store):
    """``meltano state import`` stores a missing half as null, which Meltano itself cannot
    read; state-ext reads it as {} (with a warning) and a state-ext write repairs it."""
    doc = {
        "no-partial": {"completed": singer({"a": 1})},
        "no-completed": {"partial": singer({"b": 2})},
        "both": envelope(singer({"c": 3}), singer({"d": 4})),
    }
    path = store.root / "import.json"
    path.write_text(json.dumps(doc))
    store.meltano("state", "import", str(path))
    if store.kind == "file":
        raw = store.raw()
        assert json.loads(raw["no-partial"]) == {"completed": singer({"a": 1}), "partial": None}
    else:
        assert store.raw()["no-partial"] == (json.dumps(singer({"a": 1})), None)

    exported = store.ext("export")
    assert exported.json() == {
        "no-partial": envelope(singer({"a": 1})),
        "no-completed": envelope(partial=singer({"b": 2})),
        "both": envelope(singer({"c": 3}), singer({"d": 4})),
    }
    assert "null" in exported.stderr
    got = store.ext("get", "no-completed")
    assert got.json() == singer({"b": 2})

    store.ext("merge", "no-partial", json.dumps(singer({"e": 5})))
    assert store.raw()["no-partial"] == store.expected_raw(
        envelope(singer({"a": 1}), singer({"e": 5})))
    assert store.meltano("state", "get", "no-partial").json() == singer({"a": 1, "e": 5})


# -- 2. state-ext writes, Meltano reads ------------------------------------------------
def test_meltano_reads_what_state_ext_wrote(store):
    store.ensure_schema()
    a, fresh, copied, moved = "job-a", "job-fresh", "dev:tap-x-to-target-y", "prod:moved:blue"
    first = singer({"bookmarks": {"s1": {"k": 1}}, "rows": [1, 2]})
    merged = singer({"bookmarks": {"s2": {"k": 2}, "s1": {"j": 5}}, "rows": [3]})
    imported = {
        "imp-src": envelope(singer({"x": 1}), singer({"y": 2, "x": 0})),
        "imp-reset": envelope(singer({"old": 1}), singer({"old": 2, "p": 3})),
        "imp-cleared": envelope(singer({"gone": True})),
        "imp-kept": envelope(singer({"name": "ü-ñ €"}), singer({"k": [1, {"a": None}]})),
    }
    path = store.root / "import.json"
    path.write_text(json.dumps(imported), encoding="utf-8")

    store.ext("import", str(path))
    store.ext("set", "--force", a, json.dumps(first))
    store.ext("merge", a, json.dumps(merged))
    store.ext("merge", fresh, json.dumps(singer({"only": "partial"})))
    store.ext("merge", "from-a", "--from-state-id", a)  # a's effective state, as a partial
    store.ext("set", "--force", "imp-reset", json.dumps(singer({"new": 1})))
    store.ext("copy", "--force", a, copied)
    store.ext("move", "--force", "imp-src", moved)
    store.ext("clear", "--force", "imp-cleared")
    store.ext("set", "--force", RUN_ID, json.dumps(bookmark("items", 4, 9)))

    a_effective = singer({"bookmarks": {"s1": {"k": 1, "j": 5}, "s2": {"k": 2}}, "rows": [3]})
    expected = {
        a: envelope(first, merged),
        "from-a": envelope(partial=a_effective),
        fresh: envelope(partial=singer({"only": "partial"})),
        "imp-reset": envelope(singer({"new": 1})),  # set: partial reset to {}
        copied: envelope(first, merged),  # copy/move carry both halves exactly
        moved: imported["imp-src"],
        "imp-kept": imported["imp-kept"],
        RUN_ID: envelope(bookmark("items", 4, 9)),
    }
    store.assert_raw(expected)  # Meltano's exact bytes, no extra rows or files
    assert store.stray_files() == []

    m_list = store.meltano("state", "list")
    assert sorted(lines(m_list.stdout)) == sorted(expected)
    assert store.meltano("state", "export").json() == expected
    for state_id, state in {
        a: a_effective,  # merge of state-ext's partial onto its completed
        fresh: singer({"only": "partial"}),  # completed {}: partial only
        moved: singer({"x": 0, "y": 2}),
    }.items():
        assert store.meltano("state", "get", state_id).json() == state, state_id

    # Meltano hands state-ext's state to the tap: it resumes after id 4.
    seen = store.root / "tap-args.json"
    store.meltano("run", "tap-mini", "target-mini", TAP_MINI_TOTAL="6",
                  TAP_MINI_ARGV_FILE=str(seen))
    assert json.loads(seen.read_text())["state"] == bookmark("items", 4, 9)["singer_state"]
    assert store.ext("get", RUN_ID).json() == bookmark("items", 6, 2)

    store.ext("clear", "--all", "--force")
    assert store.raw() == {}
    assert store.stray_files() == []
    assert store.meltano("state", "list").stdout == ""


# -- 3. Settings: both tools resolve the same store ------------------------------------
def test_state_backend_uri_is_expanded_once_like_meltano(project, env):
    """Meltano expands ``$VAR`` in ``state_backend.uri`` once and turns ``\\$VAR`` into a
    literal ``$VAR``; a second expansion points state-ext at another directory."""
    env["STORE_SUFFIX"] = "-elsewhere"
    write_project(project, state_backend={
        "uri": "file://${MELTANO_PROJECT_ROOT}/store\\$STORE_SUFFIX",
    })
    meltano("state", "set", "--force", "job", json.dumps(singer({"x": 1})), cwd=project, env=env)
    assert (project / "store$STORE_SUFFIX" / "job" / "state.json").is_file()  # Meltano's store

    assert state_ext("list", cwd=project, env=env).stdout == "job\n"
    assert state_ext("get", "job", cwd=project, env=env).json() == singer({"x": 1})
