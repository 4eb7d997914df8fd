"""Merges acknowledged by state-ext survive Meltano writing the same state at the same time.

Meltano's lock (file:// and object stores) is check-then-write: a ``meltano state merge``
can overwrite our lock while we hold it and then write a state based on an older read.
state-ext confirms each merge after writing it (``operations.merge_state``) and applies it
again when it was overwritten, so every merge it acknowledged with exit 0 is in the final
state. Meltano's own merges can still be lost to each other (and to us): they are counted,
not asserted.

Knobs (read here; ``scripts/stress.sh`` raises them): the CI runs 3 + 3 processes x 6
merges per store; ``STATE_EXT_STRESS=1`` runs 5 + 5 processes x 25 merges;
``STATE_EXT_MIXED_PROCS`` and ``STATE_EXT_MIXED_MERGES`` set them directly;
``STATE_EXT_STRESS_REPORT=<file>`` appends one JSON line of figures per store.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time

import pytest

from tests.support.cli import STATE_EXTENSION, clean_env, meltano, meltano_path
from tests.support.emulators import (  # noqa: F401 - fixtures
    azure_server,
    gcs_server,
    s3_server,
    store,
)
from tests.support.project import write_project

pytestmark = pytest.mark.meltano

STRESS = os.environ.get("STATE_EXT_STRESS") == "1"
PROCS = int(os.environ.get("STATE_EXT_MIXED_PROCS", 5 if STRESS else 3))
MERGES = int(os.environ.get("STATE_EXT_MIXED_MERGES", 25 if STRESS else 6))
ID = "dev:tap-mixed-to-target-mixed"
SEED = {"completed": {"singer_state": {"bookmarks": {"seed": {"v": 0}}}}, "partial": {}}


def _writer(tool: str, worker: int, root, env, acknowledged: list, failures: list,
            reapplied: list) -> None:
    command = [str(STATE_EXTENSION)] if tool == "state-ext" else [str(meltano_path()), "state"]
    for n in range(MERGES):
        name = f"{tool}-{worker}-{n}"
        patch = json.dumps({"singer_state": {"bookmarks": {name: {"v": n}}}})
        proc = subprocess.run([*command, "merge", ID, patch], cwd=root, env=env,
                              capture_output=True, text=True, timeout=300)
        if "applied it again" in proc.stderr:
            reapplied.append(name)
        if proc.returncode == 0:
            acknowledged.append(name)
        else:
            failures.append((name, proc.returncode, proc.stderr[-2000:]))


def _mixed(root, env, read_final, label: str) -> dict:
    meltano("state", "set", "--force", ID, json.dumps(SEED["completed"]), cwd=root, env=env)
    acked: dict[str, list] = {"state-ext": [], "meltano": []}
    failures: dict[str, list] = {"state-ext": [], "meltano": []}
    reapplied: list = []
    threads = [threading.Thread(target=_writer, args=(tool, i, root, env, acked[tool],
                                                      failures[tool], reapplied))
               for i in range(PROCS) for tool in ("state-ext", "meltano")]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    final = read_final()
    marks = final["singer_state"]["bookmarks"]
    figures = {"test": "mixed-merge", "store": label, "processes": f"{PROCS}+{PROCS}",
               "merges_each": MERGES, "seconds": round(time.monotonic() - started, 1)}
    for tool in ("state-ext", "meltano"):
        figures[f"{tool}_acknowledged"] = len(acked[tool])
        figures[f"{tool}_lost"] = sorted(set(acked[tool]) - set(marks))
        figures[f"{tool}_failed"] = len(failures[tool])
    figures["state-ext_reapplied"] = len(reapplied)
    figures["corrupt"] = int(marks.get("seed") != {"v": 0})
    report = os.environ.get("STATE_EXT_STRESS_REPORT")
    if report:
        with open(report, "a") as out:
            out.write(json.dumps(figures) + "\n")
    print(json.dumps(figures))
    return {"figures": figures, "failures": failures}


def _check(outcome: dict) -> None:
    figures, failures = outcome["figures"], outcome["failures"]
    assert not failures["state-ext"], failures["state-ext"][:3]
    assert figures["state-ext_acknowledged"] == PROCS * MERGES
    assert figures["state-ext_lost"] == [], figures
    assert figures["corrupt"] == 0, figures


def _state_ext_get(root, env):
    proc = subprocess.run([str(STATE_EXTENSION), "get", ID], cwd=root, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_file_store(tmp_path, meltano_bin):
    root = write_project(tmp_path / "project",
                         state_backend={"uri": f"file://{tmp_path / 'state'}"})
    env = clean_env()
    meltano("state", "list", cwd=root, env=env)  # the system database, made once
    _check(_mixed(root, env, lambda: _state_ext_get(root, env), "file"))
    leftovers = sorted(os.listdir(tmp_path / "state" / ID))
    assert leftovers == ["state.json"], leftovers


def test_object_store(store, tmp_path, meltano_bin):  # noqa: F811 - the fixture
    bucket = store.new_bucket()
    root = write_project(tmp_path / "project")
    env = clean_env(**store.settings_env(f"{store.scheme}://{bucket}/state"))
    meltano("state", "list", cwd=root, env=env)
    _check(_mixed(root, env, lambda: _state_ext_get(root, env), store.scheme))
    assert f"state/{ID}/lock" not in store.keys(bucket)


# -- Meltano's race, replayed step by step ----------------------------------------------------
def test_a_lock_overwritten_mid_merge_is_repaired(store, tmp_path):  # noqa: F811 - the fixture
    """What a ``meltano state merge`` does when its check-then-write lock races ours,
    replayed with the real store: while state-ext holds its lock (frozen by SIGSTOP right
    after creating it), "Meltano" overwrites the lock, reads the old state, lets state-ext
    write, then writes its merge based on the old read and deletes the lock. state-ext
    must notice (its lock was no longer its own), apply its merge again under a fresh lock
    and exit 0 with both merges stored."""
    import signal
    from datetime import datetime, timezone

    bucket = store.new_bucket()
    root = write_project(tmp_path / "project")
    env = clean_env(**store.settings_env(f"{store.scheme}://{bucket}/p"),
                    MELTANO_STATE_BACKEND_LOCK_RETRY_SECONDS="0.1")
    state_key, lock_key = f"p/{ID}/state.json", f"p/{ID}/lock"
    seed = json.dumps(SEED).encode()

    def read(key):
        try:
            return store.read(bucket, key)[0]
        except Exception:  # noqa: BLE001 - absent, in each SDK's words
            return None

    conclusive = 0
    for trial in range(20):  # until one trial froze state-ext holding its lock (then break)
        store.write(bucket, state_key, seed)
        ours = {"singer_state": {"bookmarks": {f"ext-{trial}": {"v": trial}}}}
        proc = subprocess.Popen([str(STATE_EXTENSION), "merge", ID, json.dumps(ours)],
                                cwd=root, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while (lock := read(lock_key)) is None and proc.poll() is None:
            assert time.monotonic() < deadline, "state-ext never took its lock"
        if lock is None:
            proc.communicate()
            continue
        os.kill(proc.pid, signal.SIGSTOP)
        if read(lock_key) != lock or read(state_key) != seed:  # it got further first
            os.kill(proc.pid, signal.SIGCONT)
            proc.communicate(timeout=120)
            continue
        conclusive += 1
        # "Meltano": its check found no lock; it writes its own over ours, reads the state.
        store.write(bucket, lock_key, str(datetime.now(timezone.utc).timestamp()).encode())
        old = json.loads(read(state_key))
        os.kill(proc.pid, signal.SIGCONT)
        deadline = time.monotonic() + 60
        while read(state_key) == seed and proc.poll() is None:  # state-ext writes its merge
            assert time.monotonic() < deadline, "state-ext never wrote"
            time.sleep(0.01)
        # ... then Meltano writes its merge over it, based on its old read, and unlocks.
        old["partial"] = {"singer_state": {"bookmarks": {f"meltano-{trial}": {"v": trial}}}}
        store.write(bucket, state_key, json.dumps(old).encode())
        store.delete(bucket, lock_key)
        _, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 0, stderr
        assert "applied it again" in stderr, stderr
        final = json.loads(read(state_key))
        marks = {**final["completed"]["singer_state"]["bookmarks"],
                 **final["partial"]["singer_state"]["bookmarks"]}
        assert marks.get(f"ext-{trial}") == {"v": trial}, final  # ours survived
        assert marks.get(f"meltano-{trial}") == {"v": trial}, final  # and Meltano's
        assert read(lock_key) is None
        break
    assert conclusive, "state-ext finished its merge before every freeze; nothing was tested"


def test_a_newer_write_after_a_contended_merge_is_never_undone(tmp_path):
    """A merge that had to wait for another writer looks again a second later. If the
    values at its paths are by then neither its own nor the old ones (someone wrote a
    newer bookmark after it), it must leave them alone: re-applying would put the older
    bookmark back in the partial half, which wins over completed (a bookmark moving
    backwards). Real processes on file://: a lock held by "another writer", released;
    the newer complete write lands inside the merge's settle second."""
    states = tmp_path / "state"
    folder = states / ID
    folder.mkdir(parents=True)
    (folder / "state.json").write_text(json.dumps(SEED))
    (folder / "lock").write_text(str(time.time()))  # another writer holds the lock
    root = write_project(tmp_path / "project")
    env = clean_env(MELTANO_STATE_BACKEND_URI=states.as_uri(),
                    MELTANO_STATE_BACKEND_LOCK_RETRY_SECONDS="0.05")
    ours = {"singer_state": {"bookmarks": {"orders": {"replication_key_value": "2026-01-01"}}}}
    newer = {"completed": {"singer_state": {"bookmarks": {"orders": {
        "replication_key_value": "2026-06-01"}}}}, "partial": {}}
    proc = subprocess.Popen([str(STATE_EXTENSION), "merge", ID, json.dumps(ours)], cwd=root,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.5)
    (folder / "lock").unlink()  # the other writer is done: ours merges now
    deadline = time.monotonic() + 30
    while "2026-01-01" not in (folder / "state.json").read_text():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.01)
    (folder / "state.json").write_text(json.dumps(newer))  # a newer run's complete write
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    assert json.loads((folder / "state.json").read_text()) == newer, stderr
    assert "left as it is" in stderr, stderr
