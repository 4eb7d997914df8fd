"""Bad input never hurts a store.

Every case runs the real ``state_extension`` executable and must end with a non-zero
exit, exactly one non-empty line on stderr (no traceback), nothing on stdout, and the
store byte-for-byte as it was: every file and folder of the project (the ``file://``
state folder, or ``.meltano/meltano.db``) plus, for SQLite, a SELECT of the ``state``
table. No secret from a URI may appear in the output.

The cases run concurrently (each in its own throw-away project) in one module-scoped
fixture, so that ~150 process starts fit in the time budget; each case still reports
as its own test.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.cli import STATE_EXTENSION, run
from tests.support.project import meltano_seeded_db
from tests.support.seeded import GOOD, ID, SECRET, SEED, Ctx, make_project, snapshot

LOCK_ENV = {
    "MELTANO_STATE_BACKEND_LOCK_TIMEOUT_SECONDS": "1",
    "MELTANO_STATE_BACKEND_LOCK_RETRY_SECONDS": "0.1",
}
WORKERS = 4


# -- cases ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Case:
    name: str
    args: tuple
    backends: tuple = ("file", "sqlite")
    stdin: str | None = None
    env: dict = field(default_factory=dict)
    setup: Callable[[Ctx], Callable[[], None] | None] | None = None
    exit_code: int | None = None  # None: any non-zero
    message: str | None = None  # a lower-case fragment the error line must contain
    min_seconds: float | None = None
    max_seconds: float = 60
    check: Callable[[Ctx, object], None] | None = None


def _args(ctx: Ctx, args: tuple) -> list[str]:
    return [str(a).replace("@ROOT@", str(ctx.root)) for a in args]


def _import_doc(bad_key: str, bad_entry: str) -> str:
    """Good entries around one bad one, as JSON text (so keys like "a\\u0000b" survive)."""
    good_1 = json.dumps({"completed": {"singer_state": {"imported": 1}}, "partial": {}})
    good_2 = json.dumps({"completed": {}, "partial": {"singer_state": {"imported": 2}}})
    return (f'{{"keep": {good_1}, "fresh": {good_1}, {bad_key}: {bad_entry}, '
            f'"{ID}": {good_2}}}')


def _write_lock(content: str):
    def setup(ctx: Ctx):
        lock = ctx.store / ID / "lock"
        lock.write_text(content)
        ctx.lock_stat = os.stat(lock)  # type: ignore[attr-defined]
    return setup


def _lock_untouched(ctx: Ctx, outcome) -> None:
    lock = ctx.store / ID / "lock"
    assert lock.is_file(), "the foreign lock was removed"
    now = os.stat(lock)
    before = ctx.lock_stat  # type: ignore[attr-defined]
    assert (now.st_ino, now.st_mtime_ns, now.st_size) == (
        before.st_ino, before.st_mtime_ns, before.st_size), "the foreign lock was rewritten"


def _immutable(ctx: Ctx):
    """Permissions do not stop root: make the state folder (recursively) immutable instead."""
    if os.geteuid() != 0:  # an ordinary user: read-only modes are enough
        folders = [ctx.store, *(p for p in ctx.store.rglob("*") if p.is_dir())]
        for folder in folders:
            folder.chmod(0o555)
        return lambda: [folder.chmod(0o755) for folder in folders]
    done = subprocess.run(["chattr", "-R", "+i", str(ctx.store)], capture_output=True)
    probe = ctx.store / ID / "probe"
    try:
        probe.write_text("x")
    except OSError:
        pass
    else:  # pragma: no cover - a filesystem without the immutable flag
        probe.unlink()
        subprocess.run(["chattr", "-R", "-i", str(ctx.store)], capture_output=True)
        pytest.skip(f"chattr +i cannot make {ctx.store} read-only here: {done.stderr.strip()}")

    def teardown():
        subprocess.run(["chattr", "-R", "-i", str(ctx.store)], check=True, capture_output=True)
    return teardown


HOLD_SQLITE_WRITE_LOCK = """
import sqlite3, sys
con = sqlite3.connect(sys.argv[1], isolation_level=None)
con.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
sys.stdin.read()
con.execute("ROLLBACK")
"""


def _sqlite_writer(ctx: Ctx):
    """Another process's write transaction on the system database (SQLite RESERVED lock).

    It must be another process: SQLite's POSIX locks vanish when this process closes any
    descriptor of the file, which taking a snapshot does.
    """
    holder = subprocess.Popen([sys.executable, "-c", HOLD_SQLITE_WRITE_LOCK, str(ctx.db)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"

    def teardown():
        holder.communicate("", timeout=30)
    return teardown


def _corrupt_state(ctx: Ctx):
    if ctx.backend == "file":
        (ctx.store / ID / "state.json").write_text('{"completed": {"singer_state": {"t"')
    else:
        con = sqlite3.connect(ctx.db)
        with con:
            con.execute("UPDATE state SET completed_state = '{not json' WHERE state_id = ?", (ID,))
        con.close()


def _db_file(content: bytes | None):
    def setup(ctx: Ctx):
        ctx.db.parent.mkdir(exist_ok=True)
        if content is None:  # a SQLite database with a table, but not Meltano's schema
            con = sqlite3.connect(ctx.db)
            with con:
                con.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)")
                con.execute("CREATE TABLE runs (id INTEGER PRIMARY KEY, job_name VARCHAR)")
            con.close()
        else:
            ctx.db.write_bytes(content)
    return setup


CASES: list[Case] = []


def case(*args, **kwargs) -> None:
    CASES.append(Case(*args, **kwargs))


# Bad state given to set/merge.
case("set-invalid-json", ("set", ID, "{bad", "--force"), message="invalid json")
case("set-json-array", ("set", ID, "[1]", "--force"))
case("merge-json-string", ("merge", ID, '"x"'))
case("set-no-singer-state", ("set", ID, '{"a": 1}', "--force"), message="singer_state")
case("merge-no-singer-state", ("merge", ID, '{"a": 1}'), message="singer_state")
case("set-input-file-missing", ("set", ID, "--input-file", "@ROOT@/missing.json", "--force"),
     exit_code=2, message="missing.json")
case("merge-input-file-missing", ("merge", ID, "--input-file", "@ROOT@/missing.json"),
     exit_code=2, message="missing.json")
case("set-input-file-is-a-folder", ("set", ID, "--input-file", "@ROOT@", "--force"), exit_code=2)
case("set-input-file-invalid-json", ("set", ID, "--input-file", "@ROOT@/bad.json", "--force"),
     message="invalid json")
case("set-state-and-input-file", ("set", ID, GOOD, "--input-file", "@ROOT@/good.json", "--force"),
     exit_code=2, message="exactly one")
case("merge-state-and-input-file", ("merge", ID, GOOD, "--input-file", "@ROOT@/good.json"),
     exit_code=2, message="exactly one")
case("merge-state-and-from-state-id", ("merge", ID, GOOD, "--from-state-id", "keep"),
     exit_code=2, message="exactly one")
case("merge-from-absent-state-id", ("merge", ID, "--from-state-id", "absent"), message="absent")
case("copy-absent-source", ("copy", "absent", "keep", "--force"), message="absent")
case("move-absent-source", ("move", "absent", "keep", "--force"), message="absent")

# Bad backend URIs, and secrets in them.
case("uri-unknown-scheme", ("set", ID, GOOD, "--force", "--uri", "foo://x"), message="foo")
case("uri-not-a-uri", ("set", ID, GOOD, "--force", "--uri", "not-a-uri"), message="not-a-uri")
case("uri-file-relative", ("set", ID, GOOD, "--force", "--uri", "file://relative/path"),
     message="relative/path")
case("uri-file-relative-from-env", ("get", ID),
     env={"MELTANO_STATE_BACKEND_URI": "file://relative/path"}, message="relative/path")
case("uri-secret-unknown-scheme",
     ("set", ID, GOOD, "--force", "--uri", f"foo://user:{SECRET}@host/x"))
case("uri-secret-file-with-host",
     ("set", ID, GOOD, "--force", "--uri", f"file://user:{SECRET}@host/state"))
case("project-root-missing", ("get", ID, "--project-root", "@ROOT@/nope"), message="nope")

# Bad lock settings.
case("lock-timeout-not-a-number", ("set", ID, GOOD, "--force"),
     env={"MELTANO_STATE_BACKEND_LOCK_TIMEOUT_SECONDS": "abc"}, message="lock_timeout_seconds")
case("lock-timeout-negative", ("set", ID, GOOD, "--force"),
     env={"MELTANO_STATE_BACKEND_LOCK_TIMEOUT_SECONDS": "-1"}, message="lock_timeout_seconds")
case("lock-timeout-nan", ("set", ID, GOOD, "--force"),
     env={"MELTANO_STATE_BACKEND_LOCK_TIMEOUT_SECONDS": "nan"}, message="lock_timeout_seconds")
case("lock-retry-nan", ("set", ID, GOOD, "--force"),
     env={"MELTANO_STATE_BACKEND_LOCK_RETRY_SECONDS": "nan"}, message="lock_retry_seconds")

# Forbidden state IDs ('a\x00b' cannot travel in argv: see the import cases).
FORBIDDEN_IDS = ["../x", "..", "/abs", "a//b", "a/../b", "", "a\nb", "a/lock", "a/state.json"]
for bad_id in FORBIDDEN_IDS:
    case(f"set-id-{bad_id!r}", ("set", bad_id, GOOD, "--force"), message="invalid state id")
case("merge-id-'../x'", ("merge", "../x", GOOD), message="invalid state id")
case("merge-from-id-'../x'", ("merge", ID, "--from-state-id", "../x"), message="invalid state id")
case("get-id-'../x'", ("get", "../x"), message="invalid state id")
case("clear-id-'../x'", ("clear", "../x", "--force"), message="invalid state id")
case("copy-to-id-'../x'", ("copy", "keep", "../x", "--force"), message="invalid state id")
case("move-to-id-'a/lock'", ("move", "keep", "a/lock", "--force"), message="invalid state id")

# Import documents: one bad entry among good ones imports nothing.
GOOD_ENTRY = '{"completed": {"singer_state": {}}, "partial": {}}'
for name, key, entry in [
    ("id-'../x'", '"../x"', GOOD_ENTRY),
    ("id-'a\\x00b'", '"a\\u0000b"', GOOD_ENTRY),
    ("id-'a\\nb'", '"a\\nb"', GOOD_ENTRY),
    ("id-'a/lock'", '"a/lock"', GOOD_ENTRY),
    ("entry-array", '"bad"', "[1]"),
    ("completed-array", '"bad"', '{"completed": [1], "partial": {}}'),
]:
    case(f"import-bad-{name}", ("import",), stdin=_import_doc(key, entry))
for name, text in [("array", "[1]"), ("string", '"x"'), ("invalid-json", "{bad")]:
    case(f"import-document-{name}", ("import",), stdin=text)
case("import-missing-file", ("import", "@ROOT@/missing.json"), exit_code=2, message="missing.json")

# Usage errors and declined confirmations.
case("clear-neither-id-nor-all", ("clear", "--force"), exit_code=2, message="--all")
case("clear-both-id-and-all", ("clear", ID, "--all", "--force"), exit_code=2, message="--all")
# Without --force and without a terminal to answer on, refused at once: no prompt, and
# an answer piped on stdin is not taken (declined prompts at a terminal: test_commands.py).
for name, args in [
    ("set", ("set", ID, GOOD)),
    ("clear", ("clear", ID)),
    ("clear-all", ("clear", "--all")),
    ("copy", ("copy", "keep", ID)),
    ("move", ("move", "keep", ID)),
]:
    case(f"{name}-without-force-no-terminal", args, stdin="", exit_code=1,
         message="pass --force")
case("set-without-force-piped-yes", ("set", ID, GOOD), stdin="y\n", exit_code=1,
     message="pass --force")

# A corrupt stored state cannot be merged into (set would replace it, which is fine).
case("merge-into-corrupt-state", ("merge", ID, GOOD), setup=_corrupt_state)
case("get-corrupt-state", ("get", ID), setup=_corrupt_state)

# file:// only: folders we cannot write, and a foreign lock that never expires.
for name, args in [
    ("set", ("set", ID, GOOD, "--force")),
    ("set-new-id", ("set", "new-id", GOOD, "--force")),
    ("merge", ("merge", ID, GOOD)),
    ("clear", ("clear", ID, "--force")),
    ("copy", ("copy", "keep", "new-id", "--force")),
    ("import", ("import", "@ROOT@/doc.json")),
]:
    case(f"unwritable-folder-{name}", args, backends=("file",), setup=_immutable)
case("state-folder-under-a-regular-file",
     ("set", ID, GOOD, "--force", "--uri", "file://@ROOT@/good.json/state"), backends=("file",))
case("state-folder-under-proc",
     ("set", ID, GOOD, "--force", "--uri", "file:///proc/state-ext-test/state"), backends=("file",))
FAR_FUTURE = str(time.time() + 10 * 365 * 86400)
for name, args in [
    ("set", ("set", ID, GOOD, "--force")),
    ("merge", ("merge", ID, GOOD)),
    ("clear", ("clear", ID, "--force")),
    ("import", ("import", "@ROOT@/doc.json")),
]:
    case(f"foreign-lock-{name}", args, backends=("file",), env=LOCK_ENV,
         setup=_write_lock(FAR_FUTURE), message="lock", min_seconds=1.0, max_seconds=20,
         check=_lock_untouched)
case("foreign-lock-unparsable", ("set", ID, GOOD, "--force"), backends=("file",), env=LOCK_ENV,
     setup=_write_lock("not a timestamp"), min_seconds=1.0, max_seconds=20, check=_lock_untouched)

# SQLite only: a writer that keeps the database locked, and databases that are not Meltano's.
for name, args in [
    ("set", ("set", ID, GOOD, "--force")),
    ("merge", ("merge", ID, GOOD)),
    ("clear", ("clear", ID, "--force")),
    ("import", ("import", "@ROOT@/doc.json")),
]:
    case(f"sqlite-locked-{name}", args, backends=("sqlite",), env=LOCK_ENV, setup=_sqlite_writer,
         message="lock", min_seconds=1.0, max_seconds=20)
ALL_COMMANDS = [
    ("get", ("get", ID)),
    ("list", ("list",)),
    ("export", ("export",)),
    ("set", ("set", ID, GOOD, "--force")),
    ("merge", ("merge", ID, GOOD)),
    ("clear", ("clear", ID, "--force")),
    ("clear-all", ("clear", "--all", "--force")),
    ("import", ("import", "@ROOT@/doc.json")),
]
for name, args in ALL_COMMANDS:
    case(f"missing-system-db-{name}", args, backends=("nodb",), message="meltano.db")
for name, args in [c for c in ALL_COMMANDS if c[0] in ("get", "export", "set", "import")]:
    case(f"empty-db-file-{name}", args, backends=("nodb",), setup=_db_file(b""),
         message="state")
for name, args in [c for c in ALL_COMMANDS if c[0] in ("export", "set")]:
    case(f"db-without-state-table-{name}", args, backends=("nodb",), setup=_db_file(None),
         message="state")
case("db-not-sqlite-set", ("set", ID, GOOD, "--force"), backends=("nodb",),
     setup=_db_file(b"this is not a database\n" * 200))
case("database-uri-to-missing-file", ("set", ID, GOOD, "--force"), backends=("nodb",),
     env={"MELTANO_DATABASE_URI": "sqlite:///@ROOT@/other.db"}, message="other.db")
case("database-uri-bad-port", ("get", ID), backends=("nodb",),
     env={"MELTANO_DATABASE_URI": f"postgresql://user:{SECRET}@127.0.0.1:notaport/db"})

# PostgreSQL that nobody listens on (a secret in the URI).
for name, args in [c for c in ALL_COMMANDS if c[0] != "clear-all"]:
    case(f"postgres-unreachable-{name}", args, backends=("pg-closed",), max_seconds=20)
case("postgres-unreachable-plain-scheme", ("get", ID), backends=("pg-closed",), max_seconds=20,
     env={"MELTANO_DATABASE_URI": f"postgresql://user:{SECRET}@127.0.0.1:1/db"})
case("postgres-unreachable-lock-timeout-inf", ("get", ID), backends=("pg-closed",),
     max_seconds=20, env={"MELTANO_STATE_BACKEND_LOCK_TIMEOUT_SECONDS": "inf"})

PARAMS = [pytest.param(c, b, id=f"{b}-{c.name}") for c in CASES for b in c.backends]
IMPORT_DOC = json.dumps({
    "keep": {"completed": {"singer_state": {"imported": 1}}, "partial": {}},
    ID: {"completed": {"singer_state": {"imported": 2}}, "partial": {}},
    "fresh": {"completed": {"singer_state": {"imported": 3}}, "partial": {}},
})


# -- running ---------------------------------------------------------------------------
@dataclass
class Outcome:
    args: list
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    before: object
    after: object
    ctx: Ctx

    def __str__(self) -> str:
        return (f"{self.args!r} -> exit {self.returncode} in {self.seconds:.2f} s\n"
                f"stdout: {self.stdout!r}\nstderr: {self.stderr!r}")


def run_case(c: Case, backend: str, root: Path, template_db: Path) -> Outcome:
    ctx = make_project(backend, root, template_db)
    (ctx.root / "doc.json").write_text(IMPORT_DOC)
    env = {**ctx.env, **{k: v.replace("@ROOT@", str(root)) for k, v in c.env.items()}}
    teardown = c.setup(ctx) if c.setup else None
    try:
        before = snapshot(ctx)
        args = [STATE_EXTENSION, *_args(ctx, c.args)]
        started = time.monotonic()
        result = run(args, cwd=ctx.root, env=env, input=c.stdin if c.stdin is not None else "",
                     timeout=c.max_seconds + 30)
        seconds = time.monotonic() - started
        after = snapshot(ctx)
    finally:
        if teardown:
            teardown()
    return Outcome(result.args[1:], result.returncode, result.stdout, result.stderr, seconds,
                   before, after, ctx)


@pytest.fixture(scope="module")
def outcomes(request, tmp_path_factory):
    """Run every selected case at once, each in its own project."""
    selected = [item.callspec.params for item in request.session.items
                if getattr(item, "originalname", None) == "test_bad_input"
                and item.module is request.module]
    template_db = None
    if any(p["backend"] == "sqlite" for p in selected):
        template_db = meltano_seeded_db(tmp_path_factory, SEED)
    base = tmp_path_factory.mktemp("bad-input")

    def one(index_params):
        index, params = index_params
        c, backend = params["c"], params["backend"]
        try:
            return (c.name, backend), run_case(c, backend, base / f"case{index}", template_db)
        except BaseException as exc:  # reported by the test that owns the case
            return (c.name, backend), exc

    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        return dict(pool.map(one, enumerate(selected)))


@pytest.mark.parametrize(("c", "backend"), PARAMS)
def test_bad_input(c: Case, backend: str, outcomes):
    outcome = outcomes[(c.name, backend)]
    if isinstance(outcome, BaseException):
        raise outcome
    assert outcome.returncode != 0, str(outcome)
    if c.exit_code is not None:
        assert outcome.returncode == c.exit_code, str(outcome)
    assert "Traceback" not in outcome.stderr, str(outcome)
    lines = [line for line in outcome.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected exactly one error line\n{outcome}"
    assert outcome.stdout == "", str(outcome)
    if c.message:
        assert c.message in lines[0].lower(), str(outcome)
    assert SECRET not in outcome.stdout + outcome.stderr, str(outcome)
    tree_before, rows_before = outcome.before
    tree_after, rows_after = outcome.after
    assert sorted(tree_after) == sorted(tree_before), f"files or folders changed\n{outcome}"
    changed = [name for name in tree_before if tree_before[name] != tree_after[name]]
    assert not changed, f"{changed} changed\n{outcome}"
    assert rows_after == rows_before, f"state table changed\n{outcome}"
    if c.min_seconds is not None:
        assert outcome.seconds >= c.min_seconds, str(outcome)
    assert outcome.seconds < c.max_seconds, str(outcome)
    if c.check:
        c.check(outcome.ctx, outcome)
