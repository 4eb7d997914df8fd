"""Every state command through the real `state_extension` executable.

Each behaviour runs against a `file://` store and a SQLite system database. The stores
are seeded and inspected directly (files / SQL), never through state-ext itself, so a
wrong write cannot hide behind a matching wrong read. The SQLite schema is Meltano's
DDL (as Meltano 4.4.1 creates it), created without running meltano. The expected
outputs, prompts and layouts are those of `meltano state` 4.4.1 (README: "Commands").
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.support.cli import STATE_EXTENSION, run, state_ext
from tests.support.terminal import EOF_KEY, run_at_terminal

MELTANO_DDL = (
    "CREATE TABLE state (state_id VARCHAR(900) NOT NULL, partial_state VARCHAR, "
    "completed_state VARCHAR, updated_at DATETIME, PRIMARY KEY (state_id), UNIQUE (state_id))"
)

# Reference §1.1 worked example
WORKED_COMPLETED = {"singer_state": {"bookmarks": {"s1": {"k": 1}}}}
WORKED_MERGE = {"singer_state": {"bookmarks": {"s2": {"k": 2}, "s1": {"j": 5}}}}
WORKED_RESULT = '{"singer_state":{"bookmarks":{"s1":{"k":1,"j":5},"s2":{"k":2}}}}\n'

STATE_COMMANDS = ["list", "get", "set", "merge", "clear", "copy", "move", "export", "import",
                  "config"]
ALL_COMMANDS = ["describe", "initialize", "invoke", *STATE_COMMANDS]

MISSING = object()


def dumps(value) -> str:
    """Meltano's on-disk JSON: json.dumps defaults."""
    return json.dumps(value)


def compact(value) -> str:
    return json.dumps(value, separators=(",", ":"))


class Store:
    """A state store of one kind, plus raw access that bypasses state-ext."""

    def __init__(self, kind: str, project: Path, env: dict, tmp_path: Path) -> None:
        self.kind, self.project, self.env = kind, project, env
        if kind == "file":
            self.dir = tmp_path / "file-store"
            self.args = ["--uri", f"file://{self.dir}"]
        else:
            self.db = project / ".meltano" / "meltano.db"
            self.db.parent.mkdir(parents=True, exist_ok=True)
            with sqlite3.connect(self.db) as conn:
                conn.execute(MELTANO_DDL)
            self.args = []

    # -- running state_extension --------------------------------------------------------
    def run(self, *args, input=None, check=True):
        return state_ext(*args, *self.args, cwd=self.project, env=self.env, input=input,
                         check=check)

    def at_terminal(self, *args, answer):
        """Run with stdin on a terminal, typing ``answer`` once the prompt shows."""
        return run_at_terminal([STATE_EXTENSION, *args, *self.args], cwd=self.project,
                               env=self.env, answer=answer)

    def run_many(self, calls):
        """Independent calls in parallel: [(args, input_or_None), ...] -> results."""
        with ThreadPoolExecutor(max_workers=2) as pool:
            futures = [pool.submit(self.run, *args, input=stdin, check=False)
                       for args, stdin in calls]
            return [f.result() for f in futures]

    # -- raw access ------------------------------------------------------------------------
    def seed(self, state_id, completed=MISSING, partial=MISSING, *, text=None):
        """Write an envelope as Meltano would (missing half = {}; None = null/NULL)."""
        completed = {} if completed is MISSING else completed
        partial = {} if partial is MISSING else partial
        if self.kind == "file":
            folder = self.dir / state_id
            folder.mkdir(parents=True, exist_ok=True)
            if text is None:
                text = dumps({"completed": completed, "partial": partial})
            (folder / "state.json").write_text(text)
        else:
            with sqlite3.connect(self.db) as conn:
                conn.execute(
                    "INSERT INTO state (state_id, partial_state, completed_state, updated_at) "
                    "VALUES (?, ?, ?, NULL)",
                    (state_id, None if partial is None else dumps(partial),
                     None if completed is None else dumps(completed)),
                )

    def raw_text(self, state_id):
        """Stored bytes: the file's text, or the (completed, partial) column texts."""
        if self.kind == "file":
            path = self.dir / state_id / "state.json"
            return path.read_text() if path.is_file() else None
        with sqlite3.connect(self.db) as conn:
            row = conn.execute(
                "SELECT completed_state, partial_state FROM state WHERE state_id = ?",
                (state_id,),
            ).fetchone()
        return None if row is None else tuple(row)

    def raw(self, state_id):
        """The stored envelope as a dict, or None when the ID has no state."""
        text = self.raw_text(state_id)
        if text is None:
            return None
        if self.kind == "file":
            return json.loads(text)
        completed, partial = text
        return {"completed": None if completed is None else json.loads(completed),
                "partial": None if partial is None else json.loads(partial)}

    def assert_stored(self, state_id, completed, partial):
        """Both halves, and byte-identical to what Meltano itself writes."""
        if self.kind == "file":
            assert self.raw_text(state_id) == dumps({"completed": completed, "partial": partial})
        else:
            assert self.raw_text(state_id) == (dumps(completed), dumps(partial))

    def wipe(self):
        if self.kind == "file":
            import shutil

            shutil.rmtree(self.dir, ignore_errors=True)
        else:
            with sqlite3.connect(self.db) as conn:
                conn.execute("DELETE FROM state")

    def ids(self):
        if self.kind == "file":
            if not self.dir.exists():
                return []
            return sorted(
                os.path.relpath(d, self.dir) for d, _, files in os.walk(self.dir)
                if "state.json" in files
            )
        with sqlite3.connect(self.db) as conn:
            return sorted(r[0] for r in conn.execute("SELECT state_id FROM state"))


@pytest.fixture(params=["file", "systemdb"])
def store(request, project, env, tmp_path):
    return Store(request.param, project, env, tmp_path)


@pytest.fixture
def file_store(project, env, tmp_path):
    return Store("file", project, env, tmp_path)


def one_line_error(result, *fragments):
    assert result.returncode != 0, str(result)
    assert "Traceback" not in result.stderr, str(result)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, str(result)
    for fragment in fragments:
        assert fragment in result.stderr, str(result)
    return lines


# -- help ------------------------------------------------------------------------------


HELP_SCRIPT = """
import contextlib, io, json, sys
from state_ext.cli import app
out = {}
for name in sys.argv[1:]:
    sys.argv = ["state_extension", name, "--help"]
    buffer = io.StringIO()
    code = None
    with contextlib.redirect_stdout(buffer):
        try:
            app()
        except SystemExit as exc:
            code = exc.code
    out[name] = [code, buffer.getvalue()]
print(json.dumps(out))
"""


def test_help_with_no_args_and_top_level(project, env):
    with ThreadPoolExecutor(max_workers=2) as pool:
        bare, top = pool.map(
            lambda args: state_ext(*args, cwd=project, env=env, check=False), [[], ["--help"]])
    assert bare.returncode == 0, str(bare)
    assert "Usage:" in bare.stdout
    for name in ALL_COMMANDS:
        assert name in bare.stdout, f"{name} missing from the help:\n{bare}"
    assert top.returncode == 0 and top.stdout == bare.stdout, str(top)


def test_help_of_every_command(project, env):
    """`<command> --help` exits 0 for every command (one interpreter, the console script's app)."""
    result = run([sys.executable, "-c", HELP_SCRIPT, *ALL_COMMANDS], cwd=project, env=env)
    assert result.returncode == 0, str(result)
    assert "Traceback" not in result.stderr, str(result)
    helps = json.loads(result.stdout.strip().splitlines()[-1])
    for name in ALL_COMMANDS:
        code, text = helps[name]
        assert code in (0, None), (name, code, text)
        assert "Usage:" in text and name in text, (name, text)


# -- list ------------------------------------------------------------------------------


def test_list_sorted_one_per_line_and_json(store):
    for state_id in ["b", "dev:tap-a-to-target-b", "a", "Z", "a/b", "prod:tap-a-to-target-b:x"]:
        store.seed(state_id, {"singer_state": {"id": state_id}})
    store.seed("empty")  # an empty state is still a state ID
    text, as_json = store.run_many([(["list"], None), (["list", "--format", "json"], None)])
    expected = ["Z", "a", "a/b", "b", "dev:tap-a-to-target-b", "empty",
                "prod:tap-a-to-target-b:x"]
    assert text.returncode == 0, str(text)
    assert text.stdout == "".join(f"{i}\n" for i in expected)
    assert as_json.returncode == 0, str(as_json)
    assert as_json.stdout.endswith("]\n") and as_json.stdout.count("\n") == 1
    assert json.loads(as_json.stdout) == expected


def test_empty_store(store):
    text, as_json, export = store.run_many(
        [(["list"], None), (["list", "--format", "json"], None), (["export"], None)])
    assert text.returncode == 0, str(text)
    assert text.stdout == ""
    assert as_json.returncode == 0, str(as_json)
    assert json.loads(as_json.stdout) == []
    assert export.returncode == 0, str(export)
    assert export.stdout == "{}\n"


PATTERN_IDS = ["dev:tap-a-to-target-b", "dev:tap-a-to-target-b:blue", "prod:tap-a-to-target-b",
               "DEV:upper", "a", "b", "c", "ab", "x_y", "xzy", "a/b"]
PATTERNS = {
    # case-sensitive (not DEV:upper), and `*` crosses `:` but the match is full
    "dev:*": ["dev:tap-a-to-target-b", "dev:tap-a-to-target-b:blue"],
    "?": ["a", "b", "c"],  # one character, full match
    "[ab]": ["a", "b"],
    "x_y": ["x_y"],  # `_` is not a LIKE wildcard
}


def test_list_pattern_is_fnmatch_full_and_case_sensitive(store):
    for state_id in PATTERN_IDS:
        store.seed(state_id, {"singer_state": {}})
    results = store.run_many([(["list", "--pattern", p], None) for p in PATTERNS])
    for (pattern, expected), result in zip(PATTERNS.items(), results, strict=True):
        assert result.returncode == 0, str(result)
        assert result.stdout == "".join(f"{i}\n" for i in expected), (pattern, str(result))


# -- get -------------------------------------------------------------------------------


def test_get_formats(store):
    store.seed("dev:tap-a-to-target-b", WORKED_COMPLETED, WORKED_MERGE)
    store.seed("uni", {"singer_state": {"ü": "日本"}})
    store.seed("partial-only", {}, {"singer_state": {"p": 1}})
    compact_, pretty, absent, uni, partial_only = store.run_many([
        (["get", "dev:tap-a-to-target-b"], None),
        (["get", "dev:tap-a-to-target-b", "--format", "pretty"], None),
        (["get", "never-written"], None),
        (["get", "uni"], None),
        (["get", "partial-only"], None),
    ])
    assert compact_.returncode == 0, str(compact_)
    assert compact_.stdout == WORKED_RESULT
    assert pretty.returncode == 0, str(pretty)
    assert pretty.stdout == json.dumps(json.loads(WORKED_RESULT), indent=2) + "\n"
    assert absent.returncode == 0, str(absent)
    assert absent.stdout == "{}\n"
    assert uni.stdout == '{"singer_state":{"\\u00fc":"\\u65e5\\u672c"}}\n'
    assert partial_only.stdout == '{"singer_state":{"p":1}}\n'
    assert store.ids() == ["dev:tap-a-to-target-b", "partial-only", "uni"]  # reads create nothing


def test_get_reads_null_halves_as_empty_with_a_warning(store):
    store.seed("legacy", {"singer_state": {"x": 1}}, None)
    result = store.run("get", "legacy")
    assert result.stdout == '{"singer_state":{"x":1}}\n'
    assert "null" in result.stderr and "partial" in result.stderr, str(result)


def test_get_bare_singer_state_file_reads_as_empty(file_store):
    file_store.seed("bare", text='{"singer_state": {"x": 1}}')
    assert file_store.run("get", "bare").stdout == "{}\n"


def test_get_corrupt_state_is_a_one_line_error(store):
    if store.kind == "file":
        store.seed("bad", text="{not json")
    else:
        with sqlite3.connect(store.db) as conn:
            conn.execute("INSERT INTO state VALUES ('bad', '{}', '{not json', NULL)")
    result = store.run("get", "bad", check=False)
    one_line_error(result, "bad")
    assert result.stdout == ""


def test_systemdb_column_texts_meltano_did_not_write_read_as_json_does(project, env, tmp_path):
    """Bulk reads decode Meltano's own texts with a shortcut; any other text takes the
    general decoder: surrounding whitespace is still JSON, trailing data and a non-object
    are still one-line errors, naming the row, with nothing exported."""
    store = Store("systemdb", project, env, tmp_path)
    rows = [("spaced", ' \n{"singer_state": {"a": 1}}\t', "{}"),
            ("plain", '{"singer_state": {"b": 2}}', ' {"singer_state": {"p": 3}} ')]
    with sqlite3.connect(store.db) as conn:
        conn.executemany("INSERT INTO state VALUES (?, ?, ?, NULL)",
                         [(i, partial, completed) for i, completed, partial in rows])
    exported = json.loads(store.run("export").stdout)
    assert exported == {
        "plain": {"completed": {"singer_state": {"b": 2}},
                  "partial": {"singer_state": {"p": 3}}},
        "spaced": {"completed": {"singer_state": {"a": 1}}, "partial": {}},
    }
    assert store.run("get", "spaced").stdout == '{"singer_state":{"a":1}}\n'
    for state_id, completed, problem in (("trailing", "{} {}", "not valid JSON"),
                                         ("array", "[1]", "not a JSON object")):
        with sqlite3.connect(store.db) as conn:
            conn.execute("INSERT INTO state VALUES (?, '{}', ?, NULL)", (state_id, completed))
        for args in (("export",), ("get", state_id)):
            result = store.run(*args, check=False)
            one_line_error(result, repr(state_id), problem)
            assert result.stdout == ""
        with sqlite3.connect(store.db) as conn:
            conn.execute("DELETE FROM state WHERE state_id = ?", (state_id,))


def test_console_script_flushes_a_big_export_before_its_fast_exit(project, env, tmp_path):
    """``state_extension`` ends with ``os._exit``: everything still buffered for stdout
    (a pipe here) must be written first, and the log line must reach stderr."""
    buffered = {k: v for k, v in env.items() if k != "PYTHONUNBUFFERED"}  # as for users
    store = Store("systemdb", project, buffered, tmp_path)
    with sqlite3.connect(store.db) as conn:
        conn.executemany(
            "INSERT INTO state VALUES (?, '{}', ?, NULL)",
            [(f"dev:tap-{n:05d}-to-target-x", dumps({"singer_state": {"n": n, "pad": "x" * 50}}))
             for n in range(3000)],
        )
    result = store.run("export")
    assert result.stdout.endswith("}}}\n")
    exported = json.loads(result.stdout)
    assert len(exported) == 3000
    assert exported["dev:tap-02999-to-target-x"]["completed"]["singer_state"]["n"] == 2999
    assert "3000" in result.stderr


# -- set -------------------------------------------------------------------------------


def test_set_state_argument_input_file_and_stdin(store, tmp_path):
    input_file = tmp_path / "in.json"
    input_file.write_text('{"singer_state": {"from": "file"}}\n')
    store.seed("overwritten", {"singer_state": {"old": 1}}, {"singer_state": {"partial": 1}})
    calls = [
        (["set", "--force", "dev:tap-a-to-target-b", '{"singer_state": {"x": 1}}'], None),
        (["set", "--force", "overwritten", '{"singer_state": {"new": 2}}'], None),
        (["set", "--force", "no-validate", '{"x": 1}', "--no-validate"], None),
        (["set", "--force", "u", '{"singer_state": {"ü-ñ": "é"}}'], None),
    ]
    if store.kind == "file":  # how the input is read does not depend on the store
        calls += [
            (["set", "--force", "from-file", "--input-file", str(input_file)], None),
            (["set", "--force", "from-stdin", "--input-file", "-"],
             '{"singer_state": {"s": [1]}}'),
        ]
    for result in store.run_many(calls):
        assert result.returncode == 0, str(result)
        assert result.stdout == ""
    store.assert_stored("dev:tap-a-to-target-b", {"singer_state": {"x": 1}}, {})
    if store.kind == "file":
        store.assert_stored("from-file", {"singer_state": {"from": "file"}}, {})
        store.assert_stored("from-stdin", {"singer_state": {"s": [1]}}, {})
    # a set replaces both halves: the old partial is gone
    store.assert_stored("overwritten", {"singer_state": {"new": 2}}, {})
    store.assert_stored("no-validate", {"x": 1}, {})
    store.assert_stored("u", {"singer_state": {"ü-ñ": "é"}}, {})
    if store.kind == "file":
        assert store.raw_text("u") == (
            '{"completed": {"singer_state": {"\\u00fc-\\u00f1": "\\u00e9"}}, "partial": {}}')


def test_set_asks_for_confirmation(file_store):
    store = file_store
    store.seed("kept", {"singer_state": {"old": 1}})
    with ThreadPoolExecutor(max_workers=3) as pool:
        eof, no, yes = pool.map(lambda call: store.at_terminal(*call[0], answer=call[1]), [
            (["set", "kept", '{"singer_state": {"new": 1}}'], EOF_KEY),
            (["set", "kept", '{"singer_state": {"new": 2}}'], "n\n"),
            (["set", "yes-answer", '{"singer_state": {"new": 3}}'], "y\n"),
        ])
    for refused in (eof, no):
        assert refused.returncode == 1, str(refused)
        assert "Aborted" in refused.stderr, str(refused)
        assert "Continue?" in refused.stderr, str(refused)  # the prompt goes to stderr
    assert store.raw("kept") == {"completed": {"singer_state": {"old": 1}}, "partial": {}}
    assert yes.returncode == 0, str(yes)
    store.assert_stored("yes-answer", {"singer_state": {"new": 3}}, {})
    # stdout carries data only: nothing of the prompt may land there
    for result in (eof, no, yes):
        assert result.stdout == "", repr(result.stdout)


def test_destructive_commands_without_a_terminal_refuse_at_once(file_store):
    """No terminal on stdin (a pipe, CI, a `meltano run` step): no prompt that nobody can
    answer, no answer read from a pipe; one line that names --force, nothing changed."""
    store = file_store
    store.seed("a", {"singer_state": {"a": 1}})
    before = store.raw("a")
    refused = store.run_many([
        (["set", "a", '{"singer_state": {"new": 1}}'], "y\n"),
        (["clear", "a"], "y\n"),
        (["clear", "--all"], ""),
        (["copy", "a", "b"], "y\n"),
        (["move", "a", "b"], None),
    ])
    for result in refused:
        assert result.returncode == 1, str(result)
        assert "[y/N]" not in result.stderr, str(result)
        one_line_error(result, "pass --force")
    assert store.ids() == ["a"] and store.raw("a") == before


def test_set_input_errors(file_store, tmp_path):
    file_store.seed("kept", {"singer_state": {"old": 1}})
    bad_file = tmp_path / "bad.json"
    bad_file.write_text("{oops")
    cases = [
        (["set", "--force", "kept", '{"x": 1}'], None, 1, ["singer_state", "--no-validate"]),
        (["set", "--force", "kept", "not json"], None, 1, ["Invalid JSON"]),
        (["set", "--force", "kept", "--input-file", str(bad_file)], None, 1, ["Invalid JSON"]),
        (["set", "--force", "kept"], None, 2, ["--input-file"]),
        (["set", "--force", "kept", '{"singer_state": {}}', "--input-file", str(bad_file)],
         None, 2, ["exactly one"]),
        (["set", "--force", "kept", "--input-file", str(tmp_path / "missing.json")], None, 2,
         ["missing.json"]),
        (["set", "--force", "a//b", '{"singer_state": {}}'], None, 1, ["a//b"]),
    ]
    results = file_store.run_many([(args, stdin) for args, stdin, _, _ in cases])
    for (_, _, code, fragments), result in zip(cases, results, strict=True):
        assert result.returncode == code, str(result)
        one_line_error(result, *fragments)
        assert result.stdout == ""
    assert file_store.ids() == ["kept"]
    assert file_store.raw("kept") == {"completed": {"singer_state": {"old": 1}}, "partial": {}}
    assert not (tmp_path / "escape").exists()


# -- merge -----------------------------------------------------------------------------


def test_merge_state_argument_worked_example(store):
    store.seed("dev:tap-a-to-target-b", WORKED_COMPLETED)
    store.run("merge", "dev:tap-a-to-target-b", json.dumps(WORKED_MERGE))
    store.assert_stored("dev:tap-a-to-target-b", WORKED_COMPLETED, WORKED_MERGE)
    assert store.run("get", "dev:tap-a-to-target-b").stdout == WORKED_RESULT


def test_merge_deep_merges_into_partial_lists_replace(store, tmp_path):
    store.seed("id", {"singer_state": {"c": 1}},
               {"singer_state": {"s": {"k": 1, "l": [1, 2]}, "t": 1}})
    input_file = tmp_path / "merge.json"
    input_file.write_text('{"singer_state": {"s": {"l": [3], "m": null}}}')
    store.run("merge", "id", "--input-file", str(input_file))
    store.assert_stored("id", {"singer_state": {"c": 1}},
                        {"singer_state": {"s": {"k": 1, "l": [3], "m": None}, "t": 1}})
    store.run("merge", "id", "--input-file", "-", input='{"singer_state": {"u": 2}}')
    store.assert_stored("id", {"singer_state": {"c": 1}},
                        {"singer_state": {"s": {"k": 1, "l": [3], "m": None}, "t": 1, "u": 2}})


def test_merge_into_an_absent_id_creates_a_partial_state(store):
    store.run("merge", "new", '{"singer_state": {"x": 1}}')
    store.assert_stored("new", {}, {"singer_state": {"x": 1}})


def test_merge_from_state_id(store):
    store.seed("src", {"singer_state": {"a": 1, "b": {"c": 1}}}, {"singer_state": {"b": {"d": 2}}})
    store.seed("dst", {"singer_state": {"z": 9}}, {"singer_state": {"b": {"e": 3}}})
    store.run("merge", "dst", "--from-state-id", "src")
    # dst's partial gets src's effective state; completed is kept; src is untouched
    store.assert_stored("dst", {"singer_state": {"z": 9}},
                        {"singer_state": {"b": {"e": 3, "c": 1, "d": 2}, "a": 1}})
    store.assert_stored("src", {"singer_state": {"a": 1, "b": {"c": 1}}},
                        {"singer_state": {"b": {"d": 2}}})


def test_merge_errors(file_store):
    store = file_store
    store.seed("dst", {"singer_state": {"z": 9}})
    results = store.run_many([
        (["merge", "dst", "--from-state-id", "absent"], None),
        (["merge", "dst", '{"no_singer_state": 1}'], None),
        (["merge", "dst"], None),
        (["merge", "dst", '{"singer_state": {}}', "--from-state-id", "dst"], None),
        (["merge", "dst", "not json"], None),
    ])
    absent, invalid, nothing, two, bad_json = results
    one_line_error(absent, "absent")
    assert absent.returncode == 1
    one_line_error(invalid, "singer_state")
    assert nothing.returncode == 2 and two.returncode == 2, (str(nothing), str(two))
    one_line_error(bad_json, "Invalid JSON")
    assert store.ids() == ["dst"]
    store.assert_stored("dst", {"singer_state": {"z": 9}}, {})


# -- clear -----------------------------------------------------------------------------


def test_clear_one_id(store):
    store.seed("a", {"singer_state": {"a": 1}})
    store.seed("b", {"singer_state": {"b": 1}})
    result = store.run("clear", "--force", "a")
    assert result.stdout == ""
    assert store.ids() == ["b"]
    if store.kind == "file":
        assert not (store.dir / "a").exists()  # no folder (nor lock) left behind
    absent = store.run("clear", "--force", "never-written", check=False)
    assert absent.returncode == 0, str(absent)
    assert store.ids() == ["b"]


def test_clear_all(store):
    for state_id in ["a", "b", "dev:tap-a-to-target-b", "x/y"]:
        store.seed(state_id, {"singer_state": {}})
    result = store.run("clear", "--all", "--force")
    assert "4 state(s)" in result.stderr, str(result)
    assert store.ids() == []


def test_clear_asks_and_needs_exactly_one_target(file_store):
    store = file_store
    store.seed("a", {"singer_state": {"a": 1}})
    eof = store.at_terminal("clear", "a", answer=EOF_KEY)
    eof_all = store.at_terminal("clear", "--all", answer="no\n")
    neither, both = store.run_many([
        (["clear", "--force"], None),
        (["clear", "--force", "--all", "a"], None),
    ])
    for refused in (eof, eof_all):
        assert refused.returncode == 1 and "Aborted" in refused.stderr, str(refused)
    assert neither.returncode == 2 and both.returncode == 2, (str(neither), str(both))
    assert store.ids() == ["a"]
    cleared = store.at_terminal("clear", "--all", answer="y\n")
    assert cleared.returncode == 0 and "This will clear state" in cleared.stderr, str(cleared)
    assert store.ids() == []


# -- copy / move -----------------------------------------------------------------------


def test_copy_keeps_both_halves_exactly(store):
    completed = {"singer_state": {"bookmarks": {"s1": {"k": 1}}, "ü": 1}}
    partial = {"singer_state": {"bookmarks": {"s1": {"j": 5}}}}
    store.seed("src", completed, partial)
    store.seed("dst", {"singer_state": {"old": 1}}, {"singer_state": {"old": 2}})
    store.run("copy", "--force", "src", "dst")
    store.assert_stored("dst", completed, partial)
    store.assert_stored("src", completed, partial)
    store.run("copy", "--force", "src", "dev:tap-new-to-target-b:x")
    store.assert_stored("dev:tap-new-to-target-b:x", completed, partial)


def test_move_removes_the_source(store):
    completed = {"singer_state": {"c": 1}}
    partial = {"singer_state": {"p": 2}}
    store.seed("src", completed, partial)
    store.run("move", "--force", "src", "dst")
    store.assert_stored("dst", completed, partial)
    assert store.raw("src") is None
    assert store.ids() == ["dst"]
    if store.kind == "file":
        assert not (store.dir / "src").exists()


def test_copy_move_errors(file_store):
    store = file_store
    store.seed("dst", {"singer_state": {"kept": 1}})
    copy_absent, move_absent, move_onto_itself = store.run_many([
        (["copy", "--force", "absent", "dst"], None),
        (["move", "--force", "absent", "dst"], None),
        (["move", "--force", "dst", "dst"], None),
    ])
    copy_eof = store.at_terminal("copy", "dst", "other", answer=EOF_KEY)
    move_eof = store.at_terminal("move", "dst", "other", answer="n\n")
    one_line_error(copy_absent, "absent")
    one_line_error(move_absent, "absent")
    for refused in (copy_eof, move_eof):
        assert refused.returncode == 1 and "Aborted" in refused.stderr, str(refused)
    assert move_onto_itself.returncode == 0, str(move_onto_itself)  # and it must not delete
    assert store.ids() == ["dst"]
    store.assert_stored("dst", {"singer_state": {"kept": 1}}, {})


# -- export / import -------------------------------------------------------------------


def _export_seed(store):
    entries = {
        "dev:tap-a-to-target-b": {"completed": WORKED_COMPLETED, "partial": WORKED_MERGE},
        "a/b": {"completed": {"singer_state": {"ü": "日本"}}, "partial": {}},
        "empty": {"completed": {}, "partial": {}},
        "prod:tap-a-to-target-b": {"completed": {}, "partial": {"singer_state": {"p": [1]}}},
    }
    for state_id, entry in entries.items():
        store.seed(state_id, entry["completed"], entry["partial"])
    return entries


def test_export_is_meltanos_document(store):
    entries = _export_seed(store)
    full, dev = store.run_many([(["export"], None), (["export", "--pattern", "dev:*"], None)])
    expected = {k: entries[k] for k in sorted(entries)}
    assert full.returncode == 0, str(full)
    assert full.stdout == compact(expected) + "\n"  # as `meltano state export` prints it
    assert full.stdout.count("\n") == 1 and full.stdout.isascii()
    assert dev.stdout == compact({"dev:tap-a-to-target-b": entries["dev:tap-a-to-target-b"]}) + "\n"


def test_import_from_file_and_stdin_round_trips_the_export(store, tmp_path):
    entries = _export_seed(store)
    exported = store.run("export").stdout
    document = tmp_path / "export.json"
    document.write_text(exported)
    ways = [["import", str(document)], ["import", "-"], ["import"]]  # stdin by default
    for how in ways if store.kind == "file" else ways[:1]:
        store.wipe()
        result = store.run(*how, input=None if len(how) == 2 and how[1] != "-" else exported)
        assert f"{len(entries)} state(s)" in result.stderr, str(result)
        assert store.ids() == sorted(entries)
        for state_id, entry in entries.items():
            store.assert_stored(state_id, entry["completed"], entry["partial"])


def test_import_overwrites_listed_ids_only(store):
    store.seed("listed", {"singer_state": {"old": 1}}, {"singer_state": {"old-partial": 1}})
    store.seed("unlisted", {"singer_state": {"keep": 1}})
    document = {
        "listed": {"completed": {}, "partial": {"singer_state": {"new": 1}}},
        "added": {"completed": {"singer_state": {"added": 1}}},  # no "partial"
    }
    result = store.run("import", "-", input=json.dumps(document))
    assert "2 state(s)" in result.stderr, str(result)
    store.assert_stored("listed", {}, {"singer_state": {"new": 1}})  # replaced, not merged
    store.assert_stored("added", {"singer_state": {"added": 1}}, {})  # {} rather than null
    store.assert_stored("unlisted", {"singer_state": {"keep": 1}}, {})


def test_import_bad_document_writes_nothing(file_store):
    file_store.seed("existing", {"singer_state": {"keep": 1}})
    documents = [
        '{"good": {"completed": {}, "partial": {}}, "a//b": {"completed": {}, "partial": {}}}',
        '{"good": {"completed": {}, "partial": {}}, "bad": {"completed": [], "partial": {}}}',
        '{"good": {"completed": {}, "partial": {}}, "bad": {"singer_state": {}}}',
        "{not json",
    ]
    results = file_store.run_many([(["import", "-"], document) for document in documents])
    for result in results:
        one_line_error(result)
    assert file_store.ids() == ["existing"]
    file_store.assert_stored("existing", {"singer_state": {"keep": 1}}, {})


def test_import_bad_document_writes_nothing_systemdb(project, env, tmp_path):
    store = Store("systemdb", project, env, tmp_path)
    document = '{"good": {"completed": {}, "partial": {}}, "../x": {"completed": {}}}'
    result = store.run("import", "-", input=document, check=False)
    one_line_error(result, "../x")
    assert store.ids() == []


def test_import_missing_file(file_store, tmp_path):
    result = file_store.run("import", str(tmp_path / "nope.json"), check=False)
    one_line_error(result, "nope.json")
    assert result.returncode == 2


# -- IDs with `/` and `:` ------------------------------------------------------------------


def test_ids_with_slash_and_colon_round_trip(store):
    ids = ["dev:tap-a-to-target-b:blue", "a", "a/b", "team/dev:tap-x-to-target-y"]
    document = {i: {"completed": {"singer_state": {"id": i}}, "partial": {}} for i in ids}
    store.run("import", "-", input=json.dumps(document))
    store.run("set", "--force", "a/b/c", '{"singer_state": {"id": "a/b/c"}}')
    ids.append("a/b/c")
    document["a/b/c"] = {"completed": {"singer_state": {"id": "a/b/c"}}, "partial": {}}
    listed, exported, got = store.run_many([
        (["list"], None), (["export"], None), (["get", "team/dev:tap-x-to-target-y"], None)])
    assert listed.stdout == "".join(f"{i}\n" for i in sorted(ids)), str(listed)
    assert json.loads(exported.stdout) == document
    assert got.stdout == '{"singer_state":{"id":"team/dev:tap-x-to-target-y"}}\n'
    for state_id in ids:
        store.assert_stored(state_id, {"singer_state": {"id": state_id}}, {})
    if store.kind == "file":
        for state_id in ids:  # Meltano's layout: the raw ID is the folder path
            assert (store.dir / state_id / "state.json").is_file()
        assert (store.dir / "a" / "b" / "c" / "state.json").is_file()
        assert (store.dir / "team" / "dev:tap-x-to-target-y" / "state.json").is_file()


def test_clearing_a_parent_keeps_nested_ids(store):
    store.seed("a", {"singer_state": {"a": 1}})
    store.seed("a/b", {"singer_state": {"ab": 1}})
    store.seed("a/b/c", {"singer_state": {"abc": 1}})
    store.run("clear", "--force", "a")
    assert store.ids() == ["a/b", "a/b/c"]
    store.run("clear", "--force", "a/b")
    assert store.ids() == ["a/b/c"]
    store.assert_stored("a/b/c", {"singer_state": {"abc": 1}}, {})
    if store.kind == "file":
        assert not (store.dir / "a" / "state.json").exists()
        assert not (store.dir / "a" / "b" / "state.json").exists()


def test_move_between_nested_ids(store):
    store.seed("a/b", {"singer_state": {"ab": 1}}, {"singer_state": {"p": 1}})
    store.run("move", "--force", "a/b", "a")
    assert store.ids() == ["a"]
    store.assert_stored("a", {"singer_state": {"ab": 1}}, {"singer_state": {"p": 1}})


# -- where the store is ---------------------------------------------------------------------


def test_file_store_folder_is_created_on_write(project, env, tmp_path):
    target = tmp_path / "not" / "yet"
    uri = f"file://{target}"
    assert state_ext("list", "--uri", uri, cwd=project, env=env).stdout == ""
    state_ext("set", "--force", "x", '{"singer_state": {}}', "--uri", uri, cwd=project, env=env)
    assert (target / "x" / "state.json").read_text() == (
        '{"completed": {"singer_state": {}}, "partial": {}}')


def test_systemdb_without_schema_is_a_one_line_error(project, env):
    result = state_ext("list", cwd=project, env=env, check=False)
    lines = one_line_error(result, "meltano")
    assert len(lines) == 1, str(result)
    assert not (project / ".meltano" / "meltano.db").exists()  # never created by us


def test_systemdb_outside_a_project_is_a_one_line_error(tmp_path, env):
    lonely = tmp_path / "lonely"
    lonely.mkdir()
    result = state_ext("get", "x", cwd=lonely, env=env, check=False)
    lines = one_line_error(result)
    assert len(lines) == 1, str(result)
