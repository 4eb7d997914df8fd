"""No debris (issue #14, item 2): after a SIGKILL at a random moment of a migrate whose new
states take the fast path, one re-run leaves exactly Meltano's layout (no lock objects, no
temporary files, no probes), on file:// and S3; temporaries of dead processes and stale
locks on the plan's IDs are removed, conditionally, and nothing of a live process is."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path

from state_ext.model import Envelope
from tests.support.cli import STATE_EXTENSION, clean_env, state_ext
from tests.support.emulators import StoreCase, s3_server  # noqa: F401 - fixture
from tests.support.project import seed_file_store, write_project

TRIALS = 10 if os.environ.get("STATE_EXT_STRESS") else 2  # scripts/stress.sh: the long run


def report(store: str, expected: dict, found: dict, killed: bool) -> None:
    """One JSON line of figures per trial for scripts/stress.sh (STATE_EXT_STRESS_REPORT)."""
    path = os.environ.get("STATE_EXT_STRESS_REPORT")
    if not path:
        return
    line = {"test": "debris: SIGKILL + re-run", "store": store, "killed": killed,
            "corrupt": sum(1 for k, v in found.items() if k in expected and v != expected[k]),
            "leftovers": len(set(found) - set(expected)),
            "lost": len(set(expected) - set(found))}
    with open(path, "a") as handle:
        handle.write(json.dumps(line) + "\n")


def states_of(count: int, tag: str = "") -> dict[str, Envelope]:
    return {f"dev:tap-{i:05d}-to-target": Envelope(
        {"singer_state": {"bookmarks": {"s": {"k": i, "t": tag}}}},
        {"singer_state": {"p": i}} if i % 3 == 0 else {}) for i in range(count)}


def file_tree(root: Path) -> dict[str, bytes]:
    found = {}
    for dirpath, dirs, files in os.walk(root):
        assert files or dirs or Path(dirpath) == root, f"empty folder left: {dirpath}"
        for name in files:
            path = Path(dirpath) / name
            found[str(path.relative_to(root))] = path.read_bytes()
    return found


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def kill_at_random(argv, env, cwd, rng: random.Random, started_when,
                   max_delay: float = 0.4) -> bool:
    """Start ``argv``, wait until ``started_when()`` is true, then a random moment more
    (up to ``max_delay``), and SIGKILL it; True if it was killed before it finished."""
    proc = subprocess.Popen([str(a) for a in argv], cwd=cwd, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not started_when() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(rng.uniform(0, max_delay))
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)  # reaped: its pid no longer exists
    return proc.returncode == -signal.SIGKILL


def trials(kills: list[bool], extra: int = 4):
    """TRIALS trial numbers, then up to ``extra`` more while no trial was killed yet (a
    run that finished before its random moment tested nothing)."""
    trial = 0
    while trial < TRIALS or (not any(kills) and trial < TRIALS + extra):
        yield trial
        trial += 1


def test_sigkill_during_fast_path_migrate_then_rerun_leaves_no_debris_on_file(tmp_path):
    rng = random.Random(int(os.environ.get("STATE_EXT_TEST_SEED", "0")) or None)
    states = states_of(2000)
    source = seed_file_store(tmp_path / "src", states)
    root = write_project(tmp_path / "project")
    kills: list[bool] = []
    for trial in trials(kills):
        dst = tmp_path / f"dst-{trial}"
        seed_file_store(dst, {i: Envelope.complete({"singer_state": {"old": 1}})
                        for i in list(states)[::10]})  # overwritten under their locks
        env = clean_env(MELTANO_STATE_BACKEND_URI=dst.as_uri(),
                        MELTANO_STATE_BACKEND_LOCK_TIMEOUT_SECONDS="1")
        first = dst / "dev:tap-00001-to-target" / "state.json"
        was_killed = kill_at_random(
            [STATE_EXTENSION, "migrate", "--uri", source, "--to", dst.as_uri(),
             "--on-conflict", "overwrite"], env, root, rng, first.exists,
            max_delay=0.1)  # a local migrate of 2,000 states is over in about a second
        kills.append(was_killed)
        rerun = state_ext("migrate", "--uri", source, "--to", dst.as_uri(), "--on-conflict",
                          "overwrite", "--format", "json", cwd=root, env=env, timeout=300)
        assert rerun.json()["ok"], str(rerun)
        expected = {f"{i}/state.json": e.to_json().encode() for i, e in states.items()}
        found = file_tree(dst)
        report("file", expected, found, was_killed)
        assert found == expected, f"trial {trial}"
    assert any(kills), "no trial was killed before it finished"


def test_sigkill_during_fast_path_migrate_then_rerun_leaves_no_debris_on_s3(s3_server,  # noqa: F811
                                                                           tmp_path):
    rng = random.Random(int(os.environ.get("STATE_EXT_TEST_SEED", "0")) or None)
    case = StoreCase("s3", s3_server)
    states = states_of(800)
    source = seed_file_store(tmp_path / "src", states)
    root = write_project(tmp_path / "project")
    kills: list[bool] = []
    for trial in trials(kills):
        bucket = case.new_bucket()
        uri = f"s3://{bucket}/p"
        for state_id in list(states)[::10]:  # overwritten under their locks
            case.write(bucket, f"p/{state_id}/state.json",
                       Envelope.complete({"singer_state": {"old": 1}}).to_json().encode())
        env = clean_env(**case.settings_env(uri), MELTANO_STATE_BACKEND_LOCK_TIMEOUT_SECONDS="1")
        started = time.monotonic()

        def begun(started=started) -> bool:
            return time.monotonic() - started > 0.9  # past start-up, into the writes

        was_killed = kill_at_random(
            [STATE_EXTENSION, "migrate", "--uri", source, "--to", uri, "--on-conflict",
             "overwrite"], env, root, rng, begun)
        kills.append(was_killed)
        rerun = state_ext("migrate", "--uri", source, "--to", uri, "--on-conflict",
                          "overwrite", "--format", "json", cwd=root, env=env, timeout=300)
        assert rerun.json()["ok"], str(rerun)
        keys = case.keys(bucket)
        sample = list(states)[::97]
        expected = {f"p/{i}/state.json": states[i].to_json().encode() for i in states}
        found = {key: expected[key] for key in keys if key in expected}  # bytes: sampled
        found.update({f"p/{i}/state.json": case.read(bucket, f"p/{i}/state.json")[0]
                      for i in sample})
        found.update({key: b"" for key in keys if key not in expected})
        report("s3", expected, found, was_killed)
        assert keys == sorted(expected), f"trial {trial}"
        for state_id in sample:
            assert found[f"p/{state_id}/state.json"] == states[state_id].to_json().encode()
    assert any(kills), "no trial was killed before it finished"


def test_temporaries_of_dead_processes_are_removed_and_live_ones_kept(tmp_path):
    states = states_of(30)
    source = seed_file_store(tmp_path / "src", states)
    dst = tmp_path / "dst"
    same = "dev:tap-00001-to-target"
    seed_file_store(dst, {same: states[same]})
    from state_ext.backends.debris import HOST

    gone, alive = dead_pid(), os.getpid()
    dead_files = [dst / same / f".state.json.{HOST}.{gone}.deadbeef.0.tmp",
                  dst / same / f".lock.{HOST}.{gone}.deadbeef.1.tmp",
                  dst / f".state-ext-write-check.{HOST}.{gone}.deadbeef.2.tmp"]
    live = dst / same / f".state.json.{HOST}.{alive}.cafebabe.0.tmp"
    foreign = dst / same / ".state.json.notours.tmp"  # not our naming: never touched
    # another container on the same volume: its pids mean nothing here, even "gone" ones
    neighbour = dst / same / f".state.json.{'0' if HOST != '00000000' else '1'}" \
        f"{HOST[1:]}.{gone}.deadbeef.0.tmp"
    for path in [*dead_files, live, foreign, neighbour]:
        path.write_text("{")
    root = write_project(tmp_path / "project")
    env = clean_env(MELTANO_STATE_BACKEND_URI=dst.as_uri())
    report = state_ext("migrate", "--uri", source, "--to", dst.as_uri(), "--format", "json",
                       cwd=root, env=env).json()
    assert report["ok"] and report["identical"] == 1
    assert not any(path.exists() for path in dead_files)
    assert live.exists() and foreign.exists() and neighbour.exists()

    # a single write cleans the folder it writes in
    other = dst / "dev:tap-00002-to-target" / f".lock.{HOST}.{gone}.deadbeef.3.tmp"
    other.write_text("x")
    state_ext("set", "--force", "dev:tap-00002-to-target", '{"singer_state": {"x": 1}}',
              cwd=root, env=env)
    assert not other.exists()


def test_rerun_removes_stale_locks_on_planned_ids_only(s3_server, tmp_path):  # noqa: F811
    """Identical IDs (nothing to write) still lose a killed run's lock: stale at once, or
    once it is past the timeout unchanged; a lock on an ID outside the plan stays; a dead
    run's writability probe (this host, pid gone) is deleted."""
    from state_ext.backends import debris

    case = StoreCase("s3", s3_server)
    states = states_of(4)
    ids = sorted(states)
    source = seed_file_store(tmp_path / "src", states)
    bucket = case.new_bucket()
    for state_id in ids:
        case.write(bucket, f"p/{state_id}/state.json", states[state_id].to_json().encode())
    case.write(bucket, "p/outside/state.json", b'{"completed": {}, "partial": {}}')
    case.write(bucket, f"p/{ids[0]}/lock", str(time.time() - 100).encode())  # stale
    case.write(bucket, f"p/{ids[1]}/lock", str(time.time()).encode())  # fresh, owner dead
    case.write(bucket, f"p/{ids[2]}/lock", str(time.time() + 3600).encode())  # future: kept
    case.write(bucket, "p/outside/lock", str(time.time() - 100).encode())  # not in the plan
    probe = f"p/.state-ext-write-check.{debris.HOST}.{dead_pid()}.0badcafe"
    case.write(bucket, probe, b"")
    uri = f"s3://{bucket}/p"
    root = write_project(tmp_path / "project")
    env = clean_env(**case.settings_env(uri), MELTANO_STATE_BACKEND_LOCK_TIMEOUT_SECONDS="1")
    report = state_ext("migrate", "--uri", source, "--to", uri, "--format", "json",
                       "--pattern", "dev:*", cwd=root, env=env).json()
    assert report["ok"] and report["identical"] == 4 and report["stale_locks_removed"] == 2
    keys = case.keys(bucket)
    assert f"p/{ids[0]}/lock" not in keys and f"p/{ids[1]}/lock" not in keys
    assert f"p/{ids[2]}/lock" in keys and "p/outside/lock" in keys
    assert probe not in keys
    assert json.loads(case.read(bucket, f"p/{ids[3]}/state.json")[0]) == \
        states[ids[3]].to_dict()
