"""Hostile JSON given to ``set``, ``merge`` and ``import`` is refused in one line.

Every entry of the corpus (``tests/support/hostile.py``: deep nesting of every shape,
NaN/Infinity, numbers Python reads as infinity or cannot convert, duplicate keys, lone
surrogates, bytes that are not UTF-8, BOMs, trailing data, emptiness, wrong top-level
types) runs through the real ``state_extension`` process, from a file, as ``set``,
``merge`` and inside an ``import`` document, on a ``file://`` store, and a share of them
on a SQLite system database; a few also as a command-line argument and on stdin. Each
run must exit non-zero with exactly one line on stderr, naming the problem, with no
traceback, nothing on stdout, and leave the store byte-for-byte as it was (the harness
of ``test_bad_input``). Texts next to the rules (nesting at the limit, brackets inside a
string, a surrogate pair...) must be stored and read back exactly.
"""

from __future__ import annotations

import json
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.cli import STATE_EXTENSION
from tests.support.hostile import ACCEPTED, CORPUS, Hostile
from tests.support.project import meltano_seeded_db
from tests.test_bad_input import ID, SEED, make_project, snapshot

WORKERS = 3
ARGV_CASES = {"nan", "duplicate-bookmark", "deep-arrays-5000", "utf8-invalid-byte",
              "surrogate-high", "float-1e999", "int-5000-digits", "bom-utf8",
              "top-level-array", "empty"}
STDIN_CASES = {"nan", "deep-objects-100000", "duplicate-singer-state", "utf8-invalid-byte",
               "trailing-garbage", "whitespace-only"}
NO_VALIDATE_CASES = {"nan", "deep-mixed-501", "duplicate-bookmark", "float-1e999",
                     "surrogate-low", "top-level-string"}


@dataclass(frozen=True)
class Run:
    case: Hostile
    how: str  # set, merge, import, set-argv, set-no-validate, import-stdin
    backend: str

    @property
    def id(self) -> str:
        return f"{self.backend}-{self.how}-{self.case.name}"


def _runs() -> list[Run]:
    runs = []
    for index, c in enumerate(CORPUS):
        hows = ["set", "merge"] + (["import"] if c.via_import else [])
        runs += [Run(c, how, "file") for how in hows]
        if index % 3 == 0:  # a third of the corpus on SQLite too, every command
            runs += [Run(c, how, "sqlite") for how in hows]
        if c.name in ARGV_CASES:
            runs.append(Run(c, "set-argv", "file"))
        if c.name in STDIN_CASES:
            runs.append(Run(c, "import-stdin", "sqlite"))
        if c.name in NO_VALIDATE_CASES:
            runs.append(Run(c, "set-no-validate", "file"))
    return runs


RUNS = _runs()


def _argv_and_stdin(run: Run, root: Path) -> tuple[list, bytes]:
    state, doc = root / "hostile.json", root / "hostile-doc.json"
    state.write_bytes(run.case.state)
    doc.write_bytes(run.case.import_doc())
    return {
        "set": (["set", ID, "--input-file", state, "--force"], b""),
        "merge": (["merge", ID, "--input-file", state], b""),
        "import": (["import", doc], b""),
        "set-argv": ([b"set", ID.encode(), run.case.state, b"--force"], b""),
        "set-no-validate": (["set", ID, "--input-file", state, "--force", "--no-validate"], b""),
        "import-stdin": (["import"], run.case.import_doc()),
    }[run.how]


@dataclass
class Outcome:
    returncode: int
    stdout: bytes
    stderr: str
    before: object
    after: object
    seconds: float

    def __str__(self) -> str:
        return (f"exit {self.returncode} in {self.seconds:.2f} s\nstdout: {self.stdout[:300]!r}"
                f"\nstderr: {self.stderr[:2000]!r}")


def _execute(run: Run, root: Path, template_db: Path) -> Outcome:
    ctx = make_project(run.backend, root, template_db)
    args, stdin = _argv_and_stdin(run, root)
    before = snapshot(ctx)
    started = time.monotonic()
    proc = subprocess.run([str(STATE_EXTENSION), *args], cwd=root, env=ctx.env, input=stdin,
                          capture_output=True, timeout=120)
    seconds = time.monotonic() - started
    return Outcome(proc.returncode, proc.stdout, proc.stderr.decode("utf-8", "replace"),
                   before, snapshot(ctx), seconds)


@pytest.fixture(scope="module")
def outcomes(request, tmp_path_factory):
    """Every selected run at once, each in its own throw-away project."""
    selected = [item.callspec.params["run"] for item in request.session.items
                if getattr(item, "originalname", None) == "test_hostile_input_refused"
                and item.module is request.module]
    template_db = meltano_seeded_db(tmp_path_factory, SEED)
    base = tmp_path_factory.mktemp("hostile")

    def one(indexed):
        index, run = indexed
        try:
            return run.id, _execute(run, base / f"run{index}", template_db)
        except BaseException as exc:  # reported by the test that owns the run
            return run.id, exc

    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        return dict(pool.map(one, enumerate(selected)))


def test_the_corpus_is_big_enough():
    assert len(CORPUS) >= 60
    assert len({c.name for c in CORPUS}) == len(CORPUS)
    assert len({c.state for c in CORPUS}) == len(CORPUS), "two cases test the same text"


@pytest.mark.parametrize("run", RUNS, ids=[r.id for r in RUNS])
def test_hostile_input_refused(run: Run, outcomes):
    outcome = outcomes[run.id]
    if isinstance(outcome, BaseException):
        raise outcome
    assert outcome.returncode != 0, str(outcome)
    assert "Traceback" not in outcome.stderr, str(outcome)
    lines = [line for line in outcome.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected exactly one error line\n{outcome}"
    fragment = run.case.fragment
    if run.how.startswith("import") and run.case.import_fragment:
        fragment = run.case.import_fragment
    assert fragment in lines[0].lower(), str(outcome)
    assert len(lines[0]) < 400, f"the error line quotes too much\n{outcome}"
    assert outcome.stdout == b"", str(outcome)
    tree_before, rows_before = outcome.before
    tree_after, rows_after = outcome.after
    assert sorted(tree_after) == sorted(tree_before), f"files or folders changed\n{outcome}"
    changed = [name for name in tree_before if tree_before[name] != tree_after[name]]
    assert not changed, f"{changed} changed\n{outcome}"
    assert rows_after == rows_before, f"state table changed\n{outcome}"
    assert outcome.seconds < 30, str(outcome)


@pytest.mark.parametrize("backend", ["file", "sqlite"])
def test_texts_next_to_the_rules_are_stored_exactly(backend, tmp_path, tmp_path_factory):
    """No false alarm: each accepted text is set, merged and imported, and reads back as
    ``json`` reads it."""
    template_db = meltano_seeded_db(tmp_path_factory, SEED) if backend == "sqlite" else None
    ctx = make_project(backend, tmp_path / "p", template_db)

    def ext(*args, stdin=b""):
        proc = subprocess.run([str(STATE_EXTENSION), *args], cwd=ctx.root, env=ctx.env,
                              input=stdin, capture_output=True, timeout=120)
        assert proc.returncode == 0 and b"Traceback" not in proc.stderr, (args, proc.stderr)
        return proc.stdout

    doc = {}
    for name, text in ACCEPTED:
        expected = json.loads(text)
        (ctx.root / "in.json").write_bytes(text)
        ext("set", name, "--input-file", "in.json", "--force")
        assert json.loads(ext("get", name)) == expected, name
        ext("merge", name, "--input-file", "in.json")
        assert json.loads(ext("get", name)) == expected, name
        doc[f"imported-{name}"] = {"completed": expected, "partial": {}}
    ext("import", stdin=json.dumps(doc).encode())
    exported = json.loads(ext("export", "--pattern", "imported-*"))
    assert exported == doc
