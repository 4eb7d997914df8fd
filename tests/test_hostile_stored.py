"""Hostile JSON found in a store is reported in one line naming the state; nothing crashes.

The corpus of ``tests/support/hostile.py`` is written straight into the stores, bypassing
state-ext: as the completed half of ``target``'s ``state.json`` on ``file://``, and as its
``completed_state`` column in a SQLite system database made by Meltano (raw bytes, so
text that is not UTF-8 gets there too). ``get`` (and, for a share of the corpus,
``export``) must then exit non-zero with one stderr line that names the state and the
problem, no traceback, nothing on stdout, and the store untouched; ``list`` does not read
states and keeps working; ``merge`` and ``migrate`` refuse without writing anything.
"""

from __future__ import annotations

import sqlite3
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support import hostile
from tests.support.cli import STATE_EXTENSION
from tests.support.hostile import CORPUS, Hostile
from tests.support.project import meltano_seeded_db
from tests.test_bad_input import ID, SEED, Ctx, make_project, snapshot

WORKERS = 3
STORED_FRAGMENT = {hostile.SYNTAX: "not valid json", hostile.NOT_OBJECT: "not a json object",
                   "byte order mark": "not valid json"}
# Not hostile once stored: a null half is Meltano's legacy (read as {} with a warning), and
# singer_state's type is only checked on set/merge.
HARMLESS_STORED = {"top-level-null"} | {c.name for c in CORPUS if not c.via_import}
STORED = [c for c in CORPUS if c.name not in HARMLESS_STORED]
MORE_COMMANDS = {"nan", "deep-arrays-100000", "duplicate-bookmark", "utf8-invalid-byte",
                 "surrogate-high", "trailing-garbage"}


def store_hostile(ctx: Ctx, completed: bytes) -> None:
    """``completed`` as target's completed half, written without state-ext."""
    if ctx.backend == "file":
        (ctx.store / ID / "state.json").write_bytes(
            b'{"completed": ' + completed + b', "partial": {}}')
        return
    con = sqlite3.connect(ctx.db)
    with con:
        con.execute("UPDATE state SET completed_state = CAST(? AS TEXT), partial_state = '{}' "
                    "WHERE state_id = ?", (completed, ID))
    con.close()


@dataclass(frozen=True)
class Read:
    case: Hostile
    command: str  # get, export, list, merge, migrate
    backend: str

    @property
    def id(self) -> str:
        return f"{self.backend}-{self.command}-{self.case.name}"


def _reads() -> list[Read]:
    reads = []
    for index, c in enumerate(STORED):
        for backend in ("file", "sqlite"):
            reads.append(Read(c, "get", backend))
            if index % 4 == 0:
                reads.append(Read(c, "export", backend))
            if c.name in MORE_COMMANDS:
                reads += [Read(c, command, backend) for command in ("list", "merge", "migrate")]
    return reads


READS = _reads()
ARGS = {
    "get": ["get", ID],
    "export": ["export"],
    "list": ["list"],
    "merge": ["merge", ID, hostile.GOOD_STATE.decode()],
    "migrate": ["migrate", "--to", "file://@ROOT@/migrated"],
}


@dataclass
class Outcome:
    returncode: int
    stdout: bytes
    stderr: str
    before: object
    after: object
    migrated: list

    def __str__(self) -> str:
        return f"exit {self.returncode}\nstdout: {self.stdout[:300]!r}\nstderr: {self.stderr!r}"


def _execute(read: Read, root: Path, template_db: Path) -> Outcome:
    ctx = make_project(read.backend, root, template_db)
    store_hostile(ctx, read.case.state)
    before = snapshot(ctx)
    args = [a.replace("@ROOT@", str(root)) for a in ARGS[read.command]]
    proc = subprocess.run([str(STATE_EXTENSION), *args], cwd=root, env=ctx.env, input=b"",
                          capture_output=True, timeout=120)
    migrated = sorted(p.relative_to(root).as_posix() for p in root.glob("migrated/**/*"))
    return Outcome(proc.returncode, proc.stdout, proc.stderr.decode("utf-8", "replace"), before,
                   snapshot(ctx), migrated)


@pytest.fixture(scope="module")
def outcomes(request, tmp_path_factory):
    selected = [item.callspec.params["read"] for item in request.session.items
                if getattr(item, "originalname", None) == "test_stored_hostile_state"
                and item.module is request.module]
    template_db = meltano_seeded_db(tmp_path_factory, SEED)
    base = tmp_path_factory.mktemp("hostile-stored")

    def one(indexed):
        index, read = indexed
        try:
            return read.id, _execute(read, base / f"read{index}", template_db)
        except BaseException as exc:  # reported by the test that owns the read
            return read.id, exc

    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        return dict(pool.map(one, enumerate(selected)))


@pytest.mark.parametrize("read", READS, ids=[r.id for r in READS])
def test_stored_hostile_state(read: Read, outcomes):
    outcome = outcomes[read.id]
    if isinstance(outcome, BaseException):
        raise outcome
    assert "Traceback" not in outcome.stderr, str(outcome)
    tree_before, rows_before = outcome.before
    tree_after, rows_after = outcome.after
    tree_after.pop("migrated/", None)  # migrate makes its (empty) destination folder first
    assert tree_after == tree_before and rows_after == rows_before, f"store changed\n{outcome}"
    lines = [line for line in outcome.stderr.splitlines() if line.strip()]
    if read.command == "list":  # IDs only: the hostile state is never decoded
        assert outcome.returncode == 0 and not lines, str(outcome)
        assert ID in outcome.stdout.decode().split(), str(outcome)
        return
    assert outcome.returncode != 0, str(outcome)
    if read.command == "migrate":  # its opening info line, then the error
        assert len(lines) == 2 and "migrating state" in lines[0], str(outcome)
        assert outcome.migrated == [], "migrate wrote before refusing"
    else:
        assert len(lines) == 1, f"expected exactly one error line\n{outcome}"
    fragment = STORED_FRAGMENT.get(read.case.fragment, read.case.fragment)
    assert fragment in lines[-1].lower(), str(outcome)
    assert ID in lines[-1], f"the error does not name the state\n{outcome}"
    assert len(lines[-1]) < 500, f"the error line quotes too much\n{outcome}"
    assert outcome.stdout == b"", str(outcome)


def test_every_stored_case_is_read_by_get_on_both_stores():
    assert len(STORED) >= 60
    assert {r.case.name for r in READS if r.command == "get" and r.backend == "sqlite"} == {
        c.name for c in STORED}


@pytest.mark.parametrize(("body", "fragment"), [
    (b'{"completed": {"singer_state": {"v": NaN}}, "partial": {}}', "nan or infinity"),
    (b'{"completed": {"singer_state": {"v": 1e999}}, "partial": {}}', "nan or infinity"),
    (b'{"completed": {"singer_state": {"v": "\\ud800"}}, "partial": {}}', "surrogate"),
    (b'{"completed": ' + hostile.state_of_depth(600) + b', "partial": {}}', "500 levels"),
    (b'{"completed": ' + hostile.state_of_depth(100_000, hostile.arrays)
     + b', "partial": {}}', "recursion"),
])
def test_plugin_backend_halves_follow_the_same_rules(tmp_path, body, fragment):
    """An add-on (msm://) decodes state itself, with Python's lenient json: the halves it
    returns are checked as values. (Duplicate keys are gone by then: only text shows them.)"""
    root = tmp_path / "p"
    root.mkdir()
    (root / "meltano.yml").write_text("project_id: x\n")
    env = {**make_project("file", tmp_path / "unused", None).env, "MSM_DATA_DIR": str(root)}
    uri = "msm://alice:pw@localhost/db"
    proc = subprocess.run([str(STATE_EXTENSION), "set", ID, hostile.GOOD_STATE.decode(),
                           "--force", "--uri", uri], cwd=root, env=env, capture_output=True)
    assert proc.returncode == 0, proc.stderr
    con = sqlite3.connect(root / "db.sqlite3")
    with con:
        con.execute("UPDATE states SET body = ? WHERE state_id = ?", (body.decode(), ID))
    con.close()
    for args in (["get", ID], ["export"], ["merge", ID, hostile.GOOD_STATE.decode()]):
        proc = subprocess.run([str(STATE_EXTENSION), *args, "--uri", uri], cwd=root, env=env,
                              capture_output=True, text=True)
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr
        assert len(lines) == 1 and fragment in lines[0].lower() and ID in lines[0], proc.stderr
    con = sqlite3.connect(root / "db.sqlite3")
    assert con.execute("SELECT body FROM states").fetchall() == [(body.decode(),)]
    con.close()
