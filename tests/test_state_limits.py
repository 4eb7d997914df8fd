"""The two documented limits, at their edges, through the real ``state_extension``.

* Nesting: a state of exactly 500 levels (objects, arrays, both) goes through every path
  that recurses (decode, merge, copy, encode, digest) in the main thread and in the
  worker threads of ``migrate`` and ``import``, on ``file://``, SQLite and S3, and the
  real Meltano reads what state-ext stored. 501 levels are refused (the corpus tests).
* Size: 16 MiB of JSON per state. Input over it is refused before it is parsed; a state
  that would pass it once stored (``json.dumps`` escapes non-ASCII text, a merge grows
  the state, an import entry) is refused before anything is written; a stored state over
  it is reported; a state just under it works.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
from pathlib import Path

import pytest

from tests.support.cli import STATE_EXTENSION, clean_env, meltano
from tests.support.emulators import StoreCase, s3_server  # noqa: F401 - fixture
from tests.support.hostile import arrays, mixed, objects, state_of_depth
from tests.support.project import meltano_seeded_db, write_project
from tests.support.seeded import SEED, make_project, snapshot

MIB = 1024 * 1024
LIMIT_BYTES = 16 * MIB


def ext(root: Path, *args, env=None, stdin: bytes = b"", ok: bool = True):
    proc = subprocess.run([str(STATE_EXTENSION), *map(str, args)], cwd=root,
                          env=env or clean_env(), input=stdin, capture_output=True, timeout=300)
    stderr = proc.stderr.decode("utf-8", "replace")
    assert "Traceback" not in stderr, stderr
    if ok:
        assert proc.returncode == 0, stderr
    else:
        assert proc.returncode != 0, stderr
        lines = [line for line in stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and proc.stdout == b"", stderr
    return proc.stdout, stderr


AT_LIMIT = {
    "objects": json.loads(state_of_depth(500, objects)),
    "arrays": json.loads(state_of_depth(500, arrays)),
    "mixed": json.loads(state_of_depth(500, mixed)),
}


def test_states_at_the_nesting_limit_take_every_path(tmp_path, tmp_path_factory):
    """set and merge (twice, so a 500-deep partial is merged onto a 500-deep partial), get
    (compact, and pretty: Python's pure-Python encoder), export, import, copy, move,
    migrate SQLite -> file:// -> file:// and diff, all exact."""
    root = write_project(tmp_path / "p")
    (root / ".meltano").mkdir()
    db = meltano_seeded_db(tmp_path_factory, SEED)
    (root / ".meltano" / "meltano.db").write_bytes(db.read_bytes())
    for name, state in AT_LIMIT.items():
        (root / f"{name}.json").write_text(json.dumps(state))
        ext(root, "set", name, "--input-file", f"{name}.json", "--force")
        ext(root, "merge", name, "--input-file", f"{name}.json")
        ext(root, "merge", name, "--input-file", f"{name}.json")
        assert json.loads(ext(root, "get", name)[0]) == state
        assert json.loads(ext(root, "get", name, "--format", "pretty")[0]) == state
    exported, _ = ext(root, "export")
    document = json.loads(exported)
    for name, state in AT_LIMIT.items():
        assert document[name] == {"completed": state, "partial": state}
    files = tmp_path / "files"
    ext(root, "import", "-", "--uri", f"file://{files}", stdin=exported)
    assert ext(root, "export", "--uri", f"file://{files}")[0] == exported
    ext(root, "copy", "objects", "copied", "--force")
    ext(root, "move", "copied", "moved", "--force")
    assert json.loads(ext(root, "get", "moved")[0]) == AT_LIMIT["objects"]
    for source, target in ((None, tmp_path / "m1"), (tmp_path / "m1", tmp_path / "m2")):
        args = ["migrate", "--to", f"file://{target}", "--concurrency", "4"]
        if source is not None:
            args += ["--from", f"file://{source}"]
        ext(root, *args)
        ext(root, "diff", "--to", f"file://{target}")
    migrated = json.loads((tmp_path / "m2" / "mixed" / "state.json").read_text())
    assert migrated == {"completed": AT_LIMIT["mixed"], "partial": AT_LIMIT["mixed"]}


def test_meltano_reads_what_state_ext_stores_at_the_limit(tmp_path):
    root = write_project(tmp_path / "p", state_backend={"uri": f"file://{tmp_path}/state"})
    (root / "deep.json").write_text(json.dumps(AT_LIMIT["mixed"]))
    ext(root, "set", "deep", "--input-file", "deep.json", "--force")
    ext(root, "merge", "deep", "--input-file", "deep.json")
    result = meltano("state", "get", "deep", cwd=root)
    assert json.loads(result.stdout) == AT_LIMIT["mixed"]


def test_s3_states_at_the_nesting_limit_and_hostile_ones(tmp_path, s3_server):  # noqa: F811
    """The object-store path (bytes decoded by the model, in the async workers): a 500-deep
    state migrates to S3 and back exactly; NaN or invalid UTF-8 stored there is one line."""
    case = StoreCase("s3", s3_server)
    bucket = case.new_bucket()
    uri = f"s3://{bucket}/state"
    env = clean_env(**{key: value for key, value in case.settings_env(uri).items()
                       if key != "MELTANO_STATE_BACKEND_URI"})  # the project's store stays file
    root = write_project(tmp_path / "p", state_backend={"uri": f"file://{tmp_path}/state"})
    for name, state in AT_LIMIT.items():
        (root / f"{name}.json").write_text(json.dumps(state))
        ext(root, "set", name, "--input-file", f"{name}.json", "--force")
    ext(root, "migrate", "--to", uri, env=env)
    ext(root, "diff", "--to", uri, env=env)
    back = tmp_path / "back"
    ext(root, "migrate", "--from", uri, "--to", f"file://{back}", env=env)
    for name, state in AT_LIMIT.items():
        assert json.loads((back / name / "state.json").read_text())["completed"] == state
    for content, fragment in ((b'{"completed": {"v": NaN}, "partial": {}}', "NaN"),
                              (b'{"completed": {"v": "\xff"}, "partial": {}}', "UTF-8"),
                              (b'{"completed": {"v": 1, "v": 2}, "partial": {}}', "duplicate")):
        case.write(bucket, "state/bad/state.json", content)
        _, stderr = ext(root, "get", "bad", "--uri", uri, env=env, ok=False)
        assert fragment in stderr and "bad" in stderr, stderr


# -- size --------------------------------------------------------------------------------------
def _big_state(size: int, char: str = "a") -> bytes:
    """A state of ``size`` bytes of JSON text (``char`` is ASCII or 2-byte UTF-8)."""
    head, tail = b'{"singer_state": {"blob": "', b'"}}'
    width = len(char.encode())
    return head + (char * ((size - len(head) - len(tail)) // width)).encode() + tail


@pytest.fixture(params=["file", "sqlite"])
def ctx(request, tmp_path, tmp_path_factory):
    template = meltano_seeded_db(tmp_path_factory, SEED) if request.param == "sqlite" else None
    return make_project(request.param, tmp_path / "p", template)


def test_input_over_the_size_limit_is_refused_before_parsing(ctx):
    (ctx.root / "big.json").write_bytes(_big_state(LIMIT_BYTES + 1))
    before = snapshot(ctx)
    for args in (("set", "target", "--input-file", "big.json", "--force"),
                 ("merge", "target", "--input-file", "big.json")):
        _, stderr = ext(ctx.root, *args, env=ctx.env, ok=False)
        assert "16 MiB" in stderr and "16.0 MiB" in stderr, stderr
    assert snapshot(ctx) == before


def test_state_that_would_pass_the_limit_once_stored_is_not_written(ctx):
    """12 MiB of 'é' is 12 MiB of UTF-8 but 36 MiB once json.dumps escapes it."""
    (ctx.root / "accents.json").write_bytes(_big_state(12 * MIB, "é"))
    before = snapshot(ctx)
    _, stderr = ext(ctx.root, "set", "target", "--input-file", "accents.json", "--force",
                    env=ctx.env, ok=False)
    assert "'target' would be 36.0 MiB" in stderr and "nothing was written" in stderr, stderr
    assert snapshot(ctx) == before


def test_merge_that_would_grow_past_the_limit_writes_nothing(ctx):
    (ctx.root / "half.json").write_bytes(_big_state(9 * MIB))
    ext(ctx.root, "set", "target", "--input-file", "half.json", "--force", env=ctx.env)
    (ctx.root / "other.json").write_bytes(_big_state(9 * MIB, "b").replace(b'"blob"', b'"bl2"'))
    before = snapshot(ctx)
    _, stderr = ext(ctx.root, "merge", "target", "--input-file", "other.json", env=ctx.env,
                    ok=False)
    assert "would be 18.0 MiB" in stderr, stderr
    assert snapshot(ctx) == before


def test_import_with_one_entry_over_the_limit_imports_nothing(ctx):
    good = {"completed": {"singer_state": {"x": 1}}, "partial": {}}
    big = _big_state(7 * MIB, "é").decode()  # 7 MiB of UTF-8, 21 MiB escaped
    doc = ('{"aaa-first": ' + json.dumps(good) + ', "big": {"completed": ' + big
           + ', "partial": {}}, "zzz-last": ' + json.dumps(good) + "}")
    (ctx.root / "doc.json").write_text(doc, encoding="utf-8")
    before = snapshot(ctx)
    _, stderr = ext(ctx.root, "import", "doc.json", env=ctx.env, ok=False)
    assert "entry 'big' is 21.0 MiB" in stderr, stderr
    assert snapshot(ctx) == before


def test_stored_state_over_the_limit_is_reported_and_one_under_it_works(ctx):
    over = b'{"singer_state": {"blob": "' + b"x" * (LIMIT_BYTES + 10) + b'"}}'
    if ctx.backend == "file":
        (ctx.store / "target" / "state.json").write_bytes(
            b'{"completed": ' + over + b', "partial": {}}')
    else:
        with sqlite3.connect(ctx.db) as con:
            con.execute("UPDATE state SET completed_state = ? WHERE state_id = 'target'",
                        (over.decode(),))
        con.close()
    for args in (("get", "target"), ("export",)):
        _, stderr = ext(ctx.root, *args, env=ctx.env, ok=False)
        assert "target" in stderr and "16 MiB limit" in stderr, stderr
    under = _big_state(15 * MIB)
    (ctx.root / "under.json").write_bytes(under)
    ext(ctx.root, "set", "target", "--input-file", "under.json", "--force", env=ctx.env)
    assert json.loads(ext(ctx.root, "get", "target", env=ctx.env)[0]) == json.loads(under)
